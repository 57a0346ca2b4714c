//! The import side of an `MlflowSecret` with `valueFrom`: read the source
//! Secret's metadata, let [`import::decide`] pick the step, and create or
//! re-import the row from the source's value (wiped once sealed).

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::events::EventType;
use zeroize::Zeroize;

use super::super::error::Result;
use super::super::import::{self, SourceMeta, Step};
use super::super::reasons::{
    ACTIVE, INVALID_SPEC, INVALID_VALUE, SOURCE_NOT_FOUND, SOURCE_NOT_IMPORTABLE,
};
use super::super::status::Verdict;
use super::super::{Context, MIN_BACKOFF, RESYNC_READY, RESYNC_WAITING};
use super::{Outcome, Who};
use crate::k8s::ANNOTATION_IMPORTABLE;
use crate::k8s::crd::{ImportedSource, MlflowSecret, MlflowSecretStatus, SecretKeyRef};
use crate::model::{NewSecret, Secret};
use crate::store::StoreError;
use crate::value::SecretValue;

/// `valueFrom` on a row that is this object's, or no row yet, neither
/// revoked ([`route`]): import, re-import or report, as [`import::decide`]
/// says.
pub(super) async fn sync_import(
    obj: &MlflowSecret,
    ctx: &Context,
    who: &Who,
    old: &MlflowSecretStatus,
    row: Option<Secret>,
    r: &SecretKeyRef,
) -> Result<Outcome> {
    let mut out = Outcome {
        row: None,
        source: old.source.clone(),
        ready: in_sync(r),
        conflict: false,
        requeue: RESYNC_READY,
    };
    let api: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &who.ns);
    let meta = api.get_metadata_opt(&r.name).await?.map(|m| SourceMeta {
        importable: import::is_importable(m.metadata.annotations.as_ref()),
        current: imported(r, &m),
    });
    let step = import::decide(row.is_some(), meta.as_ref(), old.source.as_ref());
    out.row = row;
    match step {
        Step::InSync => Ok(out),
        Step::SourceMissing => {
            out.ready = not_found(who, r);
            out.requeue = RESYNC_WAITING;
            Ok(out)
        }
        Step::NotImportable { row_kept } => {
            out.ready = not_importable(who, r, row_kept);
            Ok(out)
        }
        Step::Import | Step::Reimport => {
            let (value, source) = match read_source(ctx, &who.ns, r).await? {
                Ok(v) => v,
                Err(verdict) => {
                    out.ready = verdict;
                    out.requeue = RESYNC_WAITING;
                    return Ok(out);
                }
            };
            let import = Import { obj, ctx, who, r };
            match out.row.take() {
                None => import.create(value, source, out).await,
                Some(row) => import.reimport(value, source, row, out).await,
            }
        }
    }
}

/// One import of `r` into `obj`'s row, its value already read.
#[derive(Clone, Copy)]
struct Import<'a> {
    obj: &'a MlflowSecret,
    ctx: &'a Context,
    who: &'a Who,
    r: &'a SecretKeyRef,
}

