//! Read-only queries of the web UI (`crate::ui`, docs/design.md §12) that
//! the [`SecretsStore`](super::SecretsStore) trait has no operation for: a
//! name search with a provider filter and "used by" counts, the last
//! injection of each resource, a secret's history, and the audit log with
//! the UI's filters, newest first.
//!
//! Every query is one statement with bind parameters (docs/design.md §10
//! rule 5), bounded by a page size, so a page never loads all rows. None
//! reads a crypto column except `kek_version`, which the `/secrets` and
//! `/keys` pages show as metadata (which key wraps a row, never the key).

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::{
    Arg, SqlStore, audit_cols, audit_entry_from_row, db_err, fetch_listing, push_workspaces_in,
    secret_from_row,
};
use super::{Result, validate};
use crate::model::{AuditEntry, Page, Secret, SecretFilter, SecretState};

/// The filters of the `/secrets` page.
#[derive(Debug, Clone, Default)]
pub struct SecretSearch {
    pub workspace: Option<String>,
    /// Only these workspaces (the session's scope); `None`: any.
    pub workspaces: Option<Vec<String>>,
    /// Case-insensitive substring of the secret's name.
    pub name_contains: Option<String>,
    pub is_shared: Option<bool>,
    pub state: Option<SecretState>,
    pub provider: Option<String>,
    pub page_token: Option<String>,
    pub max_results: Option<u32>,
}

impl From<&SecretFilter> for SecretSearch {
    /// The API's `list` filters.
    fn from(f: &SecretFilter) -> Self {
        Self {
            workspace: f.workspace.clone(),
            workspaces: f.workspaces.clone(),
            is_shared: f.is_shared,
            state: f.state,
            page_token: f.page_token.clone(),
            max_results: f.max_results,
            ..Default::default()
        }
    }
}

/// One row of the `/secrets` page.
#[derive(Debug, Clone)]
pub struct ListedSecret {
    pub secret: Secret,
    /// The KEK version that wraps the row's DEK.
    pub kek_version: u32,
    /// How many bindings use the secret.
    pub used_by: u64,
}

/// The filters of the `/audit` page. Rows come newest first; `before_seq`
/// pages back in time.
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    /// Only rows of these workspaces; `None`: every row.
    pub workspaces: Option<Vec<String>>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub secret_id: Option<String>,
    /// `TYPE/ID`, as the audit log records a resource.
    pub resource: Option<String>,
    pub outcome: Option<String>,
    /// Epoch milliseconds, inclusive.
    pub since_ms: Option<i64>,
    /// Epoch milliseconds, exclusive.
    pub until_ms: Option<i64>,
    /// Only these actions (a secret's history leaves out metadata reads).
    pub actions: Option<&'static [&'static str]>,
    pub before_seq: Option<i64>,
    pub max_results: Option<u32>,
}

/// `LIKE` pattern of a substring search, with `!` escaping the wildcards
/// (`!` rather than a backslash, which MySQL treats as an escape in string
/// literals too).
pub(crate) fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A page of `limit` rows out of `limit + 1` fetched, and the key of the
/// next page when there is one more row.
fn cut<T, K>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> (Vec<T>, Option<K>) {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        let next = items.last().map(key);
        (items, next)
    } else {
        (items, None)
    }
}

impl SqlStore {
    /// The `/secrets` page and the API's `list_secrets`: secrets in name
    /// order, with their KEK version and binding count, one page at a time
    /// (keyset paging on (workspace, secret_name)).
    pub async fn search_secrets(&self, f: &SecretSearch) -> Result<Page<ListedSecret>> {
        let extra = ", kek_version, (SELECT COUNT(*) FROM secrets_bindings b \
                     WHERE b.secret_id = secrets.secret_id) AS used_by";
        let listed = |r: &AnyRow| {
            let kek: i64 = r.try_get("kek_version").map_err(db_err)?;
            let used: i64 = r.try_get("used_by").map_err(db_err)?;
            Ok(ListedSecret {
                secret: secret_from_row(r)?,
                kek_version: kek as u32,
                used_by: used.max(0) as u64,
            })
        };
        self.secrets_listing(f, extra, listed, |l| &l.secret).await
    }

