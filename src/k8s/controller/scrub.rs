//! Revocation reaches every copy (docs/design.md §8, §10 rule 11).
//!
//! The webhook materialises values in per-Job Secrets
//! `<job>-mlflow-secrets`, each labelled [`LABEL_MANAGED`]` = "true"` and
//! annotated with [`ANNOTATION_SECRET_IDS`] (`{"<data key>":"<secret id>"}`).
//! A data key stays only while it is still *live*: its secret exists in the
//! Secret's namespace (the workspace), is ACTIVE, and the resource the
//! Secret was written for still has a binding of that name to that secret.
//! Every other key is removed, and the Secret deleted when no key is left.
//! A value *update* changes none of that, so a running Job keeps the version
//! it started with.
//!
//! Two ways in, one rule ([`plan`]):
//! - **At once**, from the reconcile that revokes, deletes or unbinds through
//!   the CRDs: it sweeps the object's namespace before it returns, so when
//!   the reconcile is done no copy is left (and a failure requeues it).
//! - **Periodically**, on the leader, every [`super::SWEEP_EVERY`]: a
//!   revoke, delete or unbind through the CLI or the REST API changes only
//!   the database, and nothing in Kubernetes announces it. The sweep lists
//!   the managed Secrets (metadata only, by label) and checks them against
//!   the store, so such a change reaches every copy within one period.
//!
//! Each removal is one store audit row per secret id, naming the Secret,
//! the keys and why. The Secrets are only ever read as metadata: the sweep
//! never holds a value.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{
    Api, DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, Preconditions,
};

use super::Context;
use super::error::Result;
use crate::k8s::crd::{MlflowSecret, MlflowSecretBinding};
use crate::k8s::webhook::secret::{
    ANNOTATION_SECRET_IDS, LABEL_MANAGED, parse_secret_ids, secret_ids_annotation,
};
use crate::k8s::{ANNOTATION_RESOURCE_ID, ANNOTATION_RESOURCE_TYPE, DEFAULT_RESOURCE_TYPE};
use crate::model::{BindingFilter, SecretState};
use crate::store::StoreError;
use crate::store::audit::{AuditAction, AuditRecord};

/// Principal of the audit rows the sweep writes.
pub const SWEEP_ACTOR: &str = "k8s:operator:revocation-sweep";

/// Managed Secrets listed per page (metadata only, a few hundred bytes each).
const PAGE: u32 = 500;

/// What the store says about one secret id, seen from one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFact {
    Active,
    Revoked,
    /// Deleted, never existed, not an id, or a row of another workspace
    /// (a per-Job Secret can only legitimately hold its own workspace's).
    Missing,
}

/// Why a key is removed (in the audit row and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    Revoked,
    Deleted,
    Unbound,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Deleted => "deleted",
            Self::Unbound => "unbound",
        }
    }
}

/// What to do with one per-Job Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scrub {
    /// Every key is live.
    Keep,
    /// Remove these keys (`key -> (secret id, why)`); `remaining` is the
    /// annotation afterwards. `delete` when nothing remains.
    Remove {
        removed: BTreeMap<String, (String, Cause)>,
        remaining: BTreeMap<String, String>,
        delete: bool,
    },
}

