//! Bindings: bind (with the private-secret rule), unbind, and the binding
//! reads and listing.

use sqlx::{Any, Row, Transaction};

use super::rows::{
    Arg, SealedRow, binding_cols, binding_from_row, decode_token, encode_token, fetch_listing,
    join_service_accounts, page_of, push_workspaces_in, sealed_cols,
};
use super::secrets::not_found_secret;
use super::{Dialect, SqlStore, db_err};
use crate::model::{BindingFilter, NewBinding, Page, ResourceRef, SecretBinding, now_ms};
use crate::store::audit::{self, AuditAction, AuditRecord};
use crate::store::{Result, StoreError, validate};

impl SqlStore {
    pub(super) async fn bind(&self, new: &NewBinding<'_>, actor: &str) -> Result<SecretBinding> {
        let mut rec = bind_record(new, actor);
        let r = async {
            check_binding(new)?;
            let mut tx = self.begin_write().await?;
            let binding = self.bind_in(&mut tx, new, actor, &mut rec).await?;
            audit::append(&mut tx, self.dialect, &rec).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(binding)
        }
        .await;
        self.audit_failure(rec, r).await
    }

    /// The body of a bind inside `tx`, for [`SqlStore::bind`] and the
    /// create-and-bind (`SqlStore::create_and_bind`): the secret row
    /// locked, the revoked, `value_field` and private-secret rules, the
    /// INSERT with its constraint errors. `new` must have passed
    /// [`check_binding`]. Fills `rec` (the `BIND` row, see [`bind_record`])
    /// but leaves appending it to the caller, which appends its audit rows
    /// last (the chain head's lock order, `audit::append`).
    pub(super) async fn bind_in(
        &self,
        tx: &mut Transaction<'static, Any>,
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
        // Lock the secret row: the private-secret rule below reads other
        // bindings, and two concurrent binds must not both pass it. The
        // sealed columns come along for the value_field check.
        let row = sqlx::query(self.dialect.q_locking(concat!(
            "SELECT ",
            sealed_cols!(),
            ", CASE WHEN is_shared THEN 1 ELSE 0 END AS is_shared FROM secrets WHERE secret_id = ?"
        )))
        .bind(secret_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| not_found_secret(secret_id))?;
        let sealed = SealedRow::from_row(&row)?;
        let (ws, name) = (sealed.workspace.clone(), sealed.secret_name.clone());
        let shared: i64 = row.try_get("is_shared").map_err(db_err)?;
        rec.set_secret(secret_id, &name).set_workspace(&ws);
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
            .fetch_optional(&mut **tx)
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
        .execute(&mut **tx)
        .await;
        if let Err(e) = inserted {
            return Err(match Dialect::violated_constraint(&e) {
                Some("unique_binding_per_resource") => StoreError::AlreadyExists(format!(
                    "binding '{binding_name}' already exists for {resource_type}/{resource_id} in workspace '{ws}'"
                )),
                Some("fk_secrets_bindings_secret_id") => not_found_secret(secret_id),
                _ => db_err(e),
            });
        }
        rec.set_resource(resource_type, resource_id)
            .set_detail(binding_detail(&binding));
        Ok(binding)
    }

