//! Value reads: one secret's value, one binding's, and every value bound
//! to a resource (what `resolve` and the webhook inject). Each is audited
//! (success or not) and counted against the decrypt limits; a revoked
//! secret is refused by name.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use sqlx::any::AnyRow;

use super::rows::{SealedRow, sealed_cols, split_service_accounts};
use super::secrets::{not_found_secret, revoked};
use super::{SqlStore, db_err};
use crate::model::ResourceRef;
use crate::store::audit::{AuditAction, AuditRecord};
use crate::store::{Result, StoreError, validate};
use crate::value::SecretValue;

/// The sealed rows bound to one resource. The join requires the secret's
/// workspace to equal the binding's, so a binding can never reach across.
macro_rules! bound_select {
    () => {
        "SELECT b.binding_name AS binding_name, b.value_field AS value_field, \
         b.service_accounts AS service_accounts, s.secret_id AS secret_id, s.workspace AS workspace, \
         s.secret_name AS secret_name, s.state AS state, s.ciphertext AS ciphertext, s.iv AS iv, \
         s.wrapped_dek AS wrapped_dek, s.kek_version AS kek_version, s.aad_hash AS aad_hash, \
         s.last_updated_at AS last_updated_at \
         FROM secrets_bindings b JOIN secrets s ON s.secret_id = b.secret_id AND s.workspace = b.workspace \
         WHERE b.workspace = ? AND b.resource_type = ? AND b.resource_id = ?"
    };
}

