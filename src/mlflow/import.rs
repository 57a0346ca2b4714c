//! `mlflow import`: MLflow's gateway secrets into our store (docs/design.md
//! §13).
//!
//! Two phases, so that a wrong MLflow passphrase writes nothing: first
//! every row is decrypted ([`decrypt_all`]; one wrapped DEK that does not
//! open under its version's KEK stops the import before any write), then
//! each value is created, skipped or updated in our store ([`apply`]).
//! New secrets are written in batches (`SecretsStore::create_secrets_with`:
//! one transaction per batch, one audit row per secret, each secret whole
//! or not at all); an update is its own transaction. A rerun after an
//! interruption finishes the job, because a secret that already holds the
//! same value is skipped.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::crypto::{MlflowKeys, RowError};
use super::source::SourceSnapshot;
use super::{MlflowError, Result};
use crate::model::{NewSecret, Secret, SecretFilter, SecretState};
use crate::store::{SecretsStore, validate};
use crate::value::SecretValue;

/// Writes in flight at once: enough to overlap a network store's round
/// trips, few enough not to crowd a shared database's pool.
const CONCURRENCY: usize = 8;

/// New secrets handed to the store at once: it writes them in as few
/// transactions as it can (`SecretsStore::create_secrets_with`).
const CREATE_BATCH: usize = 256;

/// Page size when listing the secrets a workspace already has.
const LIST_PAGE: u32 = 1000;

/// One MLflow gateway secret, decrypted (or why not).
pub struct Decrypted {
    pub mlflow_secret_id: String,
    pub workspace: String,
    pub secret_name: String,
    pub provider: Option<String>,
    pub value: std::result::Result<SecretValue, RowError>,
}

