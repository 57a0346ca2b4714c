//! `mlflow push`: keep a running MLflow server's gateway secret equal to
//! one of ours (docs/design.md §13).
//!
//! The link is a binding of resource type `MLFLOW_GATEWAY` whose resource
//! id is MLflow's gateway secret id, so `list-bindings` shows where a value
//! went. Its binding name records the version pushed: `PUSHED_V<N>`, where
//! N is our secret's `last_updated_at` when its value was read (read
//! before the value, so a concurrent update can only make N older than what
//! was pushed, never newer: `--all` then pushes once more rather than never).
//! A gateway secret of the same name that no link of this secret points at
//! was made by someone else: it is a conflict, never overwritten.

use std::collections::HashMap;

use serde::Serialize;

use super::client::{GatewayClient, GatewaySecretInfo};
use super::{MLFLOW_GATEWAY_RESOURCE_TYPE, MlflowError, Result};
use crate::model::{BindingFilter, Secret, SecretBinding, SecretState};
use crate::store::SecretsStore;

/// Binding names of links start with this; the version follows.
pub const LINK_NAME_PREFIX: &str = "PUSHED_V";

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PushAction {
    Created,
    Updated,
    /// The server already holds the version we have (only without force).
    Unchanged,
}

/// One pushed secret: names, ids and versions, never a value.
#[derive(Debug, Clone, Serialize)]
pub struct PushResult {
    pub workspace: String,
    pub secret_name: String,
    pub secret_id: String,
    pub mlflow_secret_name: String,
    pub mlflow_secret_id: String,
    pub action: PushAction,
    /// Our `last_updated_at` of the value MLflow now holds.
    pub version: i64,
}

/// A push that did not happen, for `--all`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct PushFailure {
    pub workspace: String,
    pub secret_name: String,
    pub secret_id: String,
    pub mlflow_secret_id: Option<String>,
    pub error: String,
}

/// The version a link binding records, if it is one.
pub fn link_version(b: &SecretBinding) -> Option<i64> {
    if b.resource_type != MLFLOW_GATEWAY_RESOURCE_TYPE {
        return None;
    }
    b.binding_name.strip_prefix(LINK_NAME_PREFIX)?.parse().ok()
}

fn link_name(version: i64) -> String {
    format!("{LINK_NAME_PREFIX}{version}")
}

/// Every binding matching `filter`, all pages.
async fn all_bindings(
    store: &dyn SecretsStore,
    mut f: BindingFilter,
) -> Result<Vec<SecretBinding>> {
    let mut out = Vec::new();
    loop {
        let page = store.list_bindings(&f).await?;
        out.extend(page.items);
        match page.next_page_token {
            Some(t) => f.page_token = Some(t),
            None => return Ok(out),
        }
    }
}

/// The links of one secret, by MLflow secret id, with the newest version
/// each records.
async fn links_of(store: &dyn SecretsStore, secret: &Secret) -> Result<HashMap<String, i64>> {
    let bindings = all_bindings(
        store,
        BindingFilter {
            workspace: Some(secret.workspace.clone()),
            resource_type: Some(MLFLOW_GATEWAY_RESOURCE_TYPE.into()),
            secret_id: Some(secret.secret_id.clone()),
            ..Default::default()
        },
    )
    .await?;
    let mut out: HashMap<String, i64> = HashMap::new();
    for b in &bindings {
        let v = link_version(b).unwrap_or(i64::MIN);
        let e = out.entry(b.resource_id.clone()).or_insert(v);
        *e = (*e).max(v);
    }
    Ok(out)
}

/// Push `secret` to the gateway secret `mlflow_name` of the server behind
/// `client`, whose current list is `remote`. Without `force`, a linked
/// gateway secret that already holds our version is left alone.
pub async fn sync_secret(
    store: &dyn SecretsStore,
    client: &GatewayClient,
    remote: &[GatewaySecretInfo],
    secret: &Secret,
    mlflow_name: &str,
    force: bool,
    actor: &str,
) -> Result<PushResult> {
    if secret.state == SecretState::Revoked {
        return Err(MlflowError::Conflict(format!(
            "secret '{}' in workspace '{}' is revoked: there is no value to push",
            secret.secret_name, secret.workspace
        )));
    }
    let links = links_of(store, secret).await?;
    let target = remote.iter().find(|r| r.secret_name == mlflow_name);
    let mut result = PushResult {
        workspace: secret.workspace.clone(),
        secret_name: secret.secret_name.clone(),
        secret_id: secret.secret_id.clone(),
        mlflow_secret_name: mlflow_name.to_string(),
        mlflow_secret_id: String::new(),
        action: PushAction::Created,
        version: secret.last_updated_at,
    };
    if let Some(t) = target {
        let Some(&pushed) = links.get(&t.secret_id) else {
            return Err(conflict(store, secret, client, t).await);
        };
        result.mlflow_secret_id = t.secret_id.clone();
        if !force && pushed >= secret.last_updated_at {
            result.action = PushAction::Unchanged;
            result.version = pushed;
            return Ok(result);
        }
    }
    // Metadata first, then the value: the version recorded is never newer
    // than the value pushed.
    let current = store.get_secret(&secret.secret_id).await?;
    result.version = current.last_updated_at;
    let value = store.get_secret_value(&secret.secret_id, actor).await?;
    match target {
        Some(t) => {
            client.update(&t.secret_id, &value).await?;
            result.action = PushAction::Updated;
        }
        None => {
            let created = client
                .create(mlflow_name, &value, secret.provider.as_deref())
                .await?;
            result.mlflow_secret_id = created.secret_id;
        }
    }
    drop(value);
    record_link(store, secret, &result.mlflow_secret_id, result.version, actor)
        .await
        .map_err(|e| {
            MlflowError::Conflict(format!(
                "pushed secret '{}' to MLflow gateway secret '{}' ({}) but could not record the link: {e}; \
                 the next push will report that gateway secret as a conflict",
                secret.secret_name, mlflow_name, result.mlflow_secret_id
            ))
        })?;
    Ok(result)
}

