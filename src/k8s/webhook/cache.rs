//! What the webhook knows about the cluster without asking per request
//! (docs/design.md §8, "What the webhook trusts"): the namespaces that opted in to
//! injection, and the Jobs whose pod template asks for it.
//!
//! Both are watch caches kept by one task each. They hold only the few
//! fields the checks compare (never a whole object), so their memory is
//! bounded by the opted-in namespaces and the labelled Jobs, not by the
//! cluster. A request body cannot add anything to them: only the API
//! server's watch does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use tokio::task::JoinHandle;

use crate::k8s::scope::WatchScope;
use crate::k8s::{
    ANNOTATION_BINDINGS, ANNOTATION_CONTAINERS, ANNOTATION_INJECT_MODE, ANNOTATION_RESOURCE_ID,
    ANNOTATION_RESOURCE_TYPE, LABEL_INJECT, LABEL_NAMESPACE_INJECTION, NAMESPACE_INJECTION_ENABLED,
};

/// The pod-template fields of a Job that a pod claiming it must match.
/// Only Jobs whose template carries `secrets.mlflow.org/inject: "true"`
/// have facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub uid: String,
    /// The template's injection annotations (resource id and type, mode,
    /// bindings, containers), as written.
    pub annotations: Vec<(&'static str, Option<String>)>,
    /// The template's `serviceAccountName` (`default` when unset).
    pub service_account: String,
}

/// The annotations a pod must carry exactly as its Job's template does.
pub const MATCHED_ANNOTATIONS: [&str; 5] = [
    ANNOTATION_RESOURCE_ID,
    ANNOTATION_RESOURCE_TYPE,
    ANNOTATION_INJECT_MODE,
    ANNOTATION_BINDINGS,
    ANNOTATION_CONTAINERS,
];

impl JobFacts {
    /// The facts of `job`, or `None` when its template does not ask for
    /// injection (such Jobs are not cached).
    pub fn of(job: &Job) -> Option<Self> {
        let tpl = job.spec.as_ref().map(|s| &s.template)?;
        let meta = tpl.metadata.as_ref();
        let labelled = meta
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(LABEL_INJECT))
            .is_some_and(|v| v == "true");
        if !labelled {
            return None;
        }
        let ann = meta.and_then(|m| m.annotations.as_ref());
        Some(Self {
            uid: job.meta().uid.clone()?,
            annotations: MATCHED_ANNOTATIONS
                .iter()
                .map(|k| (*k, ann.and_then(|a| a.get(*k)).cloned()))
                .collect(),
            service_account: tpl
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
        })
    }
}

/// A map kept equal to a watch: `Init`..`InitDone` replaces it whole,
/// `Apply` and `Delete` edit it.
struct Mirror<V> {
    map: RwLock<HashMap<String, V>>,
    synced: AtomicBool,
}

impl<V> Mirror<V> {
    fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            synced: AtomicBool::new(false),
        }
    }
}

async fn mirror<K, V>(
    api: Api<K>,
    cfg: watcher::Config,
    what: &'static str,
    into: Arc<Mirror<V>>,
    key: fn(&K) -> String,
    facts: fn(&K) -> Option<V>,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut buffer: Option<HashMap<String, V>> = None;
    while let Some(ev) = events.next().await {
        match ev {
            Ok(Event::Init) => buffer = Some(HashMap::new()),
            Ok(Event::InitApply(o)) => {
                if let (Some(b), Some(v)) = (buffer.as_mut(), facts(&o)) {
                    b.insert(key(&o), v);
                }
            }
            Ok(Event::InitDone) => {
                if let Some(b) = buffer.take() {
                    *into.map.write().expect("cache lock") = b;
                }
                into.synced.store(true, Ordering::SeqCst);
            }
            Ok(Event::Apply(o)) => {
                let mut m = into.map.write().expect("cache lock");
                match facts(&o) {
                    Some(v) => m.insert(key(&o), v),
                    None => m.remove(&key(&o)),
                };
            }
            Ok(Event::Delete(o)) => {
                into.map.write().expect("cache lock").remove(&key(&o));
            }
            Err(e) => tracing::warn!(error = %e, "watching {what} for the webhook"),
        }
    }
}

fn ns_key(n: &Namespace) -> String {
    n.name_any()
}

fn ns_facts(n: &Namespace) -> Option<()> {
    n.labels()
        .get(LABEL_NAMESPACE_INJECTION)
        .is_some_and(|v| v == NAMESPACE_INJECTION_ENABLED)
        .then_some(())
}