/// Decrypt every row. A wrapped DEK that does not open is a wrong
/// passphrase (MLflow itself could not read that row either): the whole
/// import stops here, before anything is written. A value that does not
/// authenticate after its DEK opened is that row's failure alone.
pub fn decrypt_all(snap: SourceSnapshot, keys: &MlflowKeys) -> Result<Vec<Decrypted>> {
    let mut out = Vec::with_capacity(snap.rows.len());
    // (version) -> (rows, unwrap failures, first failing name)
    let mut per_version: BTreeMap<u32, (usize, usize, Option<String>)> = BTreeMap::new();
    for row in snap.rows {
        let value = keys.decrypt(
            &row.secret_id,
            &row.secret_name,
            row.kek_version,
            &row.encrypted_value,
            &row.wrapped_dek,
        );
        let e = per_version.entry(row.kek_version).or_default();
        e.0 += 1;
        if matches!(value, Err(RowError::Unwrap(_))) {
            e.1 += 1;
            e.2.get_or_insert_with(|| row.secret_name.clone());
        }
        out.push(Decrypted {
            mlflow_secret_id: row.secret_id,
            workspace: row.workspace,
            secret_name: row.secret_name,
            provider: row.provider,
            value,
        });
    }
    if let Some((&version, &(total, failed, ref first))) =
        per_version.iter().find(|(_, (_, failed, _))| *failed > 0)
    {
        return Err(MlflowError::WrongPassphrase {
            version,
            failed,
            total,
            first: first.clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// How `apply` treats existing secrets.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Replace the value of a secret that holds a different one.
    pub update: bool,
    /// Decide everything, write nothing.
    pub dry_run: bool,
}

/// One line of the report: names and ids, never a value.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImportEntry {
    pub workspace: String,
    pub secret_name: String,
    pub mlflow_secret_id: String,
    /// Our secret's id (absent for a dry-run create or a failure before it).
    pub secret_id: Option<String>,
    pub provider: Option<String>,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
}

/// What happened to each MLflow gateway secret.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub imported: Vec<ImportEntry>,
    pub skipped: Vec<ImportEntry>,
    pub updated: Vec<ImportEntry>,
    pub failed: Vec<ImportEntry>,
}

/// What [`one`] decided for a row: an outcome, or a create, which
/// [`create_batch`] writes together with others.
enum Step {
    Done(Outcome, ImportEntry),
    Create(ImportEntry, SecretValue),
}

enum Outcome {
    Imported,
    Skipped,
    Updated,
    Failed,
}

/// Create, skip or update each decrypted value in `store`, as the shared
/// secret of the same workspace and name with MLflow's provider. `tick` is
/// called once per row (the progress bar).
pub async fn apply(
    store: &dyn SecretsStore,
    rows: Vec<Decrypted>,
    opts: ImportOptions,
    actor: &str,
    tick: &(dyn Fn() + Sync),
) -> Result<ImportReport> {
    let mut existing: HashMap<String, HashMap<String, Secret>> = HashMap::new();
    for ws in rows.iter().map(|r| r.workspace.as_str()) {
        if existing.contains_key(ws) || validate::workspace(ws).is_err() {
            continue;
        }
        existing.insert(ws.to_string(), list_workspace(store, ws).await?);
    }
    let existing = &existing;
    let steps: Vec<Step> = futures::stream::iter(rows)
        .map(|d| async move {
            let found = existing
                .get(&d.workspace)
                .and_then(|m| m.get(&d.secret_name));
            let step = one(store, d, found, opts, actor).await;
            if matches!(step, Step::Done(..)) {
                tick();
            }
            step
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut results = Vec::with_capacity(steps.len());
    let mut creates = Vec::new();
    for step in steps {
        match step {
            Step::Done(outcome, entry) => results.push((outcome, entry)),
            Step::Create(entry, value) => creates.push((entry, value)),
        }
    }
    let batches: Vec<Vec<(Outcome, ImportEntry)>> = futures::stream::iter(
        creates
            .chunks(CREATE_BATCH)
            .map(|batch| create_batch(store, batch, actor, tick)),
    )
    .buffer_unordered(CONCURRENCY)
    .collect()
    .await;
    results.extend(batches.into_iter().flatten());
    let mut report = ImportReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    for (outcome, entry) in results {
        match outcome {
            Outcome::Imported => report.imported.push(entry),
            Outcome::Skipped => report.skipped.push(entry),
            Outcome::Updated => report.updated.push(entry),
            Outcome::Failed => report.failed.push(entry),
        }
    }
    for list in [
        &mut report.imported,
        &mut report.skipped,
        &mut report.updated,
        &mut report.failed,
    ] {
        list.sort_by(|a, b| (&a.workspace, &a.secret_name).cmp(&(&b.workspace, &b.secret_name)));
    }
    Ok(report)
}

/// Every secret of `ws` by name, revoked ones included (a revoked name is
/// taken: importing over it must fail, not create a twin).
async fn list_workspace(store: &dyn SecretsStore, ws: &str) -> Result<HashMap<String, Secret>> {
    let mut out = HashMap::new();
    let mut page_token = None;
    loop {
        let page = store
            .list_secrets(&SecretFilter {
                workspace: Some(ws.to_string()),
                page_token,
                max_results: Some(LIST_PAGE),
                ..Default::default()
            })
            .await?;
        for s in page.items {
            out.insert(s.secret_name.clone(), s);
        }
        match page.next_page_token {
            Some(t) => page_token = Some(t),
            None => return Ok(out),
        }
    }
}

async fn one(
    store: &dyn SecretsStore,
    d: Decrypted,
    found: Option<&Secret>,
    opts: ImportOptions,
    actor: &str,
) -> Step {
    let mut entry = ImportEntry {
        workspace: d.workspace,
        secret_name: d.secret_name,
        mlflow_secret_id: d.mlflow_secret_id,
        secret_id: found.map(|s| s.secret_id.clone()),
        provider: d.provider,
        reason: None,
    };
    let fail = |e: ImportEntry, why: String| {
        let (outcome, e) = failed(e, why);
        Step::Done(outcome, e)
    };
    let value = match d.value {
        Ok(v) => v,
        Err(e) => return fail(entry, e.to_string()),
    };
    if let Err(e) = validate::workspace(&entry.workspace)
        .and_then(|()| validate::secret_name(&entry.secret_name))
    {
        return fail(entry, e.to_string());
    }
    let Some(found) = found else {
        if opts.dry_run {
            return Step::Done(Outcome::Imported, entry);
        }
        return Step::Create(entry, value);
    };
    if found.state == SecretState::Revoked {
        return fail(
            entry,
            "our secret of that name is revoked; delete it to import again".into(),
        );
    }
    let ours = match store.get_secret_value(&found.secret_id, actor).await {
        Ok(v) => v,
        Err(e) => return fail(entry, e.to_string()),
    };
    if same_value(&ours, &value) {
        entry.reason = Some("same value".into());
        return Step::Done(Outcome::Skipped, entry);
    }
    if !opts.update {
        entry.reason = Some("our value differs; rerun with --update to replace it".into());
        return Step::Done(Outcome::Skipped, entry);
    }
    if opts.dry_run {
        return Step::Done(Outcome::Updated, entry);
    }
    match store.update_secret(&found.secret_id, &value, actor).await {
        Ok(_) => Step::Done(Outcome::Updated, entry),
        Err(e) => fail(entry, e.to_string()),
    }
}

fn failed(mut e: ImportEntry, why: String) -> (Outcome, ImportEntry) {
    e.reason = Some(why);
    (Outcome::Failed, e)
}

/// Create the shared secrets of `batch`, with MLflow's provider, in one
/// store call; each row reports its own outcome.
async fn create_batch(
    store: &dyn SecretsStore,
    batch: &[(ImportEntry, SecretValue)],
    actor: &str,
    tick: &(dyn Fn() + Sync),
) -> Vec<(Outcome, ImportEntry)> {
    let items: Vec<(NewSecret<'_>, &SecretValue)> = batch
        .iter()
        .map(|(e, value)| {
            let new = NewSecret {
                workspace: &e.workspace,
                secret_name: &e.secret_name,
                is_shared: true,
                provider: e.provider.as_deref(),
            };
            (new, value)
        })
        .collect();
    let created = store.create_secrets_with(&items, actor).await;
    batch
        .iter()
        .zip(created)
        .map(|((entry, _), r)| {
            tick();
            let mut entry = entry.clone();
            match r {
                Ok(s) => {
                    entry.secret_id = Some(s.secret_id);
                    (Outcome::Imported, entry)
                }
                Err(e) => failed(entry, e.to_string()),
            }
        })
        .collect()
}

/// Equal stored forms (`{"value": s}` and the string `s` are the same
/// value, §4), compared in constant time.
pub fn same_value(a: &SecretValue, b: &SecretValue) -> bool {
    let (a, b) = (a.to_plaintext(), b.to_plaintext());
    a.len() == b.len() && bool::from(a.as_slice().ct_eq(b.as_slice()))
}
