//! Row <-> entity mapping for the SQL store, the column lists shared by
//! its queries, and the pieces of a listing (scope filter, page tokens).
//! Crypto columns are read only by `SealedRow`, which never
//! leaves `store::sql*`.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use super::{Dialect, db_err};
use crate::model::{AuditEntry, Page, Secret, SecretBinding, SecretState};
use crate::store::validate;
use crate::store::{Result, StoreError};

/// Metadata columns of `secrets`. `is_shared` is normalised to an integer so
/// that one decode works on SQLite, PostgreSQL (BOOLEAN) and MySQL (TINYINT).
macro_rules! secret_cols {
    () => {
        "secret_id, workspace, secret_name, masked_value, \
         CASE WHEN is_shared THEN 1 ELSE 0 END AS is_shared, state, created_by, created_at, \
         last_updated_by, last_updated_at, revoked_by, revoked_at, provider"
    };
}
pub(crate) use secret_cols;

macro_rules! binding_cols {
    () => {
        "binding_id, secret_id, workspace, resource_type, resource_id, binding_name, created_by, created_at, \
         value_field, service_accounts"
    };
}
pub(crate) use binding_cols;

/// The columns needed to decrypt a row.
macro_rules! sealed_cols {
    () => {
        "secret_id, workspace, secret_name, state, ciphertext, iv, wrapped_dek, kek_version, aad_hash"
    };
}
pub(crate) use sealed_cols;

pub(crate) fn secret_from_row(row: &AnyRow) -> Result<Secret> {
    let state: String = row.try_get("state").map_err(db_err)?;
    let shared: i64 = row.try_get("is_shared").map_err(db_err)?;
    Ok(Secret {
        secret_id: row.try_get("secret_id").map_err(db_err)?,
        workspace: row.try_get("workspace").map_err(db_err)?,
        secret_name: row.try_get("secret_name").map_err(db_err)?,
        masked_value: row.try_get("masked_value").map_err(db_err)?,
        is_shared: shared != 0,
        state: state
            .parse::<SecretState>()
            .map_err(|e| StoreError::Database(format!("secrets.state: {e}")))?,
        created_by: row.try_get("created_by").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        last_updated_by: row.try_get("last_updated_by").map_err(db_err)?,
        last_updated_at: row.try_get("last_updated_at").map_err(db_err)?,
        revoked_by: row.try_get("revoked_by").map_err(db_err)?,
        revoked_at: row.try_get("revoked_at").map_err(db_err)?,
        provider: row.try_get("provider").map_err(db_err)?,
    })
}

pub(crate) fn binding_from_row(row: &AnyRow) -> Result<SecretBinding> {
    Ok(SecretBinding {
        binding_id: row.try_get("binding_id").map_err(db_err)?,
        secret_id: row.try_get("secret_id").map_err(db_err)?,
        workspace: row.try_get("workspace").map_err(db_err)?,
        resource_type: row.try_get("resource_type").map_err(db_err)?,
        resource_id: row.try_get("resource_id").map_err(db_err)?,
        binding_name: row.try_get("binding_name").map_err(db_err)?,
        created_by: row.try_get("created_by").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        value_field: row.try_get("value_field").map_err(db_err)?,
        service_accounts: split_service_accounts(row.try_get("service_accounts").map_err(db_err)?),
    })
}

