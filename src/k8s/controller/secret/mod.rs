//! Reconciling an `MlflowSecret` with its store row (docs/operator.md has
//! the rules in prose).
//!
//! The row is found by name in the workspace (= namespace). Whether the
//! object created it is read from the row's `created_by` (see
//! [`super::actor`]), never from the object's status: status is a report,
//! and anyone allowed to write it must not be able to make the operator
//! overwrite or delete a row it does not own.

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::conditions;
use super::error::Result;
use super::reasons::{
    ACTIVE, CONFLICT, INVALID_SPEC, NO_CONFLICT, REVOKE_NOT_ALLOWED, REVOKED, VALUE_NOT_SET,
};
use super::scrub;
use super::status::{self, Verdict};
use super::{
    Context, RESYNC_READY, RESYNC_WAITING, SECRET_CONTROLLER, SECRET_FINALIZER, actor,
    created_by_object, namespace, reconciled,
};
use crate::k8s::crd::{
    DeletionPolicy, ImportedSource, MlflowSecret, MlflowSecretStatus, SecretKeyRef,
};
use crate::model::{Secret, SecretState};
use crate::store::StoreError;

mod importing;

use importing::sync_import;

/// `created_by` tag of rows made by an `MlflowSecret`.
const TAG: &str = "mlsec";

/// The MlflowSecrets of the Secret's namespace that import from it.
pub(super) fn referencing_source(
    cache: &Store<MlflowSecret>,
    s: &PartialObjectMeta<KubeSecret>,
) -> Vec<ObjectRef<MlflowSecret>> {
    super::referencing(cache, &s.metadata, |m, name| {
        m.spec
            .value_from
            .as_ref()
            .is_some_and(|v| v.secret_key_ref.name == name)
    })
}

reconciled!(MlflowSecret, SECRET_CONTROLLER, SECRET_FINALIZER);

/// Identity of one object for the store.
struct Who {
    ns: String,
    name: String,
    uid: String,
    store_name: String,
    actor: String,
}

impl Who {
    fn of(obj: &MlflowSecret, ns: &str) -> Self {
        let name = obj.name_any();
        let uid = obj.uid().unwrap_or_default();
        Self {
            store_name: obj.spec.secret_name.clone().unwrap_or_else(|| name.clone()),
            actor: actor(TAG, &uid, ns, &name),
            ns: ns.to_string(),
            name,
            uid,
        }
    }

    fn owns(&self, row: &Secret) -> bool {
        created_by_object(row.created_by.as_deref(), TAG, &self.uid)
    }
}

/// What one pass decided.
struct Outcome {
    row: Option<Secret>,
    source: Option<ImportedSource>,
    ready: Verdict,
    conflict: bool,
    requeue: std::time::Duration,
}

impl Outcome {
    fn waiting(ready: Verdict) -> Self {
        Self {
            row: None,
            source: None,
            ready,
            conflict: false,
            requeue: RESYNC_WAITING,
        }
    }
}

async fn apply(obj: &MlflowSecret, api: &Api<MlflowSecret>, ctx: &Context) -> Result<Action> {
    let ns = namespace(obj)?;
    let who = Who::of(obj, &ns);
    let old = obj.status.clone().unwrap_or_default();

    let row = match ctx.store.get_secret_by_name(&ns, &who.store_name).await {
        Ok(r) => Some(r),
        Err(StoreError::NotFound(_)) => None,
        Err(StoreError::InvalidParameter(m)) => {
            // The schema refuses bad names; this is a namespace the store
            // cannot use as a workspace, or a schema that was bypassed.
            let out = Outcome::waiting(Verdict::no(INVALID_SPEC, m));
            return finish(obj, api, ctx, &who, &old, out).await;
        }
        Err(e) => return Err(e.into()),
    };

    let vf = obj.spec.value_from.as_ref().map(|v| &v.secret_key_ref);
    let settled = |row: Option<Secret>, ready: Verdict| Outcome {
        row,
        source: old.source.clone(),
        ready,
        conflict: false,
        requeue: RESYNC_READY,
    };
    let out = match route(vf, obj.spec.revoked, row, |r| who.owns(r)) {
        Route::Conflict(row) => conflict(obj, ctx, &who, &row).await,
        Route::Revoke(row) => {
            let row = revoked(obj, ctx, &who, &old, &row).await?;
            let ready = if vf.is_some() || row.state == SecretState::Revoked {
                revoked_verdict()
            } else {
                mirrored()
            };
            settled(Some(row), ready)
        }
        Route::NothingImported => Outcome {
            source: None,
            ..settled(
                None,
                Verdict::no(
                    REVOKED,
                    "spec.revoked is true and no store secret exists: nothing is imported",
                ),
            )
        },
        Route::Import(r, row) => sync_import(obj, ctx, &who, &old, row, r).await?,
        Route::ValueNotSet => Outcome::waiting(Verdict::no(
            VALUE_NOT_SET,
            format!(
                "no secret '{}' in workspace '{}': set its value with `mlflow-secrets create {} --workspace {} --value-stdin`, or add spec.valueFrom",
                who.store_name, who.ns, who.store_name, who.ns
            ),
        )),
        Route::RevokeNotAllowed(row) => settled(
            Some(row),
            Verdict::no(
                REVOKE_NOT_ALLOWED,
                format!(
                    "spec.revoked is true, but this object did not create secret '{0}'; revoke it with `mlflow-secrets revoke {0} --workspace {1}`",
                    who.store_name, who.ns
                ),
            ),
        ),
        Route::Mirror(row) => settled(Some(row), mirrored()),
    };
    finish(obj, api, ctx, &who, &old, out).await
}

