//! Secrets: create (alone, in batches, or with a binding), the metadata
//! reads and listing, update, revoke and delete. Each change runs in one
//! transaction that ends with its audit row, so a change and its audit row
//! commit together or not at all; a failure is audited after the rollback.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::bindings::{bind_record, check_binding};
use super::rows::{
    Arg, decode_token, encode_token, fetch_listing, kek_version_col, page_of, push_workspaces_in,
    secret_cols, secret_from_row,
};
use super::{Dialect, SqlStore, db_err};
use crate::crypto;
use crate::model::{
    BindingSpec, NewSecret, Page, Secret, SecretBinding, SecretFilter, SecretState, now_ms,
};
use crate::store::audit::{self, AuditAction, AuditRecord};
use crate::store::ui_queries::{SecretSearch, like_pattern};
use crate::store::{Result, StoreError, validate};
use crate::value::SecretValue;

impl SqlStore {
    pub(super) async fn create(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret> {
        let rec = create_record(new, actor);
        let r = async {
            let row = self.prepare_create(new, value, actor)?;
            let mut tx = self.begin_write().await?;
            insert_secret(&mut tx, self.dialect, &row).await?;
            audit::append(&mut tx, self.dialect, &row.audit(&rec)).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(row.secret)
        }
        .await;
        self.audit_failure(rec, r).await
    }

    /// Create a secret and bind it in one transaction
    /// (`SecretsStore::create_and_bind_secret`): the create's checks and
    /// INSERT, then the bind's (`SqlStore::bind_in`) on the new row, then
    /// both audit rows, exactly as `create` and `bind` write them, last. A
    /// failure rolls back all of it and is audited as one failed `CREATE`
    /// naming the binding it was to get.
    pub(super) async fn create_and_bind(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        spec: &BindingSpec<'_>,
        actor: &str,
    ) -> Result<(Secret, SecretBinding)> {
        let rec = create_record(new, actor);
        let mut failed = rec.clone();
        failed.set_detail(format!(
            "{} bind={}/{} binding_name={}",
            rec.detail.as_deref().unwrap_or(""),
            spec.resource_type,
            spec.resource_id,
            spec.binding_name
        ));
        let r = async {
            let row = self.prepare_create(new, value, actor)?;
            let nb = spec.for_secret(&row.secret.secret_id);
            check_binding(&nb)?;
            let mut bound = bind_record(&nb, actor);
            let mut tx = self.begin_write().await?;
            insert_secret(&mut tx, self.dialect, &row).await?;
            let binding = self.bind_in(&mut tx, &nb, actor, &mut bound).await?;
            audit::append_many(&mut tx, self.dialect, &[&row.audit(&rec), &bound]).await?;
            tx.commit().await.map_err(db_err)?;
            Ok((row.secret, binding))
        }
        .await;
        self.audit_failure(failed, r).await
    }

    /// Create `items` in transactions of up to [`audit::MAX_AUDIT_BATCH`]
    /// secrets, each ending with the batch's audit rows (one per secret),
    /// for `mlflow import`: one commit per batch instead of per secret. A
    /// batch that fails as a whole (a name taken meanwhile, the database)
    /// is rolled back and retried one secret per transaction, so every
    /// secret is written whole or not at all and each failure is its own,
    /// audited. Results come back in the order of `items`.
    pub(super) async fn create_many(
        &self,
        items: &[(NewSecret<'_>, &SecretValue)],
        actor: &str,
    ) -> Vec<Result<Secret>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(audit::MAX_AUDIT_BATCH) {
            let mut rows = Vec::with_capacity(chunk.len());
            let mut results: Vec<Option<Result<Secret>>> = Vec::with_capacity(chunk.len());
            for (new, value) in chunk {
                match self.prepare_create(new, value, actor) {
                    Ok(row) => {
                        rows.push((create_record(new, actor), row));
                        results.push(None);
                    }
                    Err(e) => {
                        let failed = self.audit_failure(create_record(new, actor), Err(e));
                        results.push(Some(failed.await));
                    }
                }
            }
            if self.insert_batch(&rows).await.is_ok() {
                let mut created = rows.into_iter().map(|(_, row)| row.secret);
                for r in &mut results {
                    if r.is_none() {
                        *r = created.next().map(Ok);
                    }
                }
            } else {
                for ((new, value), r) in chunk.iter().zip(&mut results) {
                    if r.is_none() {
                        *r = Some(self.create(new, value, actor).await);
                    }
                }
            }
            out.extend(results.into_iter().flatten());
        }
        out
    }

    /// One transaction: every row of `rows`, then their audit rows.
    async fn insert_batch(&self, rows: &[(AuditRecord, NewRow)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (_, row) in rows {
            insert_secret(&mut tx, self.dialect, row).await?;
        }
        let recs: Vec<AuditRecord> = rows.iter().map(|(rec, row)| row.audit(rec)).collect();
        audit::append_many(&mut tx, self.dialect, &recs.iter().collect::<Vec<_>>()).await?;
        tx.commit().await.map_err(db_err)
    }

    /// Check a new secret and seal its value under a fresh id.
    fn prepare_create(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        actor: &str,
    ) -> Result<NewRow> {
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
            secret_id,
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
        Ok(NewRow { secret, sealed })
    }

    pub(super) async fn secret_by_id(&self, secret_id: &str) -> Result<Secret> {
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

    pub(super) async fn secret_by_name(
        &self,
        workspace: &str,
        secret_name: &str,
    ) -> Result<Secret> {
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

    /// The KEK version a secret's DEK is wrapped under: the one column of
    /// the row the status reports, read without the ciphertext.
    pub(super) async fn kek_version_of(&self, secret_id: &str) -> Result<u32> {
        validate::uuid("secret_id", secret_id)?;
        let row = sqlx::query(
            self.dialect
                .q("SELECT kek_version FROM secrets WHERE secret_id = ?"),
        )
        .bind(secret_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or_else(|| not_found_secret(secret_id))?;
        kek_version_col(&row)
    }

    async fn fetch_secret(&self, sql: &'static str, args: &[&str]) -> Result<Option<Secret>> {
        let mut q = sqlx::query(self.dialect.q(sql));
        for a in args {
            q = q.bind(a.to_string());
        }
        let row = q.fetch_optional(&self.pool).await.map_err(db_err)?;
        row.as_ref().map(secret_from_row).transpose()
    }

    pub(super) async fn secrets_page(&self, f: &SecretFilter) -> Result<Page<Secret>> {
        self.secrets_listing(&SecretSearch::from(f), "", secret_from_row, |s| s)
            .await
    }

    /// The one query of both secret listings, the API's `list_secrets` and
    /// the UI's `/secrets` search (`SqlStore::search_secrets`): the secrets
    /// matching `f` in (workspace, secret_name) order, one page at a time
    /// (keyset paging on that pair). `extra` adds columns after the
    /// secret's, which `from_row` reads; `secret` finds the secret in an
    /// item, for the next page's token.
    pub(crate) async fn secrets_listing<T>(
        &self,
        f: &SecretSearch,
        extra: &str,
        from_row: impl Fn(&AnyRow) -> Result<T>,
        secret: impl Fn(&T) -> &Secret,
    ) -> Result<Page<T>> {
        let limit = validate::page_size(f.max_results)?;
        let mut sql = format!("SELECT {}{extra} FROM secrets WHERE 1 = 1", secret_cols!());
        let mut args = Vec::new();
        if let Some(ws) = &f.workspace {
            validate::workspace(ws)?;
            sql.push_str(" AND workspace = ?");
            args.push(Arg::Text(ws.clone()));
        }
        push_workspaces_in(&mut sql, &mut args, f.workspaces.as_deref())?;
        if let Some(q) = f.name_contains.as_deref().filter(|q| !q.is_empty()) {
            if q.chars().count() > 255 {
                return Err(StoreError::InvalidParameter(
                    "search text must be at most 255 characters".into(),
                ));
            }
            sql.push_str(" AND LOWER(secret_name) LIKE ? ESCAPE '!'");
            args.push(Arg::Text(like_pattern(q)));
        }
        if let Some(state) = f.state {
            sql.push_str(" AND state = ?");
            args.push(Arg::Text(state.as_str().to_string()));
        }
        if let Some(p) = &f.provider {
            validate::provider(p)?;
            sql.push_str(" AND provider = ?");
            args.push(Arg::Text(p.clone()));
        }
        if let Some(token) = &f.page_token {
            let key = decode_token(token, 2)?;
            sql.push_str(" AND (workspace > ? OR (workspace = ? AND secret_name > ?))");
            args.extend([key[0].clone(), key[0].clone(), key[1].clone()].map(Arg::Text));
        }
        if let Some(shared) = f.is_shared {
            sql.push_str(" AND is_shared = ?");
            args.push(Arg::Flag(shared));
        }
        sql.push_str(" ORDER BY workspace, secret_name LIMIT ?");
        args.push(Arg::Int(i64::from(limit) + 1));
        let items = fetch_listing(&self.pool, self.dialect, sql, args, from_row).await?;
        Ok(page_of(items, limit, |item| {
            let s = secret(item);
            encode_token(&[&s.workspace, &s.secret_name])
        }))
    }

    pub(super) async fn update(
        &self,
        secret_id: &str,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret> {
        let mut rec = AuditRecord::new(AuditAction::Update, actor).secret_id(secret_id);
        let r = async {
            validate::uuid("secret_id", secret_id)?;
            let mut tx = self.begin_write().await?;
            let row = sqlx::query(self.dialect.q_locking(
                "SELECT workspace, secret_name, state FROM secrets WHERE secret_id = ?",
            ))
            .bind(secret_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found_secret(secret_id))?;
            let (ws, name, state) = name_state(&row)?;
            rec.set_secret(secret_id, &name).set_workspace(&ws);
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
            audit::append(&mut tx, self.dialect, &rec).await?;
            tx.commit().await.map_err(db_err)?;
            self.secret_by_id(secret_id).await
        }
        .await;
        self.audit_failure(rec, r).await
    }

    pub(super) async fn revoke(&self, secret_id: &str, actor: &str) -> Result<Secret> {
        let mut rec = AuditRecord::new(AuditAction::Revoke, actor).secret_id(secret_id);
        let r = async {
            let current = self.secret_by_id(secret_id).await?;
            rec.set_secret(secret_id, &current.secret_name)
                .set_workspace(&current.workspace);
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
            audit::append(&mut tx, self.dialect, &rec).await?;
            tx.commit().await.map_err(db_err)?;
            self.secret_by_id(secret_id).await
        }
        .await;
        self.audit_failure(rec, r).await
    }

    pub(super) async fn delete(&self, secret_id: &str, actor: &str) -> Result<()> {
        let mut rec = AuditRecord::new(AuditAction::Delete, actor).secret_id(secret_id);
        let r = async {
            let current = self.secret_by_id(secret_id).await?;
            rec.set_secret(secret_id, &current.secret_name)
                .set_workspace(&current.workspace);
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
            rec.set_detail(format!("bindings_removed={bindings}"));
            audit::append(&mut tx, self.dialect, &rec).await?;
            tx.commit().await.map_err(db_err)
        }
        .await;
        self.audit_failure(rec, r).await
    }
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

/// A secret about to be inserted: its row and its sealed value.
struct NewRow {
    secret: Secret,
    sealed: crypto::Sealed,
}

impl NewRow {
    /// The audit row of the create, naming the secret (a failed create
    /// names none: the id is recorded only once the row exists).
    fn audit(&self, rec: &AuditRecord) -> AuditRecord {
        let mut done = rec.clone();
        done.set_secret_id(&self.secret.secret_id);
        done
    }
}

/// The audit record of creating `new`, before it has an id.
fn create_record(new: &NewSecret<'_>, actor: &str) -> AuditRecord {
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
    rec
}

/// INSERT one new secret inside `tx`; a taken name is `AlreadyExists`.
async fn insert_secret(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
    row: &NewRow,
) -> Result<()> {
    let (s, sealed) = (&row.secret, &row.sealed);
    let inserted = sqlx::query(dialect.q(
        "INSERT INTO secrets (secret_id, workspace, secret_name, ciphertext, iv, wrapped_dek, \
         kek_version, aad_hash, masked_value, is_shared, state, created_by, last_updated_by, \
         created_at, last_updated_at, provider) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ACTIVE', ?, ?, ?, ?, ?)",
    ))
    .bind(&s.secret_id)
    .bind(&s.workspace)
    .bind(&s.secret_name)
    .bind(sealed.ciphertext.clone())
    .bind(sealed.iv.to_vec())
    .bind(sealed.wrapped_dek.clone())
    .bind(i64::from(sealed.kek_version))
    .bind(sealed.aad_hash.clone())
    .bind(&s.masked_value)
    .bind(s.is_shared)
    .bind(s.created_by.clone())
    .bind(s.last_updated_by.clone())
    .bind(s.created_at)
    .bind(s.last_updated_at)
    .bind(s.provider.clone())
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) => Err(match Dialect::violated_constraint(&e) {
            Some("uq_secrets_workspace_secret_name") => StoreError::AlreadyExists(format!(
                "secret '{}' already exists in workspace '{}'",
                s.secret_name, s.workspace
            )),
            _ => db_err(e),
        }),
    }
}

pub(crate) fn not_found_secret(secret_id: &str) -> StoreError {
    StoreError::NotFound(format!("secret with id '{secret_id}' does not exist"))
}

pub(super) fn revoked(name: &str, ws: &str) -> StoreError {
    StoreError::Conflict(format!(
        "secret '{name}' in workspace '{ws}' is revoked; its value can no longer be read or changed"
    ))
}
