//! Reconciling an `MlflowSecretBinding` with a store binding.
//!
//! The binding's identity in the store is (workspace, resource type,
//! resource id, binding name), and the spec is immutable (a CEL rule), so
//! the reconciler looks the binding up by that key on every pass rather than
//! trusting `status.bindingId`. A binding counts as this object's when its
//! `created_by` carries the object's uid; only those are ever unbound.

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::conditions::READY;
use super::error::Result;
use super::reasons::{
    ALREADY_BOUND, BOUND, CONFLICT, CROSS_NAMESPACE_REF, INVALID_SPEC, SECRET_DELETED,
    SECRET_NOT_FOUND, SECRET_NOT_READY,
};
use super::scrub;
use super::status::{self, Verdict};
use super::{
    BINDING_CONTROLLER, BINDING_FINALIZER, Context, RESYNC_READY, RESYNC_WAITING, actor,
    created_by_object, namespace, reconciled,
};
use crate::k8s::crd::{MlflowSecret, MlflowSecretBinding, MlflowSecretBindingStatus};
use crate::model::{NewBinding, ResourceRef, SecretBinding, SecretState};
use crate::store::StoreError;

/// `created_by` tag of bindings made by an `MlflowSecretBinding`.
const TAG: &str = "mlsecbind";

/// The bindings of the MlflowSecret's namespace that name it.
pub(super) fn referencing_secret(
    cache: &Store<MlflowSecretBinding>,
    s: &MlflowSecret,
) -> Vec<ObjectRef<MlflowSecretBinding>> {
    super::referencing(cache, &s.metadata, |b, name| b.spec.secret_ref.name == name)
}

reconciled!(MlflowSecretBinding, BINDING_CONTROLLER, BINDING_FINALIZER);

fn uid(obj: &MlflowSecretBinding) -> String {
    obj.uid().unwrap_or_default()
}

fn who(obj: &MlflowSecretBinding, ns: &str) -> String {
    actor(TAG, &uid(obj), ns, &obj.name_any())
}