impl SqlStore {
    /// Read the sealed row of a secret.
    async fn sealed_row(&self, secret_id: &str) -> Result<Option<SealedRow>> {
        let row = sqlx::query(self.dialect.q(concat!(
            "SELECT ",
            sealed_cols!(),
            " FROM secrets WHERE secret_id = ?"
        )))
        .bind(secret_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(SealedRow::from_row).transpose()
    }

    pub(super) async fn value(&self, secret_id: &str, actor: &str) -> Result<SecretValue> {
        let mut rec = AuditRecord::new(AuditAction::ReadValue, actor).secret_id(secret_id);
        let r = async {
            validate::uuid("secret_id", secret_id)?;
            let row = self
                .sealed_row(secret_id)
                .await?
                .ok_or_else(|| not_found_secret(secret_id))?;
            rec.set_secret(&row.secret_id, &row.secret_name)
                .set_workspace(&row.workspace);
            if row.is_revoked() {
                return Err(revoked(&row.secret_name, &row.workspace));
            }
            self.check_decrypt_limit(actor, &row.workspace, 1)?;
            let value = self.open_row(&row)?;
            rec.set_detail(format!("kek_version={}", row.kek_version));
            self.append_audit(&rec).await?;
            Ok(value)
        }
        .await;
        self.audit_failure(rec, r).await
    }

    pub(super) async fn resource_value(
        &self,
        res: ResourceRef<'_>,
        binding_name: &str,
        actor: &str,
    ) -> Result<SecretValue> {
        let mut rec = AuditRecord::new(AuditAction::ReadValue, actor).for_resource(res);
        let r = async {
            let rows = self.resource_rows(res, Some(binding_name)).await?;
            let Some(first) = rows.first() else {
                return Err(StoreError::NotFound(format!(
                    "no binding '{binding_name}' for {res}"
                )));
            };
            rec.set_secret(&first.sealed.secret_id, &first.sealed.secret_name);
            let mut map = self.open_bound(rows, &mut rec)?;
            self.append_audit(&rec).await?;
            Ok(map.remove(binding_name).expect("bound row").value)
        }
        .await;
        self.audit_failure(rec, r).await
    }

    /// Every value bound to a resource, by binding name, each with the
    /// stored secret and version it came from: `get_all_secrets_for_resource`
    /// plus what the webhook's `injected` annotation records, from the same
    /// single read. Audited (one `READ_RESOURCE_VALUES` row, success or not),
    /// rate limited, and refused as a whole if any bound secret is revoked.
    pub async fn get_all_bound_values(
        &self,
        res: ResourceRef<'_>,
        actor: &str,
    ) -> Result<BTreeMap<String, BoundValue>> {
        let all = |m: &[BoundMeta<'_>]| {
            Ok::<_, std::convert::Infallible>(
                m.iter().map(|b| b.binding_name.to_string()).collect(),
            )
        };
        match self.get_chosen_bound_values(res, actor, all).await? {
            Ok(map) => Ok(map),
            Err(never) => match never {},
        }
    }

    /// [`SqlStore::get_all_bound_values`] for the bindings `choose` picks
    /// from the rows' metadata, before anything is decrypted (docs/design.md §8:
    /// the webhook decides a pod's consent first). When `choose` refuses,
    /// nothing is decrypted, counted against a limit or audited here: the
    /// caller records its refusal. Only the chosen rows are decrypted and
    /// named in the audit row.
    pub async fn get_chosen_bound_values<E>(
        &self,
        res: ResourceRef<'_>,
        actor: &str,
        choose: impl FnOnce(&[BoundMeta<'_>]) -> std::result::Result<BTreeSet<String>, E>,
    ) -> Result<std::result::Result<BTreeMap<String, BoundValue>, E>> {
        let mut rec = AuditRecord::new(AuditAction::ReadResourceValues, actor).for_resource(res);
        let r = async {
            let rows = self.resource_rows(res, None).await?;
            let meta: Vec<BoundMeta<'_>> = rows
                .iter()
                .map(|r| BoundMeta {
                    binding_name: &r.binding_name,
                    service_accounts: &r.service_accounts,
                })
                .collect();
            let chosen = match choose(&meta) {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            let rows = rows
                .into_iter()
                .filter(|r| chosen.contains(&r.binding_name))
                .collect();
            let map = self.open_bound(rows, &mut rec)?;
            let audit_started = std::time::Instant::now();
            self.append_audit(&rec).await?;
            crate::store::timing::add_audit(audit_started.elapsed());
            Ok(Ok(map))
        }
        .await;
        self.audit_failure(rec, r).await
    }

    /// The bindings of a resource with their secrets' metadata, from the
    /// query the decrypting read uses (`resource_rows`), with nothing
    /// decrypted, counted or audited: the webhook's dryRun.
    pub(super) async fn bound_info(&self, res: ResourceRef<'_>) -> Result<Vec<BoundInfo>> {
        let rows = self.resource_rows(res, None).await?;
        Ok(rows
            .into_iter()
            .map(|r| BoundInfo {
                revoked: r.sealed.is_revoked(),
                binding_name: r.binding_name,
                secret_id: r.sealed.secret_id,
                secret_name: r.sealed.secret_name,
                last_updated_at: r.last_updated_at,
                service_accounts: r.service_accounts,
            })
            .collect())
    }

    /// Bound rows of a resource (see `bound_select!`).
    async fn resource_rows(
        &self,
        res: ResourceRef<'_>,
        binding_name: Option<&str>,
    ) -> Result<Vec<BoundRow>> {
        validate::resource(res)?;
        let ResourceRef {
            workspace,
            resource_type,
            resource_id,
        } = res;
        let rows: Vec<AnyRow> = match binding_name {
            Some(n) => {
                validate::binding_name(n)?;
                sqlx::query(
                    self.dialect
                        .q(concat!(bound_select!(), " AND b.binding_name = ?")),
                )
                .bind(workspace)
                .bind(resource_type)
                .bind(resource_id)
                .bind(n)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(self.dialect.q(bound_select!()))
                    .bind(workspace)
                    .bind(resource_type)
                    .bind(resource_id)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(BoundRow {
                    binding_name: r.try_get("binding_name").map_err(db_err)?,
                    value_field: r.try_get("value_field").map_err(db_err)?,
                    service_accounts: split_service_accounts(
                        r.try_get("service_accounts").map_err(db_err)?,
                    ),
                    last_updated_at: r.try_get("last_updated_at").map_err(db_err)?,
                    sealed: SealedRow::from_row(r)?,
                })
            })
            .collect()
    }

    /// Decrypt bound rows, refusing revoked ones by name.
    fn open_bound(
        &self,
        rows: Vec<BoundRow>,
        rec: &mut AuditRecord,
    ) -> Result<BTreeMap<String, BoundValue>> {
        let actor = rec.principal.clone().unwrap_or_default();
        let workspace = rec.workspace.clone().unwrap_or_default();
        self.check_decrypt_limit(&actor, &workspace, rows.len())?;
        let mut out = BTreeMap::new();
        let mut detail = Vec::with_capacity(rows.len());
        for BoundRow {
            binding_name: binding,
            value_field,
            service_accounts,
            last_updated_at,
            sealed: row,
        } in rows
        {
            if row.is_revoked() {
                return Err(StoreError::Conflict(format!(
                    "secret '{}' (bound as {binding}) in workspace '{}' is revoked",
                    row.secret_name, row.workspace
                )));
            }
            // Binds refuse reserved names; a row that has one anyway (written
            // before the rule, or behind the store's back) is never injected.
            if let Some(rule) = validate::reserved_rule(&binding) {
                return Err(StoreError::Conflict(format!(
                    "binding {binding} of secret '{}' in workspace '{}' has a reserved name ({rule}) and is never injected; unbind it",
                    row.secret_name, row.workspace
                )));
            }
            let value = self.open_row(&row)?;
            // A field binding injects that one string; the field is checked
            // again at every read, since an update may have removed it.
            let value = match &value_field {
                None => value,
                Some(f) => value.field(f).map_err(|e| {
                    StoreError::Conflict(format!(
                        "binding {binding} (secret '{}' in workspace '{}'): {e}",
                        row.secret_name, row.workspace
                    ))
                })?,
            };
            // The version (last_updated_at) is what `injected` and
            // `resolve` report, so the audit row names the same one.
            detail.push(match &value_field {
                None => format!(
                    "{binding}={}@kek_v{}:version={last_updated_at}",
                    row.secret_id, row.kek_version
                ),
                Some(f) => format!(
                    "{binding}={}[{f}]@kek_v{}:version={last_updated_at}",
                    row.secret_id, row.kek_version
                ),
            });
            out.insert(
                binding,
                BoundValue {
                    value,
                    secret_id: row.secret_id.clone(),
                    last_updated_at,
                    service_accounts,
                },
            );
        }
        rec.set_detail(detail.join(","));
        Ok(out)
    }
}

/// One bound row as read for decryption (see `bound_select!`).
struct BoundRow {
    pub binding_name: String,
    pub value_field: Option<String>,
    pub service_accounts: Vec<String>,
    pub last_updated_at: i64,
    pub sealed: SealedRow,
}

/// A value bound to a resource, with the stored secret it came from.
///
/// `last_updated_at` (epoch ms) identifies the value's version: every value
/// change gets a new DEK and a new timestamp. Both come from the same read
/// as the value, so they always describe exactly what was decrypted.
///
/// `value` is what the binding injects: with a `value_field`, that field's
/// string. `service_accounts` are the ServiceAccounts the binding may reach
/// (empty: any), for the webhook to enforce (docs/design.md §8).
pub struct BoundValue {
    pub value: SecretValue,
    pub secret_id: String,
    pub last_updated_at: i64,
    pub service_accounts: Vec<String>,
}

/// A binding of a resource and its secret's metadata, as the webhook's
/// dryRun reports it: nothing decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundInfo {
    pub binding_name: String,
    pub secret_id: String,
    pub secret_name: String,
    pub revoked: bool,
    /// The secret's version (epoch ms), as `injected` reports it.
    pub last_updated_at: i64,
    pub service_accounts: Vec<String>,
}

/// What a reader learns of a bound row before it is decrypted: enough to
/// decide which bindings a pod consents to and may receive.
#[derive(Debug, Clone, Copy)]
pub struct BoundMeta<'a> {
    pub binding_name: &'a str,
    pub service_accounts: &'a [String],
}