impl Import<'_> {
    /// No row yet: create it from the imported value.
    async fn create(
        &self,
        value: SecretValue,
        source: ImportedSource,
        out: Outcome,
    ) -> Result<Outcome> {
        let Self { obj, ctx, who, r } = *self;
        let new = NewSecret {
            workspace: &who.ns,
            secret_name: &who.store_name,
            is_shared: obj.spec.shared,
            provider: obj.spec.provider.as_deref(),
        };
        let created = ctx.store.create_secret_with(&new, &value, &who.actor).await;
        drop(value);
        match created {
            Ok(row) => {
                ctx.event(
                    obj,
                    EventType::Normal,
                    "Created",
                    "Import",
                    format!(
                        "created secret '{}' from Secret {} key {}",
                        who.store_name, r.name, r.key
                    ),
                )
                .await;
                Ok(Outcome {
                    row: Some(row),
                    source: Some(source),
                    ready: in_sync(r),
                    ..out
                })
            }
            // Someone created the name between our read and our insert: an
            // error, so the retry (after MIN_BACKOFF) sees whose row it is.
            Err(StoreError::InvalidParameter(m)) => {
                Ok(Outcome::waiting(Verdict::no(INVALID_SPEC, m)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The source changed: seal its value afresh (a new DEK and IV).
    async fn reimport(
        &self,
        value: SecretValue,
        source: ImportedSource,
        row: Secret,
        mut out: Outcome,
    ) -> Result<Outcome> {
        let Self { obj, ctx, who, r } = *self;
        let updated = ctx
            .store
            .update_secret(&row.secret_id, &value, &who.actor)
            .await;
        drop(value);
        let updated = match updated {
            Ok(u) => u,
            // Revoked (a CLI revoke) or deleted since our read: next pass.
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                out.row = Some(row);
                out.requeue = MIN_BACKOFF;
                return Ok(out);
            }
            Err(e) => return Err(e.into()),
        };
        ctx.event(
            obj,
            EventType::Normal,
            "Updated",
            "Import",
            format!(
                "re-imported secret '{}' from Secret {} key {} (resourceVersion {})",
                who.store_name, r.name, r.key, source.resource_version
            ),
        )
        .await;
        out.row = Some(updated);
        out.source = Some(source);
        Ok(out)
    }
}

/// Ready after an import, and on every later pass that finds the row in
/// sync: the same words both times, so the pass after an import computes
/// the status the object already has and does not write it again.
fn in_sync(r: &SecretKeyRef) -> Verdict {
    Verdict::yes(
        ACTIVE,
        format!("imported from Secret {} key {}", r.name, r.key),
    )
}

fn not_found(who: &Who, r: &SecretKeyRef) -> Verdict {
    Verdict::no(
        SOURCE_NOT_FOUND,
        format!("Secret {}/{} not found", who.ns, r.name),
    )
}

fn not_importable(who: &Who, r: &SecretKeyRef, row_kept: bool) -> Verdict {
    let msg = if row_kept {
        format!(
            "Secret {}/{} no longer carries the annotation {ANNOTATION_IMPORTABLE}: \"true\": its changes are not imported; the store secret '{}' keeps the value imported last",
            who.ns, r.name, who.store_name
        )
    } else {
        format!(
            "Secret {}/{} does not consent to import: add the annotation {ANNOTATION_IMPORTABLE}: \"true\" to it (its value was not read)",
            who.ns, r.name
        )
    };
    Verdict::no(SOURCE_NOT_IMPORTABLE, msg)
}

fn imported(r: &SecretKeyRef, meta: &PartialObjectMeta<KubeSecret>) -> ImportedSource {
    ImportedSource {
        name: r.name.clone(),
        key: r.key.clone(),
        uid: meta.metadata.uid.clone().unwrap_or_default(),
        resource_version: meta.metadata.resource_version.clone().unwrap_or_default(),
    }
}

/// Read one key of the source Secret as a string value. The other keys'
/// bytes are wiped, and the chosen one moves into a zeroizing
/// [`SecretValue`] without a copy. `Err(verdict)` for a missing Secret or
/// key, or a value the store refuses; the verdict never quotes the value.
async fn read_source(
    ctx: &Context,
    ns: &str,
    r: &SecretKeyRef,
) -> Result<std::result::Result<(SecretValue, ImportedSource), Verdict>> {
    let api: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(mut secret) = api.get_opt(&r.name).await? else {
        return Ok(Err(Verdict::no(
            SOURCE_NOT_FOUND,
            format!("Secret {ns}/{} not found", r.name),
        )));
    };
    let mut data = secret.data.take().unwrap_or_default();
    if !import::is_importable(secret.metadata.annotations.as_ref()) {
        // Consent withdrawn between the metadata read and this GET.
        for v in data.values_mut() {
            v.0.zeroize();
        }
        return Ok(Err(Verdict::no(
            SOURCE_NOT_IMPORTABLE,
            format!(
                "Secret {ns}/{} does not consent to import: add the annotation {ANNOTATION_IMPORTABLE}: \"true\" to it (its value was not read)",
                r.name
            ),
        )));
    }
    let source = ImportedSource {
        name: r.name.clone(),
        key: r.key.clone(),
        uid: secret.metadata.uid.clone().unwrap_or_default(),
        resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
    };
    let bytes = data.remove(&r.key);
    for v in data.values_mut() {
        v.0.zeroize();
    }
    let Some(bytes) = bytes else {
        return Ok(Err(Verdict::no(
            SOURCE_NOT_FOUND,
            format!("Secret {ns}/{} has no key '{}'", r.name, r.key),
        )));
    };
    ctx.metrics.decrypts.with_label_values(&[ns]).inc();
    let text = match String::from_utf8(bytes.0) {
        Ok(t) => t,
        Err(e) => {
            e.into_bytes().zeroize();
            return Ok(Err(Verdict::no(
                INVALID_VALUE,
                format!("Secret {ns}/{} key '{}' is not UTF-8 text", r.name, r.key),
            )));
        }
    };
    match SecretValue::from_string(text) {
        Ok(v) => Ok(Ok((v, source))),
        Err(e) => Ok(Err(Verdict::no(
            INVALID_VALUE,
            format!("Secret {ns}/{} key '{}': {e}", r.name, r.key),
        ))),
    }
}
