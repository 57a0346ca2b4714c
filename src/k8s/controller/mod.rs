//! The two controllers of docs/design.md §8, reconciling `MlflowSecret` and
//! `MlflowSecretBinding` objects against the store. They run on the leader
//! only: [`run`] drives both until its future is dropped, which is how the
//! operator stops reconciling the moment it loses the Lease (nothing here is
//! spawned, so dropping the future stops everything).
//!
//! Shape as in kube-rs controller-rs: [`Context`] in an `Arc`, one generic
//! `reconcile` (timed by a drop guard, inside the finalizer helper) for
//! every kind that implements `Reconciled`, status through server-side
//! apply ([`status::apply`]), and `error_policy` as the one place errors
//! become metrics and a requeue with backoff. The reconcilers themselves
//! are in [`secret`] and [`binding`]; condition types and reasons in
//! [`conditions`] and [`reasons`]; docs/operator.md states their rules.

mod binding;
pub(crate) mod conditions;
pub(crate) mod error;
pub(crate) mod import;
mod mlflow_sync;
pub(crate) mod reasons;
pub(crate) mod scrub;
mod secret;
mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{WatchStreamExt, reflector};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::Error;

use super::FIELD_MANAGER;
use super::crd::{MlflowSecret, MlflowSecretBinding};
use super::metrics::OperatorMetrics;
use super::scope::WatchScope;
use crate::store::SecretsStore;

/// `controller` label of the metrics, and the prefix of log lines.
pub const SECRET_CONTROLLER: &str = "mlflowsecret";
pub const BINDING_CONTROLLER: &str = "mlflowsecretbinding";

/// Finalizers: the store row and the store binding outlive a deleted object
/// unless the operator gets to clean them up first.
pub const SECRET_FINALIZER: &str = "mlflowsecrets.secrets.mlflow.org/cleanup";
pub const BINDING_FINALIZER: &str = "mlflowsecretbindings.secrets.mlflow.org/cleanup";

/// Reconciles in flight per controller. Each reconcile is a few apiserver
/// round trips and one or two short SQL transactions, so the work is
/// latency-bound, not CPU-bound: 16 keeps the apiserver and the database
/// busy enough that 1,000 objects settle in seconds, while bounding the
/// store's connection demand (SQLite serialises writes anyway, and its pool
/// holds 4 connections; PostgreSQL's holds 10).
pub const CONCURRENCY: u16 = 16;

/// First retry after a failed reconcile; doubles per consecutive failure
/// of the same object up to [`MAX_BACKOFF`]. A database outage therefore
/// costs a few queries per object per minute rather than a hot loop, and
/// recovery is noticed within [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Resync of objects in their desired state. The store can change behind
/// the operator's back (a CLI `revoke`, a KEK `rewrap`), and nothing in
/// Kubernetes announces it; 5 minutes keeps the status honest at 1,000
/// objects for ~3 reconciles/s.
pub const RESYNC_READY: Duration = Duration::from_secs(300);

/// Retry of objects waiting on something outside Kubernetes (a row to be
/// created with the CLI, a conflicting row to go away). Missing Kubernetes
/// objects are watched instead, so this is only the fallback for them.
pub const RESYNC_WAITING: Duration = Duration::from_secs(30);

/// Period of the revocation sweep ([`scrub`]): the longest a revoke, delete
/// or unbind made through the CLI or the REST API leaves a value in a
/// per-Job Secret (through the CRDs it is gone when the reconcile ends).
/// One sweep is one label-selected metadata list of the managed Secrets
/// and one indexed query per distinct secret and resource they name.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// What the reconcilers share.
pub struct Context {
    pub client: kube::Client,
    pub store: Arc<dyn SecretsStore>,
    pub metrics: Arc<OperatorMetrics>,
    /// Who publishes the Events (see [`Context::event`]).
    reporter: Reporter,
    /// Only objects matching this label selector are reconciled (tests
    /// sharing one control plane; see [`Context::with_label_selector`]).
    pub(crate) label_selector: Option<String>,
    /// The namespaces watched and written (`--watch-namespaces`).
    pub(crate) scope: WatchScope,
    /// Period of the revocation sweep.
    sweep_every: Duration,
    /// Consecutive failures per object (`kind/namespace/name`), for the
    /// exponential backoff of `error_policy`. Cleared on success.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// `reporter_instance` names this replica in Events (the pod name).
    pub fn new(
        client: kube::Client,
        store: Arc<dyn SecretsStore>,
        metrics: Arc<OperatorMetrics>,
        reporter_instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(reporter_instance),
        };
        Self {
            reporter,
            client,
            store,
            metrics,
            label_selector: None,
            scope: WatchScope::All,
            sweep_every: SWEEP_EVERY,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Reconcile only the `MlflowSecret`s and `MlflowSecretBinding`s whose
    /// labels match `selector` (e.g. `team=a`). For several operators
    /// sharing one cluster, each with its own store, such as parallel
    /// tests against one control plane: without it, two operators would
    /// both reconcile every object, each against its own database.
    pub fn with_label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Watch and write only in these namespaces (`--watch-namespaces`):
    /// one watch per namespace instead of cluster-wide ones.
    pub fn with_scope(mut self, scope: WatchScope) -> Self {
        self.scope = scope;
        self
    }

    /// Sweep the managed per-Job Secrets this often (default
    /// [`SWEEP_EVERY`]).
    pub fn with_sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every;
        self
    }