/// The rule, without I/O. `ids` is the Secret's annotation; `secrets` what
/// the store says of each id; `bindings` the resource's current bindings
/// (`binding name -> secret id`), or `None` when the Secret does not name
/// its resource (then only the secret's own state counts).
pub fn plan(
    ids: &BTreeMap<String, String>,
    secrets: &HashMap<String, SecretFact>,
    bindings: Option<&HashMap<String, String>>,
) -> Scrub {
    let mut removed = BTreeMap::new();
    let mut remaining = BTreeMap::new();
    for (key, id) in ids {
        let cause = match secrets.get(id).copied().unwrap_or(SecretFact::Missing) {
            SecretFact::Revoked => Some(Cause::Revoked),
            SecretFact::Missing => Some(Cause::Deleted),
            SecretFact::Active => match bindings {
                Some(b) if b.get(key) != Some(id) => Some(Cause::Unbound),
                _ => None,
            },
        };
        match cause {
            Some(c) => {
                removed.insert(key.clone(), (id.clone(), c));
            }
            None => {
                remaining.insert(key.clone(), id.clone());
            }
        }
    }
    if removed.is_empty() {
        return Scrub::Keep;
    }
    let delete = remaining.is_empty();
    Scrub::Remove {
        removed,
        remaining,
        delete,
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub examined: usize,
    pub scrubbed: usize,
    pub deleted: usize,
}

/// Store facts, looked up once per sweep.
#[derive(Default)]
struct Facts {
    secrets: HashMap<(String, String), SecretFact>,
    bindings: HashMap<(String, String, String), HashMap<String, String>>,
}

impl Facts {
    async fn secret(&mut self, ctx: &Context, ns: &str, id: &str) -> Result<SecretFact> {
        let k = (ns.to_string(), id.to_string());
        if let Some(f) = self.secrets.get(&k) {
            return Ok(*f);
        }
        let f = match ctx.store.get_secret(id).await {
            Ok(s) if s.workspace != ns => SecretFact::Missing,
            Ok(s) if s.state == SecretState::Revoked => SecretFact::Revoked,
            Ok(_) => SecretFact::Active,
            Err(StoreError::NotFound(_) | StoreError::InvalidParameter(_)) => SecretFact::Missing,
            Err(e) => return Err(e.into()),
        };
        self.secrets.insert(k, f);
        Ok(f)
    }

    async fn bindings(
        &mut self,
        ctx: &Context,
        ns: &str,
        rtype: &str,
        rid: &str,
    ) -> Result<&HashMap<String, String>> {
        let k = (ns.to_string(), rtype.to_string(), rid.to_string());
        if !self.bindings.contains_key(&k) {
            let mut map = HashMap::new();
            let mut filter = BindingFilter {
                workspace: Some(ns.to_string()),
                resource_type: Some(rtype.to_string()),
                resource_id: Some(rid.to_string()),
                ..Default::default()
            };
            loop {
                let page = match ctx.store.list_bindings(&filter).await {
                    Ok(p) => p,
                    // A resource the store cannot name has no bindings.
                    Err(StoreError::InvalidParameter(_)) => break,
                    Err(e) => return Err(e.into()),
                };
                for b in page.items {
                    map.insert(b.binding_name, b.secret_id);
                }
                match page.next_page_token {
                    Some(t) => filter.page_token = Some(t),
                    None => break,
                }
            }
            self.bindings.insert(k.clone(), map);
        }
        Ok(&self.bindings[&k])
    }
}

/// Sweep the managed Secrets of `namespace` (or of the whole watch scope)
/// against the store. `trigger` names what asked (for the audit detail).
pub async fn sweep(ctx: &Context, namespace: Option<&str>, trigger: &str) -> Result<SweepReport> {
    let apis: Vec<Api<KubeSecret>> = match namespace {
        Some(ns) => vec![Api::namespaced(ctx.client.clone(), ns)],
        None => targets(ctx).await?,
    };
    let mut facts = Facts::default();
    let mut report = SweepReport::default();
    for api in apis {
        let mut lp = ListParams::default()
            .labels(&format!("{LABEL_MANAGED}=true"))
            .limit(PAGE);
        loop {
            let list = api.list_metadata(&lp).await?;
            for s in &list.items {
                report.examined += 1;
                match scrub_one(ctx, s, &mut facts, trigger).await? {
                    Some(true) => {
                        report.scrubbed += 1;
                        report.deleted += 1;
                    }
                    Some(false) => report.scrubbed += 1,
                    None => {}
                }
            }
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
    }
    if report.scrubbed > 0 {
        tracing::info!(
            trigger,
            examined = report.examined,
            scrubbed = report.scrubbed,
            deleted = report.deleted,
            "revocation sweep removed values from per-Job Secrets"
        );
    }
    Ok(report)
}

/// Where the periodic sweep looks: the watch scope; with a label selector
/// (`--selector`: several operators, maybe with several stores, share the
/// cluster) only the namespaces holding an object this operator reconciles.
/// A secret id this store does not know is taken as deleted, so an
/// operator must never sweep a namespace another store serves.
async fn targets(ctx: &Context) -> Result<Vec<Api<KubeSecret>>> {
    let Some(sel) = &ctx.label_selector else {
        return Ok(ctx.scope.apis(&ctx.client));
    };
    let lp = ListParams::default().labels(sel);
    let mut namespaces = BTreeSet::new();
    for api in ctx.scope.apis::<MlflowSecret>(&ctx.client) {
        for o in api.list_metadata(&lp).await?.items {
            namespaces.extend(o.metadata.namespace);
        }
    }
    for api in ctx.scope.apis::<MlflowSecretBinding>(&ctx.client) {
        for o in api.list_metadata(&lp).await?.items {
            namespaces.extend(o.metadata.namespace);
        }
    }
    Ok(namespaces
        .iter()
        .map(|ns| Api::namespaced(ctx.client.clone(), ns))
        .collect())
}

/// Scrub one Secret. `Some(deleted)` when it was changed.
async fn scrub_one(
    ctx: &Context,
    s: &PartialObjectMeta<KubeSecret>,
    facts: &mut Facts,
    trigger: &str,
) -> Result<Option<bool>> {
    let meta = &s.metadata;
    let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
        return Ok(None);
    };
    if !ctx.scope.contains(ns) {
        return Ok(None);
    }
    let ann = meta.annotations.as_ref();
    // A Secret whose annotation is missing or hand-edited into something
    // else is left alone (and logged): the sweep cannot tell which of its
    // keys hold what.
    let ids = match ann.and_then(|a| a.get(ANNOTATION_SECRET_IDS)) {
        Some(v) => match parse_secret_ids(v) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(secret = %format!("{ns}/{name}"), error = %e, "managed Secret left alone");
                return Ok(None);
            }
        },
        None => {
            tracing::warn!(secret = %format!("{ns}/{name}"), "managed Secret without the {ANNOTATION_SECRET_IDS} annotation: left alone");
            return Ok(None);
        }
    };
    let mut secret_facts = HashMap::new();
    for id in ids.values().collect::<BTreeSet<_>>() {
        secret_facts.insert(id.clone(), facts.secret(ctx, ns, id).await?);
    }
    let rid = ann.and_then(|a| a.get(ANNOTATION_RESOURCE_ID));
    let rtype = ann
        .and_then(|a| a.get(ANNOTATION_RESOURCE_TYPE))
        .map(String::as_str)
        .unwrap_or(DEFAULT_RESOURCE_TYPE);
    let bindings = match rid {
        Some(rid) => Some(facts.bindings(ctx, ns, rtype, rid).await?.clone()),
        None => None,
    };
    let Scrub::Remove {
        removed,
        remaining,
        delete,
    } = plan(&ids, &secret_facts, bindings.as_ref())
    else {
        return Ok(None);
    };
    let api: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), ns);
    let rv = meta.resource_version.clone();
    // Guarded by resourceVersion (and uid): a Secret the webhook rewrote
    // since the list is left to the next sweep, which sees its new state.
    let done = if delete {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: rv,
                uid: meta.uid.clone(),
            }),
            ..Default::default()
        };
        api.delete(name, &dp).await.map(|_| ())
    } else {
        let mut data = serde_json::Map::new();
        for k in removed.keys() {
            data.insert(k.clone(), serde_json::Value::Null);
        }
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": rv,
                "annotations": {
                    ANNOTATION_SECRET_IDS: secret_ids_annotation(&remaining)
                }
            },
            "data": data,
        });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    };
    match done {
        Ok(()) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let what = if delete {
        "the Secret was deleted (nothing left)"
    } else {
        "the Secret keeps its other keys"
    };
    let mut by_id: BTreeMap<&str, Vec<(&str, Cause)>> = BTreeMap::new();
    for (k, (id, c)) in &removed {
        by_id.entry(id.as_str()).or_default().push((k.as_str(), *c));
    }
    for (id, keys) in by_id {
        let list = keys
            .iter()
            .map(|(k, c)| format!("{k} ({})", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut rec = AuditRecord::new(AuditAction::ScrubCopy, SWEEP_ACTOR)
            .workspace(ns)
            .secret_id(id)
            .detail(format!(
                "removed {list} from per-Job Secret {ns}/{name}; {what}; trigger: {trigger}"
            ));
        if let Some(rid) = rid {
            rec = rec.resource(rtype, rid);
        }
        ctx.store.append_audit(&rec).await?;
    }
    Ok(Some(delete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn facts(pairs: &[(&str, SecretFact)]) -> HashMap<String, SecretFact> {
        pairs.iter().map(|(k, f)| (k.to_string(), *f)).collect()
    }

    fn binds(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        ids(pairs).into_iter().collect()
    }

    /// (removed, remaining, delete) of a `Scrub::Remove`.
    type Removal = (
        BTreeMap<String, (String, Cause)>,
        BTreeMap<String, String>,
        bool,
    );

    /// The removal `plan` must decide: (removed, remaining, delete).
    fn removal(
        i: &BTreeMap<String, String>,
        f: &HashMap<String, SecretFact>,
        b: Option<&HashMap<String, String>>,
    ) -> Removal {
        match plan(i, f, b) {
            Scrub::Remove {
                removed,
                remaining,
                delete,
            } => (removed, remaining, delete),
            Scrub::Keep => panic!("expected a removal"),
        }
    }

    #[test]
    fn live_keys_are_kept() {
        let i = ids(&[("A", "s1"), ("B", "s2")]);
        let f = facts(&[("s1", SecretFact::Active), ("s2", SecretFact::Active)]);
        let b = binds(&[("A", "s1"), ("B", "s2"), ("C", "s3")]);
        assert_eq!(plan(&i, &f, Some(&b)), Scrub::Keep);
        assert_eq!(plan(&i, &f, None), Scrub::Keep);
    }

    #[test]
    fn a_revoked_secret_leaves_every_copy_and_the_rest_stays() {
        let i = ids(&[("A", "s1"), ("A_FIELD", "s1"), ("B", "s2")]);
        let f = facts(&[("s1", SecretFact::Revoked), ("s2", SecretFact::Active)]);
        let b = binds(&[("A", "s1"), ("A_FIELD", "s1"), ("B", "s2")]);
        let (removed, remaining, delete) = removal(&i, &f, Some(&b));
        assert_eq!(
            removed.keys().collect::<Vec<_>>(),
            ["A", "A_FIELD"],
            "both keys of the revoked secret"
        );
        assert!(
            removed
                .values()
                .all(|(id, c)| id == "s1" && *c == Cause::Revoked)
        );
        assert_eq!(remaining, ids(&[("B", "s2")]));
        assert!(!delete);
    }

    #[test]
    fn deleted_unknown_and_foreign_ids_are_removed_and_empty_deletes() {
        let i = ids(&[("A", "s1"), ("B", "not-an-id")]);
        let f = facts(&[("s1", SecretFact::Missing)]);
        let (removed, remaining, delete) = removal(&i, &f, None);
        assert!(remaining.is_empty() && delete);
        assert!(removed.values().all(|(_, c)| *c == Cause::Deleted));
    }

    #[test]
    fn an_unbound_or_rebound_name_is_removed_but_an_update_is_not() {
        let i = ids(&[("A", "s1"), ("B", "s2"), ("C", "s3")]);
        let f = facts(&[
            ("s1", SecretFact::Active),
            ("s2", SecretFact::Active),
            ("s3", SecretFact::Active),
        ]);
        // A unbound; B rebound to another secret; C unchanged (its value may
        // have been updated: a running Job keeps the version it started with).
        let b = binds(&[("B", "s9"), ("C", "s3")]);
        let (removed, remaining, delete) = removal(&i, &f, Some(&b));
        assert_eq!(removed.len(), 2);
        assert!(removed.values().all(|(_, c)| *c == Cause::Unbound));
        assert_eq!(remaining, ids(&[("C", "s3")]));
        assert!(!delete);
    }
}