/// Which rule of docs/operator.md governs this pass, decided from the spec
/// and the row of this name alone: the conflict and revocation rules come
/// before any source Secret is looked at. Pure, so those rules are
/// unit-tested; `owns` is [`Who::owns`].
#[derive(Debug, Clone, PartialEq)]
enum Route<'a> {
    /// `valueFrom` on a row this object did not create: report it, never
    /// touch it.
    Conflict(Secret),
    /// The row is revoked, or `spec.revoked` asks for it on a row this
    /// object may revoke: revoke it once and sweep the copies.
    Revoke(Secret),
    /// `spec.revoked` with `valueFrom` and no row yet: nothing is imported.
    NothingImported,
    /// `valueFrom` on this object's row, or no row yet: [`import::decide`].
    Import(&'a SecretKeyRef, Option<Secret>),
    /// No `valueFrom` and no row: the value is to be set with the CLI.
    ValueNotSet,
    /// `spec.revoked` on a mirrored active row this object did not create.
    RevokeNotAllowed(Secret),
    /// No `valueFrom`: report the active row as it is.
    Mirror(Secret),
}

fn route<'a>(
    value_from: Option<&'a SecretKeyRef>,
    spec_revoked: bool,
    row: Option<Secret>,
    owns: impl Fn(&Secret) -> bool,
) -> Route<'a> {
    let is_revoked = |r: &Secret| r.state == SecretState::Revoked;
    match (value_from, row) {
        (Some(_), Some(row)) if !owns(&row) => Route::Conflict(row),
        (Some(_), Some(row)) if is_revoked(&row) || spec_revoked => Route::Revoke(row),
        (Some(_), None) if spec_revoked => Route::NothingImported,
        (Some(r), row) => Route::Import(r, row),
        (None, None) => Route::ValueNotSet,
        // Revoked with the CLI or REST: the periodic sweep gets there too,
        // but this object has just seen it.
        (None, Some(row)) if is_revoked(&row) => Route::Revoke(row),
        // The only write ever made to a mirrored row is a revoke the spec
        // asks for on a row this object created (it may have imported it
        // before `valueFrom` was removed).
        (None, Some(row)) if spec_revoked && !owns(&row) => Route::RevokeNotAllowed(row),
        (None, Some(row)) if spec_revoked => Route::Revoke(row),
        (None, Some(row)) => Route::Mirror(row),
    }
}

/// A row of this name exists that this object did not create: report it,
/// and never touch the row.
async fn conflict(obj: &MlflowSecret, ctx: &Context, who: &Who, row: &Secret) -> Outcome {
    let msg = format!(
        "a secret '{}' already exists in workspace '{}' that this object did not create (created by {}); \
         the operator does not take it over: choose another spec.secretName, or remove spec.valueFrom to only mirror it",
        who.store_name,
        who.ns,
        row.created_by.as_deref().unwrap_or("unknown")
    );
    let was = obj
        .status
        .as_ref()
        .and_then(|s| status::find(&s.conditions, conditions::CONFLICT))
        .is_some_and(|c| c.status == "True");
    if !was {
        ctx.event(obj, EventType::Warning, CONFLICT, "Import", msg.clone())
            .await;
    }
    Outcome {
        conflict: true,
        ..Outcome::waiting(Verdict::no(CONFLICT, msg))
    }
}