/// The store binding with this object's key, if any (whoever made it). A
/// key the store cannot name has no binding.
async fn existing(
    obj: &MlflowSecretBinding,
    ns: &str,
    ctx: &Context,
) -> Result<Option<SecretBinding>> {
    let spec = &obj.spec;
    match ctx
        .store
        .get_binding_by_key(
            ResourceRef::new(ns, &spec.resource_type, &spec.resource_id),
            &spec.binding_name,
        )
        .await
    {
        Ok(b) => Ok(b),
        Err(StoreError::InvalidParameter(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What one pass decided: the verdict, and the binding and secret ids to
/// report.
#[derive(Debug)]
struct Outcome {
    ready: Verdict,
    binding_id: Option<String>,
    secret_id: Option<String>,
    requeue: std::time::Duration,
}

fn not_ready(reason: &'static str, msg: String, requeue: Option<std::time::Duration>) -> Outcome {
    Outcome {
        ready: Verdict::no(reason, msg),
        binding_id: None,
        secret_id: None,
        requeue: requeue.unwrap_or(RESYNC_WAITING),
    }
}

async fn apply(
    obj: &MlflowSecretBinding,
    api: &Api<MlflowSecretBinding>,
    ctx: &Context,
) -> Result<Action> {
    let ns = namespace(obj)?;
    let out = decide(obj, &ns, ctx).await?;
    let old = obj.status.clone().unwrap_or_default();
    let generation = obj.meta().generation;
    let new = MlflowSecretBindingStatus {
        binding_id: out.binding_id,
        secret_id: out.secret_id,
        observed_generation: generation,
        conditions: vec![status::condition(
            &old.conditions,
            READY,
            &out.ready,
            generation,
        )],
    };
    if new != old {
        if status::ready_changed(&old.conditions, &new.conditions) {
            let (t, reason) = if out.ready.ok {
                (EventType::Normal, BOUND)
            } else {
                (EventType::Warning, out.ready.reason)
            };
            ctx.event(obj, t, reason, "Bind", out.ready.message.clone())
                .await;
        }
        status::apply(api, &obj.name_any(), &new).await?;
    }
    Ok(Action::requeue(out.requeue))
}

async fn decide(obj: &MlflowSecretBinding, ns: &str, ctx: &Context) -> Result<Outcome> {
    let sref = &obj.spec.secret_ref;
    if let Some(other) = sref.namespace.as_deref().filter(|o| *o != ns) {
        return Ok(not_ready(
            CROSS_NAMESPACE_REF,
            format!(
                "secretRef names namespace '{other}', but a binding can only use an MlflowSecret of its own namespace '{ns}' (a binding never crosses workspaces)"
            ),
            Some(RESYNC_READY),
        ));
    }
    let secrets: Api<MlflowSecret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = secrets.get_opt(&sref.name).await?;
    let secret_id = match secret_id_of(ns, &sref.name, secret.as_ref()) {
        Ok(id) => id,
        Err(out) => return Ok(out),
    };
    // The row itself, not the MlflowSecret's report of it. A row of another
    // workspace is treated as missing: status is writable by others, and a
    // binding must never cross workspaces.
    let row = match ctx.store.get_secret(&secret_id).await {
        Ok(r) if r.workspace == ns => r,
        Ok(_) | Err(StoreError::NotFound(_) | StoreError::InvalidParameter(_)) => {
            return Ok(not_ready(
                SECRET_DELETED,
                format!(
                    "the store secret of MlflowSecret {ns}/{} no longer exists",
                    sref.name
                ),
                None,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if row.state == SecretState::Revoked {
        return Ok(not_ready(
            SECRET_NOT_READY,
            format!(
                "secret '{}' is revoked: nothing can be injected",
                row.secret_name
            ),
            Some(RESYNC_READY),
        ));
    }
    let ready = |b: &SecretBinding, msg: String| Outcome {
        ready: Verdict::yes(BOUND, msg),
        binding_id: Some(b.binding_id.clone()),
        secret_id: Some(b.secret_id.clone()),
        requeue: RESYNC_READY,
    };
    let key = format!(
        "{} for {}/{}",
        obj.spec.binding_name, obj.spec.resource_type, obj.spec.resource_id
    );
    let want_field = obj.spec.field.as_deref();
    let want_sas = &obj.spec.service_account_names;
    if let Some(b) = existing(obj, ns, ctx).await? {
        if let Some(what) = mismatch(&b, &secret_id, want_field, want_sas) {
            return Ok(not_ready(
                CONFLICT,
                format!(
                    "binding {key} already exists {what} (created by {}); this object does not change it",
                    b.created_by.as_deref().unwrap_or("unknown")
                ),
                None,
            ));
        }
        let msg = if created_by_object(b.created_by.as_deref(), TAG, &uid(obj)) {
            format!("bound as {key}")
        } else {
            format!(
                "bound as {key} (by a binding this object did not create; it is left in place on deletion)"
            )
        };
        return Ok(ready(&b, msg));
    }
    let new = NewBinding {
        secret_id: &secret_id,
        resource_type: &obj.spec.resource_type,
        resource_id: &obj.spec.resource_id,
        binding_name: &obj.spec.binding_name,
        value_field: want_field,
        service_accounts: want_sas,
    };
    let bound = ctx.store.bind_secret_with(&new, &who(obj, ns)).await;
    Ok(match bound {
        Ok(b) => ready(&b, format!("bound as {key}")),
        Err(e) => bind_refused(e)?,
    })
}

/// The `secretId` a binding may use, read from its MlflowSecret (`None`:
/// not found), or the not-ready outcome that says why there is none yet.
/// Pure, so the reasons table of docs/operator.md is unit-tested; the row
/// itself is checked afterwards (status is a report, not the truth).
fn secret_id_of(
    ns: &str,
    name: &str,
    secret: Option<&MlflowSecret>,
) -> std::result::Result<String, Outcome> {
    let Some(secret) = secret else {
        return Err(not_ready(
            SECRET_NOT_FOUND,
            format!("MlflowSecret {ns}/{name} not found"),
            None,
        ));
    };
    if secret.meta().deletion_timestamp.is_some() {
        return Err(not_ready(
            SECRET_DELETED,
            format!("MlflowSecret {ns}/{name} is being deleted"),
            None,
        ));
    }
    let status = secret.status.as_ref();
    if let Some(id) = status.and_then(|s| s.secret_id.clone()) {
        return Ok(id);
    }
    let why = status
        .and_then(|s| status::find(&s.conditions, READY))
        .map(|c| format!(" ({}: {})", c.reason, c.message))
        .unwrap_or_default();
    Err(not_ready(
        SECRET_NOT_READY,
        format!("MlflowSecret {ns}/{name} has no store secret yet{why}"),
        None,
    ))
}

/// The outcome of a store refusal to create the binding; `Err` for a
/// failure that is not a refusal (the reconcile fails and is retried with
/// backoff).
fn bind_refused(e: StoreError) -> std::result::Result<Outcome, StoreError> {
    Ok(match e {
        // Revocation was checked before the bind, so a refusal here is the
        // private secret rule (the message names the resource it is bound
        // to).
        StoreError::Conflict(m) => not_ready(ALREADY_BOUND, m, None),
        StoreError::AlreadyExists(m) => not_ready(CONFLICT, m, None),
        StoreError::NotFound(m) => not_ready(SECRET_DELETED, m, None),
        StoreError::InvalidParameter(m) => not_ready(INVALID_SPEC, m, Some(RESYNC_READY)),
        e => return Err(e),
    })
}

/// How an existing store binding with this object's key differs from what
/// the object asks for, if it does: then it is someone else's binding (or
/// an older one), and the operator reports a `Conflict` instead of
/// adopting it: adopting one for another secret, another field or more
/// ServiceAccounts would inject something the object never asked for.
fn mismatch(
    b: &SecretBinding,
    secret_id: &str,
    field: Option<&str>,
    service_accounts: &[String],
) -> Option<&'static str> {
    if b.secret_id != secret_id {
        Some("for another secret")
    } else if b.value_field.as_deref() != field {
        Some("with another field")
    } else if !same_set(&b.service_accounts, service_accounts) {
        Some("with another ServiceAccount list")
    } else {
        None
    }
}

/// The same ServiceAccounts, in any order.
fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    b.sort();
    a == b
}

/// Finalizer cleanup: unbind, if this object made the binding.
///
/// Then the value leaves every per-Job Secret that holds it under this
/// name (docs/design.md §8, "Revocation reaches every copy"). A failed sweep fails
/// the cleanup, which is retried: the binding is gone by then, so the retry
/// finds nothing to unbind and sweeps again.
async fn cleanup(obj: &MlflowSecretBinding, ctx: &Context) -> Result<Action> {
    let ns = namespace(obj)?;
    let trigger = format!(
        "unbind of {} for {}/{} ({})",
        obj.spec.binding_name,
        obj.spec.resource_type,
        obj.spec.resource_id,
        who(obj, &ns)
    );
    let Some(b) = existing(obj, &ns, ctx).await? else {
        scrub::sweep(ctx, Some(&ns), &trigger).await?;
        return Ok(Action::await_change());
    };
    if !created_by_object(b.created_by.as_deref(), TAG, &uid(obj)) {
        return Ok(Action::await_change());
    }
    let removed = ctx.store.unbind_secret(&b.binding_id, &who(obj, &ns)).await;
    let note = format!(
        "unbound {} for {}/{}",
        obj.spec.binding_name, obj.spec.resource_type, obj.spec.resource_id
    );
    ctx.finish_cleanup(obj, &ns, &trigger, removed, ("Unbound", "Unbind", note))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(secret_id: &str, field: Option<&str>, sas: &[&str]) -> SecretBinding {
        SecretBinding {
            binding_id: "b".into(),
            secret_id: secret_id.into(),
            workspace: "ns".into(),
            resource_type: "SCORER_JOB".into(),
            resource_id: "judge".into(),
            binding_name: "AZURE_API_KEY".into(),
            created_by: None,
            created_at: 0,
            value_field: field.map(str::to_string),
            service_accounts: sas.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn an_existing_binding_is_adopted_only_when_it_is_exactly_what_is_asked() {
        let sas = vec!["a".to_string(), "b".to_string()];
        let b = binding("s1", Some("api_key"), &["b", "a"]);
        assert_eq!(
            mismatch(&b, "s1", Some("api_key"), &sas),
            None,
            "order is irrelevant"
        );
        assert_eq!(
            mismatch(&b, "s2", Some("api_key"), &sas),
            Some("for another secret")
        );
        assert_eq!(mismatch(&b, "s1", None, &sas), Some("with another field"));
        assert_eq!(
            mismatch(&b, "s1", Some("api_base"), &sas),
            Some("with another field")
        );
        // Wider (no list: every ServiceAccount) or narrower: not adopted.
        assert_eq!(
            mismatch(&b, "s1", Some("api_key"), &[]),
            Some("with another ServiceAccount list")
        );
        assert_eq!(
            mismatch(&binding("s1", None, &[]), "s1", None, &sas[..1]),
            Some("with another ServiceAccount list")
        );
    }

    fn secret(
        deleting: bool,
        id: Option<&str>,
        ready: Option<(&'static str, &str)>,
    ) -> MlflowSecret {
        let mut s: MlflowSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "secrets.mlflow.org/v1alpha1",
            "kind": "MlflowSecret",
            "metadata": {"name": "azure", "namespace": "ns"},
            "spec": {},
        }))
        .expect("a minimal MlflowSecret");
        if deleting {
            s.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        let conditions = ready
            .map(|(reason, msg)| {
                vec![status::condition(
                    &[],
                    READY,
                    &Verdict::no(reason, msg),
                    None,
                )]
            })
            .unwrap_or_default();
        s.status = Some(crate::k8s::crd::MlflowSecretStatus {
            secret_id: id.map(str::to_string),
            conditions,
            ..Default::default()
        });
        s
    }

    fn reason(r: std::result::Result<String, Outcome>) -> (&'static str, String) {
        let out = r.expect_err("not ready");
        assert!(!out.ready.ok);
        assert_eq!(out.binding_id, None);
        (out.ready.reason, out.ready.message)
    }

    #[test]
    fn a_binding_waits_for_its_mlflowsecret_with_the_reason_of_the_table() {
        assert_eq!(
            reason(secret_id_of("ns", "azure", None)),
            (SECRET_NOT_FOUND, "MlflowSecret ns/azure not found".into())
        );
        assert_eq!(
            reason(secret_id_of(
                "ns",
                "azure",
                Some(&secret(true, Some("s1"), None))
            )),
            (
                SECRET_DELETED,
                "MlflowSecret ns/azure is being deleted".into()
            ),
            "a deleting MlflowSecret is not used even with a secretId"
        );
        assert_eq!(
            reason(secret_id_of(
                "ns",
                "azure",
                Some(&secret(false, None, Some(("ValueNotSet", "no value"))))
            )),
            (
                SECRET_NOT_READY,
                "MlflowSecret ns/azure has no store secret yet (ValueNotSet: no value)".into()
            ),
            "the MlflowSecret's own reason is quoted"
        );
        assert_eq!(
            reason(secret_id_of(
                "ns",
                "azure",
                Some(&secret(false, None, None))
            ))
            .0,
            SECRET_NOT_READY
        );
        assert_eq!(
            secret_id_of("ns", "azure", Some(&secret(false, Some("s1"), None))).expect("usable"),
            "s1"
        );
    }

    #[test]
    fn store_refusals_of_a_bind_map_to_reasons_and_failures_stay_errors() {
        let table = [
            (
                StoreError::Conflict("private".into()),
                ALREADY_BOUND,
                RESYNC_WAITING,
            ),
            (
                StoreError::AlreadyExists("dup".into()),
                CONFLICT,
                RESYNC_WAITING,
            ),
            (
                StoreError::NotFound("gone".into()),
                SECRET_DELETED,
                RESYNC_WAITING,
            ),
            (
                StoreError::InvalidParameter("bad".into()),
                INVALID_SPEC,
                RESYNC_READY,
            ),
        ];
        for (e, want, requeue) in table {
            let msg = e.to_string();
            let out = bind_refused(e).expect("a refusal");
            assert_eq!(out.ready.reason, want);
            assert!(!out.ready.ok);
            assert!(msg.contains(&out.ready.message), "{msg}");
            assert_eq!(out.requeue, requeue, "{want}");
        }
        assert!(matches!(
            bind_refused(StoreError::Database("down".into())),
            Err(StoreError::Database(_))
        ));
        assert!(matches!(
            bind_refused(StoreError::Unavailable("x".into())),
            Err(StoreError::Unavailable(_))
        ));
    }
}
