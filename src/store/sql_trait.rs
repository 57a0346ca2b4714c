//! [`SecretsStore`] for [`SqlStore`]: validation, the listings, and the
//! audit wrapper around each operation of `sql_ops`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::audit::{AuditAction, AuditRecord};
use super::sql::{SqlStore, db_err, decode_token, encode_token};
use super::sql_ops::{not_found_binding, not_found_secret};
use super::sql_rows::{binding_cols, binding_from_row, secret_cols};
use super::ui_queries::SecretSearch;
use super::validate;
use super::{AuditFilter, ResolvedResource, Result, SecretsStore, StoreError};
use crate::model::{
    AuditEntry, BindingFilter, NewBinding, NewSecret, Page, Secret, SecretBinding, SecretFilter,
};
use crate::value::SecretValue;

#[async_trait]
impl SecretsStore for SqlStore {
    async fn create_secret_with(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret> {
        let mut detail = format!(
            "secret_name={} is_shared={}",
            new.secret_name, new.is_shared
        );
        if let Some(p) = new.provider {
            detail.push_str(&format!(" provider={p}"));
        }
        let mut rec = AuditRecord::new(AuditAction::Create, actor)
            .workspace(new.workspace)
            .detail(detail);
        rec.secret_name = Some(new.secret_name.to_string());
        let r = self.create_inner(new, value, actor, &rec).await;
        self.audit_failure(rec, r).await
    }

    async fn get_secret(&self, secret_id: &str) -> Result<Secret> {
        validate::uuid("secret_id", secret_id)?;
        self.fetch_secret(
            concat!(
                "SELECT ",
                secret_cols!(),
                " FROM secrets WHERE secret_id = ?"
            ),
            &[secret_id],
        )
        .await?
        .ok_or_else(|| not_found_secret(secret_id))
    }

    async fn get_secret_by_name(&self, workspace: &str, secret_name: &str) -> Result<Secret> {
        validate::workspace(workspace)?;
        validate::secret_name(secret_name)?;
        self.fetch_secret(
            concat!(
                "SELECT ",
                secret_cols!(),
                " FROM secrets WHERE workspace = ? AND secret_name = ?"
            ),
            &[workspace, secret_name],
        )
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "secret '{secret_name}' does not exist in workspace '{workspace}'"
            ))
        })
    }

    async fn get_secret_value(&self, secret_id: &str, actor: &str) -> Result<SecretValue> {
        let mut rec = AuditRecord::new(AuditAction::ReadValue, actor).secret_id(secret_id);
        let r = self.value_inner(secret_id, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn list_secrets(&self, f: &SecretFilter) -> Result<Page<Secret>> {
        // One listing query for the API and the UI (`ui_queries`).
        let page = self.search_secrets(&SecretSearch::from(f)).await?;
        Ok(Page {
            items: page.items.into_iter().map(|l| l.secret).collect(),
            next_page_token: page.next_page_token,
        })
    }

    async fn update_secret(
        &self,
        secret_id: &str,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret> {
        let mut rec = AuditRecord::new(AuditAction::Update, actor).secret_id(secret_id);
        let r = self.update_inner(secret_id, value, actor, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn revoke_secret(&self, secret_id: &str, actor: &str) -> Result<Secret> {
        let mut rec = AuditRecord::new(AuditAction::Revoke, actor).secret_id(secret_id);
        let r = self.revoke_inner(secret_id, actor, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn delete_secret(&self, secret_id: &str, actor: &str) -> Result<()> {
        let mut rec = AuditRecord::new(AuditAction::Delete, actor).secret_id(secret_id);
        let r = self.delete_inner(secret_id, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn bind_secret_with(&self, new: &NewBinding<'_>, actor: &str) -> Result<SecretBinding> {
        let mut rec = AuditRecord::new(AuditAction::Bind, actor).secret_id(new.secret_id);
        let r = self.bind_inner(new, actor, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn get_binding(&self, binding_id: &str) -> Result<SecretBinding> {
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

    async fn list_bindings(&self, f: &BindingFilter) -> Result<Page<SecretBinding>> {
        let limit = validate::page_size(f.max_results)?;
        let mut sql = String::from(concat!(
            "SELECT ",
            binding_cols!(),
            " FROM secrets_bindings WHERE 1 = 1"
        ));
        let mut args: Vec<String> = Vec::new();
        let filters: [(&str, &Option<String>); 4] = [
            (" AND workspace = ?", &f.workspace),
            (" AND resource_type = ?", &f.resource_type),
            (" AND resource_id = ?", &f.resource_id),
            (" AND secret_id = ?", &f.secret_id),
        ];
        for (clause, value) in filters {
            if let Some(v) = value {
                sql.push_str(clause);
                args.push(v.clone());
            }
        }
        push_workspaces_in(&mut sql, &mut args, f.workspaces.as_deref())?;
        if let Some(token) = &f.page_token {
            let k = decode_token(token, 4)?;
            sql.push_str(
                " AND (workspace, resource_type, resource_id, binding_name) > (?, ?, ?, ?)",
            );
            args.extend(k);
        }
        sql.push_str(" ORDER BY workspace, resource_type, resource_id, binding_name LIMIT ?");
        let mut q = sqlx::query(self.dialect.q_composed(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut items = rows
            .iter()
            .map(binding_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|b| {
                encode_token(&[
                    &b.workspace,
                    &b.resource_type,
                    &b.resource_id,
                    &b.binding_name,
                ])
            })
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn unbind_secret(&self, binding_id: &str, actor: &str) -> Result<()> {
        let mut rec = AuditRecord::new(AuditAction::Unbind, actor);
        let r = self.unbind_inner(binding_id, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn get_secret_for_resource(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        binding_name: &str,
        actor: &str,
    ) -> Result<SecretValue> {
        let mut rec = AuditRecord::new(AuditAction::ReadValue, actor)
            .workspace(workspace)
            .resource(resource_type, resource_id);
        let r = async {
            let rows = self
                .resource_rows(workspace, resource_type, resource_id, Some(binding_name))
                .await?;
            if rows.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "no binding '{binding_name}' for {resource_type}/{resource_id} in workspace '{workspace}'"
                )));
            }
            let (id, name) = (
                rows[0].sealed.secret_id.clone(),
                rows[0].sealed.secret_name.clone(),
            );
            rec = rec.clone().secret(&id, &name);
            let mut map = self.open_bound(rows, &mut rec)?;
            self.append_audit(&rec).await?;
            Ok(map.remove(binding_name).expect("bound row").value)
        }
        .await;
        self.audit_failure(rec, r).await
    }

    async fn get_all_secrets_for_resource(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        actor: &str,
    ) -> Result<BTreeMap<String, SecretValue>> {
        let all = self
            .get_all_bound_values(workspace, resource_type, resource_id, actor)
            .await?;
        Ok(all.into_iter().map(|(k, b)| (k, b.value)).collect())
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.audit_entries(f).await
    }

    async fn resolve_resource(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        actor: &str,
    ) -> Result<ResolvedResource> {
        let bound = self
            .get_all_bound_values(workspace, resource_type, resource_id, actor)
            .await?;
        if bound.is_empty() {
            return Err(StoreError::NotFound(format!(
                "no binding for {resource_type}/{resource_id} in workspace '{workspace}'"
            )));
        }
        Ok(ResolvedResource::from_bound(bound))
    }
}

/// `AND workspace IN (?, ...)` for a scope filter: one placeholder per
/// (validated) name, bound as arguments. An empty set matches nothing.
pub(super) fn push_workspaces_in(
    sql: &mut String,
    args: &mut Vec<String>,
    workspaces: Option<&[String]>,
) -> Result<()> {
    let Some(set) = workspaces else {
        return Ok(());
    };
    if set.is_empty() {
        sql.push_str(" AND 1 = 0");
        return Ok(());
    }
    for w in set {
        validate::workspace(w)?;
    }
    sql.push_str(" AND workspace IN (");
    sql.push_str(&vec!["?"; set.len()].join(", "));
    sql.push(')');
    args.extend(set.iter().cloned());
    Ok(())
}
