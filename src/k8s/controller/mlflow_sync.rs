//! `MlflowSecret.spec.mlflowGateway`: the leader pushes the secret's value
//! to a gateway secret of a running MLflow server whenever the value
//! changes (an import, a re-import, an update through the CLI or REST), and
//! reports the condition `MlflowSynced` (docs/mlflow.md).
//!
//! The push itself is `mlflow push`'s ([`crate::mlflow::push::sync_secret`]
//! without force): the `MLFLOW_GATEWAY` link binding records the version
//! pushed, so a pass that finds MLflow holding the current version only
//! lists MLflow's gateway secrets; a same-name gateway secret that has no
//! link is a conflict and is never overwritten. Objects with
//! `mlflowGateway` are requeued every [`RESYNC`], which bounds how long a
//! CLI or REST update takes to reach MLflow.
//!
//! MLflow's credentials come from a Kubernetes Secret of the namespace
//! (`credentialsSecretRef`: key `token`, or `username` and `password`) that
//! must consent with the importable annotation, like any import source:
//! whoever may create an MlflowSecret must not thereby send another
//! Secret's contents to a server of their choosing.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::Api;
use kube::runtime::events::EventType;
use secrecy::SecretString;
use zeroize::Zeroize;

use super::Context;
use super::conditions::MLFLOW_SYNCED;
use super::import::is_importable;
use super::reasons::{
    MLFLOW_AUTH_FAILED, MLFLOW_CONFLICT, MLFLOW_CREDENTIALS_NOT_FOUND,
    MLFLOW_CREDENTIALS_NOT_IMPORTABLE, MLFLOW_ERROR, MLFLOW_INVALID_URI, MLFLOW_NO_VALUE,
    MLFLOW_PUSHED, MLFLOW_UNREACHABLE,
};
use super::status::{self, Verdict};
use crate::k8s::ANNOTATION_IMPORTABLE;
use crate::k8s::crd::{Condition, MlflowGateway, MlflowSecret};
use crate::mlflow::MlflowError;
use crate::mlflow::client::{GatewayClient, MlflowAuth};
use crate::mlflow::push::{PushAction, sync_secret};
use crate::model::{Secret, SecretState};

/// How often an object with `mlflowGateway` is looked at again.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Push `row` when the object asks for it; `None` without `mlflowGateway`.
/// `row` is the active store row this object manages or mirrors (`None`
/// when there is none, or it belongs to someone else).
pub(super) async fn sync(
    obj: &MlflowSecret,
    ctx: &Context,
    ns: &str,
    row: Option<&Secret>,
    actor: &str,
    previous: &[Condition],
) -> Option<Verdict> {
    let gw = obj.spec.mlflow_gateway.as_ref()?;
    let verdict = match row.filter(|r| r.state == SecretState::Active) {
        None => Verdict::no(MLFLOW_NO_VALUE, "no active store secret to push to MLflow"),
        Some(row) => push(obj, ctx, ns, gw, row, actor).await,
    };
    let was =
        status::find(previous, MLFLOW_SYNCED).map(|c| (c.status == "True", c.reason.as_str()));
    if !verdict.ok && was != Some((false, verdict.reason)) {
        ctx.event(
            obj,
            EventType::Warning,
            verdict.reason,
            "MlflowSync",
            verdict.message.clone(),
        )
        .await;
    }
    Some(verdict)
}

async fn push(
    obj: &MlflowSecret,
    ctx: &Context,
    ns: &str,
    gw: &MlflowGateway,
    row: &Secret,
    actor: &str,
) -> Verdict {
    let auth = match credentials(ctx, ns, gw).await {
        Ok(a) => a,
        Err(v) => return v,
    };
    let client = match GatewayClient::new(&gw.tracking_uri, auth, ns, None, false) {
        Ok(c) => c,
        Err(e) => return Verdict::no(MLFLOW_INVALID_URI, e.to_string()),
    };
    let name = gw.secret_name.as_deref().unwrap_or(&row.secret_name);
    let pushed = match client.list().await {
        Ok(remote) => sync_secret(&*ctx.store, &client, &remote, row, name, false, actor).await,
        Err(e) => Err(e),
    };
    match pushed {
        Ok(r) => {
            if r.action != PushAction::Unchanged {
                ctx.event(
                    obj,
                    EventType::Normal,
                    "Pushed",
                    "MlflowSync",
                    format!(
                        "pushed secret '{}' version {} to MLflow gateway secret '{}' ({}) on {}",
                        r.secret_name,
                        r.version,
                        r.mlflow_secret_name,
                        r.mlflow_secret_id,
                        client.base()
                    ),
                )
                .await;
            }
            Verdict::yes(
                MLFLOW_PUSHED,
                format!(
                    "MLflow gateway secret '{}' ({}) on {} holds version {}",
                    r.mlflow_secret_name,
                    r.mlflow_secret_id,
                    client.base(),
                    r.version
                ),
            )
        }
        Err(e) => failure(&e),
    }
}

