//! The write and value-read operations of the SQL store. Each runs in one
//! transaction that ends with its audit record, so a change and its audit
//! row commit together or not at all.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::{self, AuditRecord};
use super::sql::{Dialect, SqlStore, bound_select, db_err, violated_constraint};
use super::sql_rows::{SealedRow, join_service_accounts, sealed_cols, split_service_accounts};
use super::validate;
use super::{Result, SecretsStore, StoreError};
use crate::crypto;
use crate::model::{NewBinding, NewSecret, Secret, SecretBinding, SecretState, now_ms};
use crate::value::SecretValue;

impl SqlStore {
    pub(super) async fn create_inner(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        actor: &str,
        rec: &AuditRecord,
    ) -> Result<Secret> {
        let NewSecret {
            workspace,
            secret_name,
            is_shared,
            provider,
        } = *new;
        validate::workspace(workspace)?;
        validate::secret_name(secret_name)?;
        if let Some(p) = provider {
            validate::provider(p)?;
        }
        let secret_id = uuid::Uuid::new_v4().to_string();
        let sealed = self.seal(workspace, &secret_id, secret_name, value)?;
        let now = now_ms();
        let secret = Secret {
            secret_id: secret_id.clone(),
            workspace: workspace.to_string(),
            secret_name: secret_name.to_string(),
            masked_value: value.mask(),
            is_shared,
            state: SecretState::Active,
            created_by: Some(actor.to_string()),
            created_at: now,
            last_updated_by: Some(actor.to_string()),
            last_updated_at: now,
            revoked_by: None,
            revoked_at: None,
            provider: provider.map(str::to_string),
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(self.dialect.q(
            "INSERT INTO secrets (secret_id, workspace, secret_name, ciphertext, iv, wrapped_dek, \
             kek_version, aad_hash, masked_value, is_shared, state, created_by, last_updated_by, \
             created_at, last_updated_at, provider) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ACTIVE', ?, ?, ?, ?, ?)",
        ))
        .bind(&secret.secret_id)
        .bind(&secret.workspace)
        .bind(&secret.secret_name)
        .bind(sealed.ciphertext)
        .bind(sealed.iv.to_vec())
        .bind(sealed.wrapped_dek)
        .bind(i64::from(sealed.kek_version))
        .bind(sealed.aad_hash)
        .bind(&secret.masked_value)
        .bind(is_shared)
        .bind(actor)
        .bind(actor)
        .bind(now)
        .bind(now)
        .bind(secret.provider.clone())
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(match violated_constraint(&e) {
                Some("uq_secrets_workspace_secret_name") => StoreError::AlreadyExists(format!(
                    "secret '{secret_name}' already exists in workspace '{workspace}'"
                )),
                _ => db_err(e),
            });
        }
        let rec = rec.clone().secret_id(&secret_id);
        audit::append(&mut tx, self.dialect, &rec).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(secret)
    }