/// Why a same-name gateway secret is not ours to overwrite, naming which
/// of our secrets (if any) it is linked to.
async fn conflict(
    store: &dyn SecretsStore,
    secret: &Secret,
    client: &GatewayClient,
    t: &GatewaySecretInfo,
) -> MlflowError {
    let other = all_bindings(
        store,
        BindingFilter {
            workspace: Some(secret.workspace.clone()),
            resource_type: Some(MLFLOW_GATEWAY_RESOURCE_TYPE.into()),
            resource_id: Some(t.secret_id.clone()),
            ..Default::default()
        },
    )
    .await
    .ok()
    .and_then(|b| b.into_iter().next());
    let owner = match other {
        Some(b) => format!("it is linked to another secret of ours ({})", b.secret_id),
        None => "mlflow-secrets did not create it".to_string(),
    };
    MlflowError::Conflict(format!(
        "MLflow gateway secret '{}' ({}) on {} already exists and {owner}: not overwritten; \
         delete it in MLflow or push under another name (--mlflow-secret-name)",
        t.secret_name,
        t.secret_id,
        client.base()
    ))
}

/// Make the link say `version`: bind the new name first, then drop older
/// names, so a link to the gateway secret always exists.
async fn record_link(
    store: &dyn SecretsStore,
    secret: &Secret,
    mlflow_id: &str,
    version: i64,
    actor: &str,
) -> crate::store::Result<()> {
    let existing = all_bindings(
        store,
        BindingFilter {
            workspace: Some(secret.workspace.clone()),
            resource_type: Some(MLFLOW_GATEWAY_RESOURCE_TYPE.into()),
            resource_id: Some(mlflow_id.to_string()),
            secret_id: Some(secret.secret_id.clone()),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| match e {
        MlflowError::Store(s) => s,
        other => crate::store::StoreError::Database(other.to_string()),
    })?;
    let name = link_name(version);
    if !existing.iter().any(|b| b.binding_name == name) {
        store
            .bind_secret(
                &secret.secret_id,
                MLFLOW_GATEWAY_RESOURCE_TYPE,
                mlflow_id,
                &name,
                actor,
            )
            .await?;
    }
    for b in existing.iter().filter(|b| b.binding_name != name) {
        store.unbind_secret(&b.binding_id, actor).await?;
    }
    Ok(())
}

/// `push --all`: every secret of `workspace` linked to a gateway secret of
/// this server whose value changed since its last push. Links to gateway
/// secrets this server does not have (another server's, or deleted in
/// MLflow) are left alone.
pub async fn sync_all(
    store: &dyn SecretsStore,
    client: &GatewayClient,
    workspace: &str,
    actor: &str,
) -> Result<(Vec<PushResult>, Vec<PushFailure>)> {
    let remote = client.list().await?;
    let by_id: HashMap<&str, &GatewaySecretInfo> =
        remote.iter().map(|r| (r.secret_id.as_str(), r)).collect();
    let links = all_bindings(
        store,
        BindingFilter {
            workspace: Some(workspace.to_string()),
            resource_type: Some(MLFLOW_GATEWAY_RESOURCE_TYPE.into()),
            ..Default::default()
        },
    )
    .await?;
    let mut targets: Vec<(String, String)> = links
        .iter()
        .filter_map(|b| {
            by_id
                .get(b.resource_id.as_str())
                .map(|r| (b.secret_id.clone(), r.secret_name.clone()))
        })
        .collect();
    targets.sort();
    targets.dedup();
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for (secret_id, mlflow_name) in targets {
        let secret = match store.get_secret(&secret_id).await {
            Ok(s) => s,
            Err(e) => {
                failed.push(PushFailure {
                    workspace: workspace.to_string(),
                    secret_name: String::new(),
                    secret_id,
                    mlflow_secret_id: None,
                    error: e.to_string(),
                });
                continue;
            }
        };
        match sync_secret(store, client, &remote, &secret, &mlflow_name, false, actor).await {
            Ok(r) => done.push(r),
            Err(e) => failed.push(PushFailure {
                workspace: secret.workspace,
                secret_name: secret.secret_name,
                secret_id: secret.secret_id,
                mlflow_secret_id: remote
                    .iter()
                    .find(|r| r.secret_name == mlflow_name)
                    .map(|r| r.secret_id.clone()),
                error: e.to_string(),
            }),
        }
    }
    Ok((done, failed))
}