/// The condition for a failed push; the messages never hold a value.
fn failure(e: &MlflowError) -> Verdict {
    let reason = match e {
        MlflowError::Unreachable { .. } => MLFLOW_UNREACHABLE,
        MlflowError::Auth { .. } => MLFLOW_AUTH_FAILED,
        MlflowError::Conflict(_) => MLFLOW_CONFLICT,
        MlflowError::InvalidUri(_) => MLFLOW_INVALID_URI,
        _ => MLFLOW_ERROR,
    };
    Verdict::no(reason, e.to_string())
}

/// MLflow's credentials from `credentialsSecretRef`, or none. The Secret
/// must consent (importable annotation); every byte read is wiped.
async fn credentials(ctx: &Context, ns: &str, gw: &MlflowGateway) -> Result<MlflowAuth, Verdict> {
    let Some(r) = &gw.credentials_secret_ref else {
        return Ok(MlflowAuth::None);
    };
    let api: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), ns);
    let found = api.get_opt(&r.name).await.map_err(|e| {
        Verdict::no(
            MLFLOW_CREDENTIALS_NOT_FOUND,
            format!("cannot read Secret {ns}/{}: {e}", r.name),
        )
    })?;
    let Some(mut secret) = found else {
        return Err(Verdict::no(
            MLFLOW_CREDENTIALS_NOT_FOUND,
            format!("credentials Secret {ns}/{} not found", r.name),
        ));
    };
    let mut data = secret.data.take().unwrap_or_default();
    let wipe = |data: &mut std::collections::BTreeMap<String, k8s_openapi::ByteString>| {
        for v in data.values_mut() {
            v.0.zeroize();
        }
    };
    if !is_importable(secret.metadata.annotations.as_ref()) {
        wipe(&mut data);
        return Err(Verdict::no(
            MLFLOW_CREDENTIALS_NOT_IMPORTABLE,
            format!(
                "credentials Secret {ns}/{} does not consent: add the annotation {ANNOTATION_IMPORTABLE}: \"true\" to it (it was not read)",
                r.name
            ),
        ));
    }
    let mut take = |k: &str| data.remove(k).map(|b| b.0);
    let token = take("token");
    let user = take("username");
    let pass = take("password");
    wipe(&mut data);
    let text = |b: Vec<u8>| {
        String::from_utf8(b).map_err(|e| {
            e.into_bytes().zeroize();
            Verdict::no(
                MLFLOW_CREDENTIALS_NOT_FOUND,
                format!(
                    "credentials Secret {ns}/{}: a key is not UTF-8 text",
                    r.name
                ),
            )
        })
    };
    let (mut token, mut user, mut pass) = (token, user, pass);
    let auth = match (token.take(), user.take(), pass.take()) {
        (Some(t), None, None) => text(t).map(|t| MlflowAuth::Bearer(SecretString::from(t))),
        (None, Some(u), Some(p)) => text(p).map(|p| MlflowAuth::Basic {
            username: String::from_utf8_lossy(&u).into_owned(),
            password: SecretString::from(p),
        }),
        (t, u, p) => {
            (token, user, pass) = (t, u, p);
            Err(Verdict::no(
                MLFLOW_CREDENTIALS_NOT_FOUND,
                format!(
                    "credentials Secret {ns}/{} must hold either key 'token' or keys 'username' and 'password'",
                    r.name
                ),
            ))
        }
    };
    token.zeroize();
    user.zeroize();
    pass.zeroize();
    auth
}