/// The row is revoked, or `spec.revoked` asks for it: revoke it (once), and
/// on the first pass that sees it revoked remove its value from every
/// per-Job Secret of the namespace before the status says REVOKED. A failed
/// sweep fails the reconcile, so it is retried until it is done.
async fn revoked(
    obj: &MlflowSecret,
    ctx: &Context,
    who: &Who,
    old: &MlflowSecretStatus,
    row: &Secret,
) -> Result<Secret> {
    let row = if row.state == SecretState::Revoked {
        row.clone()
    } else {
        revoke(obj, ctx, who, row).await?
    };
    if old.state.as_deref() != Some(SecretState::Revoked.as_str()) {
        scrub::sweep(
            ctx,
            Some(&who.ns),
            &format!("revocation of secret '{}' ({})", who.store_name, who.actor),
        )
        .await?;
    }
    Ok(row)
}

fn revoked_verdict() -> Verdict {
    Verdict::no(
        REVOKED,
        "the secret is revoked; its value can no longer be read",
    )
}

/// No `valueFrom`: the row is managed with the CLI or REST, and mirrored.
fn mirrored() -> Verdict {
    Verdict::yes(ACTIVE, "the store secret exists and is active")
}

async fn revoke(obj: &MlflowSecret, ctx: &Context, who: &Who, row: &Secret) -> Result<Secret> {
    let revoked = match ctx.store.revoke_secret(&row.secret_id, &who.actor).await {
        Ok(r) => r,
        // Already revoked by someone else: the outcome we wanted.
        Err(StoreError::Conflict(_)) => ctx.store.get_secret(&row.secret_id).await?,
        Err(e) => return Err(e.into()),
    };
    ctx.event(
        obj,
        EventType::Normal,
        "Revoked",
        "Revoke",
        format!("revoked secret '{}'", who.store_name),
    )
    .await;
    Ok(revoked)
}