    fn watch_config(&self) -> watcher::Config {
        match &self.label_selector {
            Some(s) => watcher::Config::default().labels(s),
            None => watcher::Config::default(),
        }
    }

    /// The end of a finalizer's cleanup. `removed` is the store's delete or
    /// unbind, which a retried cleanup may find already done (NotFound is
    /// success). Then every per-Job copy it fed is swept (docs/design.md §8,
    /// "Revocation reaches every copy") and `note` is published as a
    /// Normal Event `reason`/`action`.
    async fn finish_cleanup<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        ns: &str,
        trigger: &str,
        removed: std::result::Result<(), crate::store::StoreError>,
        (reason, action, note): (&str, &str, String),
    ) -> error::Result<Action> {
        match removed {
            Ok(()) | Err(crate::store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        scrub::sweep(self, Some(ns), trigger).await?;
        self.event(obj, EventType::Normal, reason, action, note)
            .await;
        Ok(Action::await_change())
    }

    /// Publish an Event on `obj`. Best effort: an Event that cannot be
    /// written is logged, and never fails the reconcile that reports it.
    ///
    /// A fresh [`Recorder`] per Event, on purpose: kube's `Recorder` keeps
    /// every Event it published for 6 minutes (to turn repeats into an
    /// `EventSeries`) and sweeps that map on every publish. At 10,000 objects
    /// becoming Ready in a burst that is ~10,000 cached Events (megabytes of
    /// the operator's memory budget) and an O(n) sweep per Event. Repeats
    /// are rare here anyway: the reconcilers publish only when an object's
    /// Ready condition changes status or reason (`status::ready_changed`).
    async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(
                object = %object_key(obj),
                reason,
                error = %e,
                "could not publish an Event"
            );
        }
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Record a failure of `key` and return the delay before its retry.
    fn failed(&self, key: &str) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }
}

/// `MIN_BACKOFF * 2^(n-1)`, capped at `MAX_BACKOFF`.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    MIN_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF)
}

fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// The cached objects in `meta`'s namespace that `refers` says point at
/// its name: what a change of that object must requeue.
pub(super) fn referencing<K>(
    cache: &reflector::Store<K>,
    meta: &kube::api::ObjectMeta,
    refers: impl Fn(&K, &str) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
        return Vec::new();
    };
    cache
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns) && refers(o, name))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Run both controllers, and the revocation sweep, over the watch scope
/// until the future is dropped.
///
/// Cluster-wide that is one set of watches; with `--watch-namespaces` one
/// set per namespace (each with its own caches: a reflector fed by several
/// namespaces' watch streams would be emptied by every stream's re-list).
/// `synced` becomes true once the initial lists of every set have been
/// loaded (the operator's `/ready`). It is not reset when the future is
/// dropped: the caller owns that decision.
pub async fn run(ctx: Arc<Context>, synced: Arc<AtomicBool>) {
    let client = ctx.client.clone();
    let secrets = ctx.scope.apis::<MlflowSecret>(&client);
    let bindings = ctx.scope.apis::<MlflowSecretBinding>(&client);
    let sources = ctx.scope.apis::<PartialObjectMeta<Secret>>(&client);
    let flags: Vec<Arc<AtomicBool>> = secrets
        .iter()
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let sets = secrets
        .into_iter()
        .zip(bindings)
        .zip(sources)
        .zip(flags.iter().cloned())
        .map(|(((s, b), src), flag)| run_set(ctx.clone(), s, b, src, flag));
    let all_synced = async {
        loop {
            if flags.iter().all(|f| f.load(Ordering::SeqCst)) {
                synced.store(true, Ordering::SeqCst);
                tracing::info!(scope = %ctx.scope, "controller caches synced");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    futures::join!(
        futures::future::join_all(sets),
        all_synced,
        sweep_loop(ctx.clone())
    );
}

/// The revocation sweep, every `sweep_every`, for changes made outside
/// Kubernetes (CLI, REST). A failed sweep is logged and retried next period.
async fn sweep_loop(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(ctx.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = scrub::sweep(&ctx, None, "periodic sweep").await {
            tracing::warn!(error = %e, "revocation sweep failed; retrying next period");
        }
    }
}

/// One set of watches and both controllers: over `Api::all` or one
/// namespace.
async fn run_set(
    ctx: Arc<Context>,
    secrets: Api<MlflowSecret>,
    bindings: Api<MlflowSecretBinding>,
    sources: Api<PartialObjectMeta<Secret>>,
    synced: Arc<AtomicBool>,
) {
    let config = ControllerConfig::default().concurrency(CONCURRENCY);

    // The caches hold every MlflowSecret and binding of the scope, so
    // they are kept lean: managedFields (often half an object's size) and
    // kubectl's last-applied annotation are dropped before caching. Nothing
    // in the reconcilers reads them.
    let (secret_cache, writer) = reflector::store();
    let secret_stream = watcher(secrets.clone(), ctx.watch_config())
        .default_backoff()
        .modify(slim::<MlflowSecret>)
        .reflect(writer)
        .touched_objects();
    let secret_ctrl =
        Controller::for_stream(secret_stream, secret_cache.clone()).with_config(config.clone());
    let index = secret_cache.clone();
    // Source Secrets are watched as metadata only: the operator must see
    // that one changed (or gained or lost the importable annotation), not
    // hold every Secret value in memory. The value is read with one GET
    // when an import is due. The metadata is not cached (only mapped to
    // MlflowSecrets), and is slimmed first: kubectl's last-applied
    // annotation of a Secret holds its data.
    let sources = watcher(sources, watcher::Config::default())
        .default_backoff()
        .modify(slim::<PartialObjectMeta<Secret>>)
        .touched_objects();
    let secret_ctrl =
        secret_ctrl.watches_stream(sources, move |s| secret::referencing_source(&index, &s));

    let (binding_cache, writer) = reflector::store();
    let binding_stream = watcher(bindings, ctx.watch_config())
        .default_backoff()
        .modify(slim::<MlflowSecretBinding>)
        .reflect(writer)
        .touched_objects();
    let binding_ctrl =
        Controller::for_stream(binding_stream, binding_cache.clone()).with_config(config);
    let index = binding_cache.clone();
    // A binding follows its MlflowSecret: becoming Ready, revoked, deleted.
    let binding_ctrl = binding_ctrl.watches_stream(
        watcher(secrets, ctx.watch_config())
            .default_backoff()
            .modify(slim::<MlflowSecret>)
            .touched_objects(),
        move |s| binding::referencing_secret(&index, &s),
    );

    let sync = async {
        let a = secret_cache.wait_until_ready().await;
        let b = binding_cache.wait_until_ready().await;
        if a.is_ok() && b.is_ok() {
            synced.store(true, Ordering::SeqCst);
        }
    };
    let secrets_done = secret_ctrl
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| async move { log_result(SECRET_CONTROLLER, r) });
    let bindings_done = binding_ctrl
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move { log_result(BINDING_CONTROLLER, r) });
    futures::join!(sync, secrets_done, bindings_done);
}

/// Drop what the controllers never read before an object is cached:
/// managedFields and kubectl's last-applied-configuration annotation.
fn slim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(a) = obj.meta_mut().annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// kubectl's client-side apply annotation: a full copy of the object as
/// applied (for a Secret, its data).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn log_result<K, E: std::fmt::Display>(controller: &str, r: Result<(ObjectRef<K>, Action), E>)
where
    K: Resource,
{
    match r {
        Ok((obj, _)) => tracing::debug!(controller, object = %obj, "reconciled"),
        // Reconcile errors were logged by the error policy; these are the
        // controller's own (a trigger stream or a missing cache entry).
        Err(e) => tracing::debug!(controller, error = %e, "controller event"),
    }
}

/// One kind the controllers reconcile: its `controller` metrics label, its
/// finalizer, and the two halves the finalizer helper dispatches to. The
/// instrumentation ([`reconcile`]), the finalizer preamble
/// ([`with_finalizer`]) and the error policy ([`error_policy`]) are written
/// once for every kind; [`secret`] and [`binding`] only say what a pass does.
trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// `controller` label of the metrics and log lines.
    const CONTROLLER: &'static str;
    /// The finalizer that holds deletion until [`Reconciled::cleanup`] is done.
    const FINALIZER: &'static str;
    /// The object exists (and carries the finalizer): bring the store and
    /// the status to its spec.
    fn apply(
        obj: &Self,
        api: &Api<Self>,
        ctx: &Context,
    ) -> impl Future<Output = Result<Action, Error>> + Send;
    /// The object is being deleted: clean up what it made in the store
    /// before the finalizer is removed.
    fn cleanup(obj: &Self, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// `impl Reconciled` for a kind whose module defines `apply` and
/// `cleanup` with the trait's signatures (`secret.rs`, `binding.rs`).
macro_rules! reconciled {
    ($kind:ty, $controller:expr, $finalizer:expr) => {
        impl super::Reconciled for $kind {
            const CONTROLLER: &'static str = $controller;
            const FINALIZER: &'static str = $finalizer;

            async fn apply(obj: &Self, api: &Api<Self>, ctx: &Context) -> Result<Action> {
                apply(obj, api, ctx).await
            }

            async fn cleanup(obj: &Self, ctx: &Context) -> Result<Action> {
                cleanup(obj, ctx).await
            }
        }
    };
}
use reconciled;

/// Times one reconcile from creation to drop, so a pass that fails, or is
/// cancelled when the Lease is lost, is timed like one that succeeds; and
/// counts `result="ok"` when told. Failures are counted in [`error_policy`],
/// the one place errors are handled. (No error-kind label: the series
/// `reconciles_total{controller,result}` are what dashboards and tests read.)
struct ReconcileMeasurer<'a> {
    ctx: &'a Context,
    controller: &'static str,
    _timer: prometheus::HistogramTimer,
}

impl<'a> ReconcileMeasurer<'a> {
    fn start(ctx: &'a Context, controller: &'static str) -> Self {
        let _timer = ctx
            .metrics
            .reconcile_duration
            .with_label_values(&[controller])
            .start_timer();
        Self {
            ctx,
            controller,
            _timer,
        }
    }

    fn succeeded(&self, key: &str) {
        self.ctx
            .metrics
            .reconciles
            .with_label_values(&[self.controller, "ok"])
            .inc();
        self.ctx.succeeded(key);
    }
}

/// The reconcile function of every controller: measured, and inside the
/// finalizer helper.
async fn reconcile<K: Reconciled>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let measure = ReconcileMeasurer::start(&ctx, K::CONTROLLER);
    let key = object_key(obj.as_ref());
    let r = with_finalizer(obj, &ctx).await;
    if r.is_ok() {
        measure.succeeded(&key);
    }
    r
}