fn job_key(j: &Job) -> String {
    format!("{}/{}", j.namespace().unwrap_or_default(), j.name_any())
}

/// The webhook's view of the cluster. Dropping it stops its watches.
///
/// Each watch feeds a mirror of its own (a mirror is replaced whole on every
/// re-list of its stream), so namespaced mode keeps one per namespace.
pub struct ClusterView {
    namespaces: Vec<Arc<Mirror<()>>>,
    jobs: Vec<Arc<Mirror<JobFacts>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterView {
    /// Start the watches: namespaces labelled
    /// `secrets.mlflow.org/injection=enabled`, and Jobs (kept only when
    /// their template is labelled). Cluster-wide, one watch each; with
    /// `--watch-namespaces`, one Job watch per namespace (the chart's Roles)
    /// and one namespace watch per name (`metadata.name=<ns>`, which the
    /// chart's ClusterRole grants by `resourceNames`), so no request ever
    /// needs a permission the namespaced chart does not give.
    pub fn start(client: kube::Client, scope: &WatchScope) -> Self {
        let sel = format!("{LABEL_NAMESPACE_INJECTION}={NAMESPACE_INJECTION_ENABLED}");
        let ns_configs: Vec<watcher::Config> = match scope.namespaces() {
            None => vec![watcher::Config::default().labels(&sel)],
            Some(names) => names
                .iter()
                .map(|n| {
                    watcher::Config::default()
                        .labels(&sel)
                        .fields(&format!("metadata.name={n}"))
                })
                .collect(),
        };
        let mut tasks = Vec::new();
        let mut namespaces = Vec::new();
        for cfg in ns_configs {
            let m = Arc::new(Mirror::new());
            tasks.push(tokio::spawn(mirror(
                Api::<Namespace>::all(client.clone()),
                cfg,
                "namespaces",
                m.clone(),
                ns_key,
                ns_facts,
            )));
            namespaces.push(m);
        }
        let mut jobs = Vec::new();
        for api in scope.apis::<Job>(&client) {
            let m = Arc::new(Mirror::new());
            tasks.push(tokio::spawn(mirror(
                api,
                watcher::Config::default(),
                "Jobs",
                m.clone(),
                job_key,
                JobFacts::of,
            )));
            jobs.push(m);
        }
        Self {
            namespaces,
            jobs,
            tasks,
        }
    }

    /// Whether every namespace watch has listed once (before that, every
    /// labelled pod is denied as an outage rather than guessed at).
    pub fn namespaces_synced(&self) -> bool {
        self.namespaces
            .iter()
            .all(|m| m.synced.load(Ordering::SeqCst))
    }

    /// Whether every Job watch has listed once (until then a Job the
    /// cache does not know is verified with a GET, never guessed at).
    pub fn jobs_synced(&self) -> bool {
        self.jobs.iter().all(|m| m.synced.load(Ordering::SeqCst))
    }

    /// `namespace` exists, is watched and carries the opt-in label, as the
    /// watch last saw it.
    pub fn opted_in(&self, namespace: &str) -> bool {
        self.namespaces
            .iter()
            .any(|m| m.map.read().expect("cache lock").contains_key(namespace))
    }

    /// The cached facts of Job `namespace/name` (a labelled template), if
    /// a watch has seen it.
    pub fn job(&self, namespace: &str, name: &str) -> Option<JobFacts> {
        let key = format!("{namespace}/{name}");
        self.jobs
            .iter()
            .find_map(|m| m.map.read().expect("cache lock").get(&key).cloned())
    }
}

impl Drop for ClusterView {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_facts_only_for_labelled_templates() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "n", "uid": "u1"},
            "spec": {"template": {
                "metadata": {"labels": {LABEL_INJECT: "true"},
                             "annotations": {ANNOTATION_RESOURCE_ID: "r", "other": "x"}},
                "spec": {"containers": [], "serviceAccountName": "scorer-sa"}}}
        }))
        .unwrap();
        let f = JobFacts::of(&job).unwrap();
        assert_eq!(f.uid, "u1");
        assert_eq!(f.service_account, "scorer-sa");
        assert_eq!(f.annotations[0], (ANNOTATION_RESOURCE_ID, Some("r".into())));
        assert_eq!(f.annotations[1], (ANNOTATION_RESOURCE_TYPE, None));
        assert_eq!(job_key(&job), "n/j");
        let plain: Job = serde_json::from_value(json!({
            "metadata": {"name": "j", "uid": "u1"},
            "spec": {"template": {"spec": {"containers": []}}}
        }))
        .unwrap();
        assert_eq!(JobFacts::of(&plain), None);
    }
}