/// `secrets_bindings.service_accounts` is comma-separated (docs/design.md §2);
/// NULL and the empty string both mean "any ServiceAccount".
pub(crate) fn split_service_accounts(col: Option<String>) -> Vec<String> {
    col.map(|c| {
        c.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// The column form of a ServiceAccount list: NULL when empty.
pub(crate) fn join_service_accounts(sas: &[String]) -> Option<String> {
    (!sas.is_empty()).then(|| sas.join(","))
}

/// Column `kek_version` of a row.
pub(super) fn kek_version_col(row: &AnyRow) -> Result<u32> {
    let v: i64 = row.try_get("kek_version").map_err(db_err)?;
    u32::try_from(v)
        .map_err(|_| StoreError::Database(format!("secrets.kek_version {v} is out of range")))
}

/// The encrypted form of one row, as read for decryption.
pub(crate) struct SealedRow {
    pub secret_id: String,
    pub workspace: String,
    pub secret_name: String,
    pub state: String,
    pub ciphertext: Vec<u8>,
    pub iv: Vec<u8>,
    pub wrapped_dek: Vec<u8>,
    pub kek_version: u32,
    pub aad_hash: String,
}

impl SealedRow {
    pub fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            secret_id: row.try_get("secret_id").map_err(db_err)?,
            workspace: row.try_get("workspace").map_err(db_err)?,
            secret_name: row.try_get("secret_name").map_err(db_err)?,
            state: row.try_get("state").map_err(db_err)?,
            ciphertext: row.try_get("ciphertext").map_err(db_err)?,
            iv: row.try_get("iv").map_err(db_err)?,
            wrapped_dek: row.try_get("wrapped_dek").map_err(db_err)?,
            kek_version: kek_version_col(row)?,
            aad_hash: row.try_get("aad_hash").map_err(db_err)?,
        })
    }

    pub fn is_revoked(&self) -> bool {
        self.state == SecretState::Revoked.as_str()
    }
}

/// A page token: the sort key of the last row, base64url JSON. Opaque to
/// callers; a malformed one is a clean 400.
pub(crate) fn encode_token(key: &[&str]) -> String {
    B64URL.encode(serde_json::to_vec(key).expect("token"))
}

pub(crate) fn decode_token(token: &str, parts: usize) -> Result<Vec<String>> {
    let bad = || StoreError::InvalidParameter("page_token is invalid".into());
    let bytes = B64URL.decode(token).map_err(|_| bad())?;
    let v: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v.len() != parts {
        return Err(bad());
    }
    Ok(v)
}

/// The page of a listing that fetched `limit + 1` rows: the extra row, if
/// any, only says there is a next page, whose token is the sort key of the
/// last row kept.
pub(super) fn page_of<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Page<T> {
    let next_page_token = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(key)
    } else {
        None
    };
    Page {
        items,
        next_page_token,
    }
}

/// `AND workspace IN (?, ...)` for a scope filter: one placeholder per
/// (validated) name, bound as arguments. An empty set matches nothing.
pub(crate) fn push_workspaces_in(
    sql: &mut String,
    args: &mut Vec<Arg>,
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
    args.extend(set.iter().cloned().map(Arg::Text));
    Ok(())
}

/// A bind parameter of a listing composed at run time.
pub(crate) enum Arg {
    Text(String),
    Int(i64),
    Flag(bool),
}

/// Run a listing composed at run time from literal fragments: bind `args`
/// in order (the `LIMIT` is the caller's last one) and map every row.
pub(crate) async fn fetch_listing<T>(
    pool: &AnyPool,
    dialect: Dialect,
    sql: String,
    args: Vec<Arg>,
    from_row: impl Fn(&AnyRow) -> Result<T>,
) -> Result<Vec<T>> {
    let mut q = sqlx::query(dialect.q_composed(sql));
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
            Arg::Flag(b) => q.bind(b),
        };
    }
    let rows = q.fetch_all(pool).await.map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

/// Columns of `secrets_audit_log`, in the order of [`AuditEntry`].
macro_rules! audit_cols {
    () => {
        "seq, occurred_at, principal, action, workspace, secret_id, secret_name, resource, \
         outcome, detail, prev_hash, row_hash"
    };
}
pub(crate) use audit_cols;

pub(crate) fn audit_entry_from_row(r: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.try_get("seq").map_err(db_err)?,
        occurred_at: r.try_get("occurred_at").map_err(db_err)?,
        principal: r.try_get("principal").map_err(db_err)?,
        action: r.try_get("action").map_err(db_err)?,
        workspace: r.try_get("workspace").map_err(db_err)?,
        secret_id: r.try_get("secret_id").map_err(db_err)?,
        secret_name: r.try_get("secret_name").map_err(db_err)?,
        resource: r.try_get("resource").map_err(db_err)?,
        outcome: r.try_get("outcome").map_err(db_err)?,
        detail: r.try_get("detail").map_err(db_err)?,
        prev_hash: r.try_get("prev_hash").map_err(db_err)?,
        row_hash: r.try_get("row_hash").map_err(db_err)?,
    })
}