    /// How many bindings use a secret (the revoke and delete warnings).
    pub async fn count_bindings_of(&self, secret_id: &str) -> Result<u64> {
        validate::uuid("secret_id", secret_id)?;
        let n: i64 = sqlx::query(
            self.dialect
                .q("SELECT COUNT(*) AS n FROM secrets_bindings WHERE secret_id = ?"),
        )
        .bind(secret_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?
        .try_get("n")
        .map_err(db_err)?;
        Ok(n.max(0) as u64)
    }

    /// When each resource (`TYPE/ID`) of `workspace` last had its values
    /// injected (a successful `READ_RESOURCE_VALUES`: the webhook, `run`,
    /// `resolve`), in epoch milliseconds. One grouped query per 100
    /// resources.
    pub async fn last_injections(
        &self,
        workspace: &str,
        resources: &[String],
    ) -> Result<HashMap<String, i64>> {
        let mut out = HashMap::new();
        for chunk in resources.chunks(100) {
            let mut sql = String::from(
                "SELECT resource, MAX(occurred_at) AS at FROM secrets_audit_log \
                 WHERE action = 'READ_RESOURCE_VALUES' AND outcome = 'SUCCESS' AND workspace = ? \
                 AND resource IN (",
            );
            sql.push_str(&vec!["?"; chunk.len()].join(", "));
            sql.push_str(") GROUP BY resource");
            let mut q = sqlx::query(self.dialect.q_composed(sql)).bind(workspace.to_string());
            for r in chunk {
                q = q.bind(r.clone());
            }
            for row in q.fetch_all(&self.pool).await.map_err(db_err)? {
                let res: String = row.try_get("resource").map_err(db_err)?;
                let at: Option<i64> = row.try_get("at").map_err(db_err)?;
                if let Some(at) = at {
                    out.insert(res, at);
                }
            }
        }
        Ok(out)
    }

    /// Audit rows matching `f`, newest first; the second item is the
    /// `before_seq` of the next (older) page, if there is one.
    pub async fn search_audit(&self, f: &AuditSearch) -> Result<(Vec<AuditEntry>, Option<i64>)> {
        let limit = validate::page_size(f.max_results)?;
        let mut sql = String::from(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM secrets_audit_log WHERE seq < ?"
        ));
        let mut args = vec![Arg::Int(f.before_seq.unwrap_or(i64::MAX))];
        let text: [(&str, &Option<String>); 5] = [
            (" AND principal = ?", &f.principal),
            (" AND action = ?", &f.action),
            (" AND secret_id = ?", &f.secret_id),
            (" AND resource = ?", &f.resource),
            (" AND outcome = ?", &f.outcome),
        ];
        for (clause, value) in text {
            if let Some(v) = value {
                sql.push_str(clause);
                args.push(Arg::Text(v.clone()));
            }
        }
        if let Some(actions) = f.actions {
            sql.push_str(" AND action IN (");
            sql.push_str(&vec!["?"; actions.len()].join(", "));
            sql.push(')');
            args.extend(actions.iter().map(|a| Arg::Text(a.to_string())));
        }
        push_workspaces_in(&mut sql, &mut args, f.workspaces.as_deref())?;
        if let Some(t) = f.since_ms {
            sql.push_str(" AND occurred_at >= ?");
            args.push(Arg::Int(t));
        }
        if let Some(t) = f.until_ms {
            sql.push_str(" AND occurred_at < ?");
            args.push(Arg::Int(t));
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        args.push(Arg::Int(i64::from(limit) + 1));
        let items =
            fetch_listing(&self.pool, self.dialect, sql, args, audit_entry_from_row).await?;
        Ok(cut(items, limit, |e| e.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_pattern("Open_AI%"), "%open!_ai!%%");
        assert_eq!(like_pattern("a!b"), "%a!!b%");
    }
}