    /// Read the sealed row of a secret.
    pub(crate) async fn sealed_row(&self, secret_id: &str) -> Result<Option<SealedRow>> {
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

    pub(super) async fn value_inner(
        &self,
        secret_id: &str,
        rec: &mut AuditRecord,
    ) -> Result<SecretValue> {
        validate::uuid("secret_id", secret_id)?;
        let row = self
            .sealed_row(secret_id)
            .await?
            .ok_or_else(|| not_found_secret(secret_id))?;
        *rec = rec
            .clone()
            .secret(&row.secret_id, &row.secret_name)
            .workspace(&row.workspace);
        if row.is_revoked() {
            return Err(revoked(&row.secret_name, &row.workspace));
        }
        let actor = rec.principal.clone().unwrap_or_default();
        self.check_decrypt_limit(&actor, &row.workspace, 1)?;
        let value = self.open_row(&row)?;
        rec.detail = Some(format!("kek_version={}", row.kek_version));
        self.append_audit(rec).await?;
        Ok(value)
    }

    pub(super) async fn update_inner(
        &self,
        secret_id: &str,
        value: &SecretValue,
        actor: &str,
        rec: &mut AuditRecord,
    ) -> Result<Secret> {
        validate::uuid("secret_id", secret_id)?;
        let mut tx = self.begin_write().await?;
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "SELECT workspace, secret_name, state FROM secrets WHERE secret_id = ?"
            }
            _ => "SELECT workspace, secret_name, state FROM secrets WHERE secret_id = ? FOR UPDATE",
        };
        let row = sqlx::query(self.dialect.q(sql))
            .bind(secret_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found_secret(secret_id))?;
        let (ws, name, state) = name_state(&row)?;
        *rec = rec.clone().secret(secret_id, &name).workspace(&ws);
        if state == SecretState::Revoked {
            return Err(revoked(&name, &ws));
        }
        // A new DEK and IV for every value written, including updates.
        let sealed = self.seal(&ws, secret_id, &name, value)?;
        let now = now_ms();
        sqlx::query(self.dialect.q(
            "UPDATE secrets SET ciphertext = ?, iv = ?, wrapped_dek = ?, kek_version = ?, \
             aad_hash = ?, masked_value = ?, last_updated_by = ?, last_updated_at = ? \
             WHERE secret_id = ? AND state = 'ACTIVE'",
        ))
        .bind(sealed.ciphertext)
        .bind(sealed.iv.to_vec())
        .bind(sealed.wrapped_dek)
        .bind(i64::from(sealed.kek_version))
        .bind(sealed.aad_hash)
        .bind(value.mask())
        .bind(actor)
        .bind(now)
        .bind(secret_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)?;
        self.get_secret(secret_id).await
    }

    pub(super) async fn revoke_inner(
        &self,
        secret_id: &str,
        actor: &str,
        rec: &mut AuditRecord,
    ) -> Result<Secret> {
        validate::uuid("secret_id", secret_id)?;
        let current = self.get_secret(secret_id).await?;
        *rec = rec
            .clone()
            .secret(secret_id, &current.secret_name)
            .workspace(&current.workspace);
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        // Crypto-shred (docs/design.md §6, §10 rule 11): the wrapped DEK is replaced
        // by random bytes of the same length in the revoking transaction, so
        // no KEK, passphrase or database backup taken from now on can open
        // the value again. Revocation is one-way, so nothing is lost.
        let done = sqlx::query(self.dialect.q(
            "UPDATE secrets SET state = 'REVOKED', revoked_by = ?, revoked_at = ?, \
             last_updated_by = ?, last_updated_at = ?, wrapped_dek = ? \
             WHERE secret_id = ? AND state = 'ACTIVE'",
        ))
        .bind(actor)
        .bind(now)
        .bind(actor)
        .bind(now)
        .bind(shredded_dek()?)
        .bind(secret_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "secret '{}' in workspace '{}' is already revoked",
                current.secret_name, current.workspace
            )));
        }
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)?;
        self.get_secret(secret_id).await
    }

    pub(super) async fn delete_inner(&self, secret_id: &str, rec: &mut AuditRecord) -> Result<()> {
        validate::uuid("secret_id", secret_id)?;
        let current = self.get_secret(secret_id).await?;
        *rec = rec
            .clone()
            .secret(secret_id, &current.secret_name)
            .workspace(&current.workspace);
        let mut tx = self.begin_write().await?;
        let bindings: i64 = sqlx::query(
            self.dialect
                .q("SELECT COUNT(*) AS n FROM secrets_bindings WHERE secret_id = ?"),
        )
        .bind(secret_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?
        .try_get("n")
        .map_err(db_err)?;
        let done = sqlx::query(self.dialect.q("DELETE FROM secrets WHERE secret_id = ?"))
            .bind(secret_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found_secret(secret_id));
        }
        rec.detail = Some(format!("bindings_removed={bindings}"));
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)
    }

    pub(super) async fn bind_inner(
        &self,
        new: &NewBinding<'_>,
        actor: &str,
        rec: &mut AuditRecord,
    ) -> Result<SecretBinding> {
        let NewBinding {
            secret_id,
            resource_type,
            resource_id,
            binding_name,
            value_field,
            service_accounts,
        } = *new;
        validate::uuid("secret_id", secret_id)?;
        validate::resource_type(resource_type)?;
        validate::resource_id(resource_id)?;
        validate::binding_name(binding_name)?;
        if let Some(f) = value_field {
            validate::value_field(f)?;
        }
        validate::service_accounts(service_accounts)?;
        let mut tx = self.begin_write().await?;
        // Lock the secret row: the private-secret rule below reads other
        // bindings, and two concurrent binds must not both pass it. The
        // sealed columns come along for the value_field check.
        let sql = match self.dialect {
            Dialect::Sqlite => concat!(
                "SELECT ",
                sealed_cols!(),
                ", CASE WHEN is_shared THEN 1 ELSE 0 END AS is_shared FROM secrets WHERE secret_id = ?"
            ),
            _ => concat!(
                "SELECT ",
                sealed_cols!(),
                ", CASE WHEN is_shared THEN 1 ELSE 0 END AS is_shared FROM secrets WHERE secret_id = ? FOR UPDATE"
            ),
        };
        let row = sqlx::query(self.dialect.q(sql))
            .bind(secret_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found_secret(secret_id))?;
        let sealed = SealedRow::from_row(&row)?;
        let (ws, name) = (sealed.workspace.clone(), sealed.secret_name.clone());
        let shared: i64 = row.try_get("is_shared").map_err(db_err)?;
        *rec = rec.clone().secret(secret_id, &name).workspace(&ws);
        if sealed.is_revoked() {
            return Err(StoreError::Conflict(format!(
                "secret '{name}' in workspace '{ws}' is revoked and cannot be bound"
            )));
        }
        if let Some(f) = value_field {
            // The field must exist now; reads check again (an update may
            // drop it). Only the keys are looked at; the value is wiped
            // when it goes out of scope here.
            self.open_row(&sealed)?.field(f).map_err(|e| {
                StoreError::InvalidParameter(format!("secret '{name}' in workspace '{ws}': {e}"))
            })?;
        }
        // An MLFLOW_GATEWAY link records where `mlflow push` sent the
        // value; it is not a second consumer, on either side of the rule.
        let gateway = crate::model::MLFLOW_GATEWAY_RESOURCE_TYPE;
        if shared == 0 && resource_type != gateway {
            let other = sqlx::query(self.dialect.q(
                "SELECT resource_type, resource_id FROM secrets_bindings \
                 WHERE secret_id = ? AND NOT (resource_type = ? AND resource_id = ?) \
                 AND resource_type <> ?",
            ))
            .bind(secret_id)
            .bind(resource_type)
            .bind(resource_id)
            .bind(gateway)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            if let Some(o) = other {
                let t: String = o.try_get("resource_type").map_err(db_err)?;
                let i: String = o.try_get("resource_id").map_err(db_err)?;
                return Err(StoreError::Conflict(format!(
                    "secret '{name}' in workspace '{ws}' is private and already bound to {t}/{i}; \
                     make it shared to bind it to more than one resource"
                )));
            }
        }
        let binding = SecretBinding {
            binding_id: uuid::Uuid::new_v4().to_string(),
            secret_id: secret_id.to_string(),
            workspace: ws.clone(),
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            binding_name: binding_name.to_string(),
            created_by: Some(actor.to_string()),
            created_at: now_ms(),
            value_field: value_field.map(str::to_string),
            service_accounts: service_accounts.to_vec(),
        };
        let inserted = sqlx::query(self.dialect.q(
            "INSERT INTO secrets_bindings (binding_id, secret_id, workspace, resource_type, \
             resource_id, binding_name, created_by, created_at, value_field, service_accounts) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&binding.binding_id)
        .bind(&binding.secret_id)
        .bind(&binding.workspace)
        .bind(&binding.resource_type)
        .bind(&binding.resource_id)
        .bind(&binding.binding_name)
        .bind(actor)
        .bind(binding.created_at)
        .bind(binding.value_field.clone())
        .bind(join_service_accounts(&binding.service_accounts))
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(match violated_constraint(&e) {
                Some("unique_binding_per_resource") => StoreError::AlreadyExists(format!(
                    "binding '{binding_name}' already exists for {resource_type}/{resource_id} in workspace '{ws}'"
                )),
                Some("fk_secrets_bindings_secret_id") => not_found_secret(secret_id),
                _ => db_err(e),
            });
        }
        *rec = rec
            .clone()
            .resource(resource_type, resource_id)
            .detail(binding_detail(&binding));
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(binding)
    }

    pub(super) async fn unbind_inner(&self, binding_id: &str, rec: &mut AuditRecord) -> Result<()> {
        validate::uuid("binding_id", binding_id)?;
        let b = self.get_binding(binding_id).await?;
        *rec = rec
            .clone()
            .secret_id(&b.secret_id)
            .workspace(&b.workspace)
            .resource(&b.resource_type, &b.resource_id)
            .detail(binding_detail(&b));
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            self.dialect
                .q("DELETE FROM secrets_bindings WHERE binding_id = ?"),
        )
        .bind(binding_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found_binding(binding_id));
        }
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)
    }

    /// Every value bound to a resource, by binding name, each with the
    /// stored secret and version it came from: `get_all_secrets_for_resource`
    /// plus what the webhook's `injected` annotation records, from the same
    /// single read. Audited (one `READ_RESOURCE_VALUES` row, success or not),
    /// rate limited, and refused as a whole if any bound secret is revoked.
    pub async fn get_all_bound_values(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        actor: &str,
    ) -> Result<BTreeMap<String, BoundValue>> {
        let all = |m: &[BoundMeta<'_>]| {
            Ok::<_, std::convert::Infallible>(
                m.iter().map(|b| b.binding_name.to_string()).collect(),
            )
        };
        match self
            .get_chosen_bound_values(workspace, resource_type, resource_id, actor, all)
            .await?
        {
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
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        actor: &str,
        choose: impl FnOnce(&[BoundMeta<'_>]) -> std::result::Result<BTreeSet<String>, E>,
    ) -> Result<std::result::Result<BTreeMap<String, BoundValue>, E>> {
        let mut rec = AuditRecord::new(audit::AuditAction::ReadResourceValues, actor)
            .workspace(workspace)
            .resource(resource_type, resource_id);
        let r = async {
            let rows = self
                .resource_rows(workspace, resource_type, resource_id, None)
                .await?;
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
            self.append_audit(&rec).await?;
            Ok(Ok(map))
        }
        .await;
        self.audit_failure(rec, r).await
    }

    /// Bound rows of a resource (see `bound_select!`).
    pub(super) async fn resource_rows(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        binding_name: Option<&str>,
    ) -> Result<Vec<BoundRow>> {
        validate::workspace(workspace)?;
        validate::resource_type(resource_type)?;
        validate::resource_id(resource_id)?;
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
    pub(super) fn open_bound(
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
        rec.detail = Some(detail.join(","));
        Ok(out)
    }
}

/// One bound row as read for decryption (see `bound_select!`).
pub(super) struct BoundRow {
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

/// What a reader learns of a bound row before it is decrypted: enough to
/// decide which bindings a pod consents to and may receive.
#[derive(Debug, Clone, Copy)]
pub struct BoundMeta<'a> {
    pub binding_name: &'a str,
    pub service_accounts: &'a [String],
}

/// The audit detail of a bind or unbind: ids and names, never a value.
pub(super) fn binding_detail(b: &SecretBinding) -> String {
    let mut d = format!(
        "binding_id={} binding_name={}",
        b.binding_id, b.binding_name
    );
    if let Some(f) = &b.value_field {
        d.push_str(&format!(" value_field={f}"));
    }
    if !b.service_accounts.is_empty() {
        d.push_str(&format!(
            " service_accounts={}",
            b.service_accounts.join(",")
        ));
    }
    d
}

/// Random bytes the length of a wrapped DEK, to overwrite a revoked row's
/// `wrapped_dek` with. Same length, so the row still passes the schema and
/// every reader's shape checks, but it no longer opens under any KEK.
pub(super) fn shredded_dek() -> Result<Vec<u8>> {
    let mut b = vec![0u8; crypto::WRAPPED_DEK_LEN];
    getrandom::fill(&mut b).map_err(|e| {
        StoreError::Unavailable(format!("the OS random number generator failed: {e}"))
    })?;
    Ok(b)
}

fn name_state(row: &AnyRow) -> Result<(String, String, SecretState)> {
    let ws: String = row.try_get("workspace").map_err(db_err)?;
    let name: String = row.try_get("secret_name").map_err(db_err)?;
    let state: String = row.try_get("state").map_err(db_err)?;
    let state = state
        .parse::<SecretState>()
        .map_err(|e| StoreError::Database(format!("secrets.state: {e}")))?;
    Ok((ws, name, state))
}

pub(crate) fn not_found_secret(secret_id: &str) -> StoreError {
    StoreError::NotFound(format!("secret with id '{secret_id}' does not exist"))
}

pub(super) fn not_found_binding(binding_id: &str) -> StoreError {
    StoreError::NotFound(format!("binding with id '{binding_id}' does not exist"))
}

fn revoked(name: &str, ws: &str) -> StoreError {
    StoreError::Conflict(format!(
        "secret '{name}' in workspace '{ws}' is revoked; its value can no longer be read or changed"
    ))
}