/// Write the status when it changed, and an Event when Ready did.
async fn finish(
    obj: &MlflowSecret,
    api: &Api<MlflowSecret>,
    ctx: &Context,
    who: &Who,
    old: &MlflowSecretStatus,
    out: Outcome,
) -> Result<Action> {
    let generation = obj.meta().generation;
    let kek_version = match &out.row {
        Some(row) => match ctx.store.kek_version(&row.secret_id).await {
            Ok(v) => Some(v),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let mut conditions = vec![status::condition(
        &old.conditions,
        conditions::READY,
        &out.ready,
        generation,
    )];
    let conflict = if out.conflict {
        Verdict::yes(CONFLICT, out.ready.message.clone())
    } else {
        Verdict::no(NO_CONFLICT, "no foreign store secret of this name")
    };
    conditions.push(status::condition(
        &old.conditions,
        conditions::CONFLICT,
        &conflict,
        generation,
    ));
    let mut requeue = out.requeue;
    let active = out.row.as_ref().filter(|_| !out.conflict);
    if let Some(v) =
        super::mlflow_sync::sync(obj, ctx, &who.ns, active, &who.actor, &old.conditions).await
    {
        requeue = requeue.min(super::mlflow_sync::RESYNC);
        let c = status::condition(&old.conditions, conditions::MLFLOW_SYNCED, &v, generation);
        conditions.push(c);
    }
    let row = out.row.as_ref();
    let new = MlflowSecretStatus {
        secret_name: Some(who.store_name.clone()),
        secret_id: row.map(|r| r.secret_id.clone()),
        shared: row.map(|r| r.is_shared),
        state: row.map(|r| r.state.as_str().to_string()),
        kek_version,
        // Not for imported values (security review finding 15): whoever may
        // read this MlflowSecret need not be allowed to read the source
        // Secret, and the mask is part of its value. Store principals see
        // the mask through the CLI and REST.
        masked_value: if obj.spec.value_from.is_some() {
            None
        } else {
            row.map(|r| r.masked_value.clone())
        },
        source: if obj.spec.value_from.is_some() {
            out.source
        } else {
            None
        },
        observed_generation: generation,
        conditions,
    };
    if &new != old {
        // A Warning when Ready turns False for a new reason. Conflict has
        // its own Warning, and a revocation its Normal event: it was asked
        // for.
        let warn = !out.ready.ok && !out.conflict && out.ready.reason != REVOKED;
        if warn && status::ready_changed(&old.conditions, &new.conditions) {
            ctx.event(
                obj,
                EventType::Warning,
                out.ready.reason,
                "Reconcile",
                out.ready.message.clone(),
            )
            .await;
        }
        status::apply(api, &who.name, &new).await?;
    }
    Ok(Action::requeue(requeue))
}

/// Finalizer cleanup: `Delete` removes the row if this object created it.
async fn cleanup(obj: &MlflowSecret, ctx: &Context) -> Result<Action> {
    let ns = namespace(obj)?;
    let who = Who::of(obj, &ns);
    if obj.spec.deletion_policy == DeletionPolicy::Retain {
        tracing::info!(object = %format!("{ns}/{}", who.name), "deletionPolicy Retain: store secret kept");
        return Ok(Action::await_change());
    }
    let trigger = format!("deletion of secret '{}' ({})", who.store_name, who.actor);
    let row = match ctx.store.get_secret_by_name(&ns, &who.store_name).await {
        Ok(r) => r,
        // Gone already (maybe by an earlier pass whose sweep failed): make
        // sure no copy outlives it.
        Err(StoreError::NotFound(_)) => {
            scrub::sweep(ctx, Some(&ns), &trigger).await?;
            return Ok(Action::await_change());
        }
        Err(StoreError::InvalidParameter(_)) => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    };
    if !who.owns(&row) {
        tracing::info!(
            object = %format!("{ns}/{}", who.name),
            "store secret was not created by this object: left in place"
        );
        return Ok(Action::await_change());
    }
    let removed = ctx.store.delete_secret(&row.secret_id, &who.actor).await;
    let note = format!("deleted secret '{}' and its bindings", who.store_name);
    ctx.finish_cleanup(obj, &ns, &trigger, removed, ("Deleted", "Delete", note))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: SecretState) -> Secret {
        Secret {
            secret_id: "s1".into(),
            workspace: "ns".into(),
            secret_name: "azure".into(),
            masked_value: "sk-...".into(),
            is_shared: false,
            state,
            created_by: None,
            created_at: 0,
            last_updated_by: None,
            last_updated_at: 0,
            revoked_by: None,
            revoked_at: None,
            provider: None,
        }
    }

    fn key() -> SecretKeyRef {
        SecretKeyRef {
            name: "src".into(),
            key: "api_key".into(),
        }
    }

    const OWN: fn(&Secret) -> bool = |_| true;
    const FOREIGN: fn(&Secret) -> bool = |_| false;
    use SecretState::{Active, Revoked};

    #[test]
    fn a_foreign_row_is_a_conflict_whatever_the_spec_and_state() {
        let k = key();
        for revoked in [false, true] {
            for state in [Active, Revoked] {
                assert_eq!(
                    route(Some(&k), revoked, Some(row(state)), FOREIGN),
                    Route::Conflict(row(state)),
                    "spec.revoked={revoked} {state:?}"
                );
            }
        }
    }

    #[test]
    fn import_routes_revocation_before_any_source_is_read() {
        let k = key();
        assert_eq!(route(Some(&k), false, None, OWN), Route::Import(&k, None));
        assert_eq!(
            route(Some(&k), false, Some(row(Active)), OWN),
            Route::Import(&k, Some(row(Active)))
        );
        assert_eq!(route(Some(&k), true, None, OWN), Route::NothingImported);
        assert_eq!(
            route(Some(&k), true, Some(row(Active)), OWN),
            Route::Revoke(row(Active))
        );
        // Revoked with the CLI: revoked it stays, never re-imported.
        assert_eq!(
            route(Some(&k), false, Some(row(Revoked)), OWN),
            Route::Revoke(row(Revoked))
        );
    }

    #[test]
    fn a_mirror_is_only_ever_revoked_when_it_is_this_objects() {
        assert_eq!(route(None, false, None, OWN), Route::ValueNotSet);
        assert_eq!(route(None, true, None, FOREIGN), Route::ValueNotSet);
        assert_eq!(
            route(None, false, Some(row(Active)), FOREIGN),
            Route::Mirror(row(Active))
        );
        assert_eq!(
            route(None, true, Some(row(Active)), FOREIGN),
            Route::RevokeNotAllowed(row(Active))
        );
        assert_eq!(
            route(None, true, Some(row(Active)), OWN),
            Route::Revoke(row(Active))
        );
        // Revoked elsewhere: reported (and swept) whoever made it.
        for owns in [OWN, FOREIGN] {
            assert_eq!(
                route(None, false, Some(row(Revoked)), owns),
                Route::Revoke(row(Revoked))
            );
        }
    }
}