/// kube's finalizer helper around one pass: adds the finalizer before the
/// first [`Reconciled::apply`], and removes it once
/// [`Reconciled::cleanup`] succeeded on a deleted object.
async fn with_finalizer<K: Reconciled>(obj: Arc<K>, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(obj.as_ref())?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, K::FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(o) => K::apply(&o, &api, ctx).await,
            Finalizer::Cleanup(o) => K::cleanup(&o, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The one place a reconcile error becomes a metric, a log line and a
/// requeue with per-object exponential backoff.
fn error_policy<K: Reconciled>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let controller = K::CONTROLLER;
    ctx.metrics
        .reconciles
        .with_label_values(&[controller, "error"])
        .inc();
    let key = object_key(obj.as_ref());
    let delay = ctx.failed(&key);
    tracing::warn!(
        controller,
        object = %key,
        error = %err,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// The namespace of a namespaced object.
fn namespace<K: ResourceExt>(obj: &K) -> Result<String, Error> {
    obj.namespace()
        .ok_or_else(|| Error::NoNamespace(obj.name_any()))
}

/// Store actors are at most 255 characters (the `created_by` column).
const MAX_ACTOR_LEN: usize = 255;

/// The store principal of one object: `k8s:<tag>:<uid>:<namespace>/<name>`.
///
/// The uid makes the rows and bindings an object creates recognisable as
/// its own (`created_by`), so a crash between the store write and the status
/// write is not mistaken for a conflict, and a same-named object created
/// later (a new uid) does not inherit them. The name part is for people
/// reading the audit log, and is cut to fit the column.
fn actor(tag: &str, uid: &str, ns: &str, name: &str) -> String {
    let mut s = format!("k8s:{tag}:{uid}:{ns}/{name}");
    s.truncate(MAX_ACTOR_LEN);
    s
}

/// Whether `created_by` names the object with this uid.
fn created_by_object(created_by: Option<&str>, tag: &str, uid: &str) -> bool {
    !uid.is_empty() && created_by.is_some_and(|c| c.starts_with(&format!("k8s:{tag}:{uid}:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }

    #[test]
    fn actors_fit_the_column_and_identify_the_object() {
        let uid = "0b5e0f62-4d1c-4b7e-9a53-1f7c2a9b1e11";
        let a = actor("mlsec", uid, &"n".repeat(63), &"x".repeat(253));
        assert_eq!(a.len(), MAX_ACTOR_LEN);
        assert!(created_by_object(Some(&a), "mlsec", uid));
        assert!(!created_by_object(Some(&a), "mlsecbind", uid));
        assert!(!created_by_object(
            Some(&a),
            "mlsec",
            "1b5e0f62-4d1c-4b7e-9a53-1f7c2a9b1e11"
        ));
        assert!(!created_by_object(Some("cli:alice"), "mlsec", uid));
        assert!(!created_by_object(None, "mlsec", uid));
        assert!(!created_by_object(Some(&a), "mlsec", ""));
    }
}