    pub(super) async fn binding_by_id(&self, binding_id: &str) -> Result<SecretBinding> {
        validate::uuid("binding_id", binding_id)?;
        let row = sqlx::query(self.dialect.q(concat!(
            "SELECT ",
            binding_cols!(),
            " FROM secrets_bindings WHERE binding_id = ?"
        )))
        .bind(binding_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or_else(|| not_found_binding(binding_id))?;
        binding_from_row(&row)
    }

    /// The binding of `binding_name` on one resource, if any: the key
    /// `unique_binding_per_resource` makes unique.
    pub(super) async fn binding_by_key(
        &self,
        res: ResourceRef<'_>,
        binding_name: &str,
    ) -> Result<Option<SecretBinding>> {
        validate::resource(res)?;
        validate::binding_name(binding_name)?;
        let row = sqlx::query(self.dialect.q(concat!(
            "SELECT ",
            binding_cols!(),
            " FROM secrets_bindings WHERE workspace = ? AND resource_type = ? \
             AND resource_id = ? AND binding_name = ?"
        )))
        .bind(res.workspace)
        .bind(res.resource_type)
        .bind(res.resource_id)
        .bind(binding_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(binding_from_row).transpose()
    }

    pub(super) async fn bindings_page(&self, f: &BindingFilter) -> Result<Page<SecretBinding>> {
        validate::binding_filter(f)?;
        let limit = validate::page_size(f.max_results)?;
        let mut sql = String::from(concat!(
            "SELECT ",
            binding_cols!(),
            " FROM secrets_bindings WHERE 1 = 1"
        ));
        let mut args = Vec::new();
        let filters: [(&str, &Option<String>); 4] = [
            (" AND workspace = ?", &f.workspace),
            (" AND resource_type = ?", &f.resource_type),
            (" AND resource_id = ?", &f.resource_id),
            (" AND secret_id = ?", &f.secret_id),
        ];
        for (clause, value) in filters {
            if let Some(v) = value {
                sql.push_str(clause);
                args.push(Arg::Text(v.clone()));
            }
        }
        push_workspaces_in(&mut sql, &mut args, f.workspaces.as_deref())?;
        if let Some(token) = &f.page_token {
            let k = decode_token(token, 4)?;
            sql.push_str(
                " AND (workspace, resource_type, resource_id, binding_name) > (?, ?, ?, ?)",
            );
            args.extend(k.into_iter().map(Arg::Text));
        }
        sql.push_str(" ORDER BY workspace, resource_type, resource_id, binding_name LIMIT ?");
        args.push(Arg::Int(i64::from(limit) + 1));
        let items = fetch_listing(&self.pool, self.dialect, sql, args, binding_from_row).await?;
        Ok(page_of(items, limit, |b| {
            encode_token(&[
                &b.workspace,
                &b.resource_type,
                &b.resource_id,
                &b.binding_name,
            ])
        }))
    }

    pub(super) async fn unbind(&self, binding_id: &str, actor: &str) -> Result<()> {
        let mut rec = AuditRecord::new(AuditAction::Unbind, actor);
        let r = async {
            let b = self.binding_by_id(binding_id).await?;
            rec.set_secret_id(&b.secret_id)
                .set_workspace(&b.workspace)
                .set_resource(&b.resource_type, &b.resource_id)
                .set_detail(binding_detail(&b));
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
            audit::append(&mut tx, self.dialect, &rec).await?;
            tx.commit().await.map_err(db_err)
        }
        .await;
        self.audit_failure(rec, r).await
    }
}

/// The checks of a new binding's inputs, before anything is written.
pub(super) fn check_binding(new: &NewBinding<'_>) -> Result<()> {
    validate::uuid("secret_id", new.secret_id)?;
    validate::resource_type(new.resource_type)?;
    validate::resource_id(new.resource_id)?;
    validate::binding_name(new.binding_name)?;
    if let Some(f) = new.value_field {
        validate::value_field(f)?;
    }
    validate::service_accounts(new.service_accounts)
}

/// The `BIND` audit record of `new`, before [`SqlStore::bind_in`] fills in
/// the secret's name, workspace and the resource.
pub(super) fn bind_record(new: &NewBinding<'_>, actor: &str) -> AuditRecord {
    AuditRecord::new(AuditAction::Bind, actor).secret_id(new.secret_id)
}

/// The audit detail of a bind or unbind: ids and names, never a value.
fn binding_detail(b: &SecretBinding) -> String {
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

fn not_found_binding(binding_id: &str) -> StoreError {
    StoreError::NotFound(format!("binding with id '{binding_id}' does not exist"))
}
