//! The leader's share of webhook TLS: renew before expiry, and keep the
//! MutatingWebhookConfiguration trusting the CA in force.
//!
//! Order matters on a CA rotation: the caBundle is widened to old + new CA
//! *before* the Secret (and so every replica) switches to a certificate
//! from the new CA, so the API server trusts whichever replica it calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::material::{Material, unix_now};
use super::{CertConfig, CertError, is_conflict};
use crate::k8s::metrics::OperatorMetrics;
use crate::k8s::{
    FIELD_MANAGER, LABEL_INJECT, LABEL_NAMESPACE_INJECTION, NAMESPACE_INJECTION_ENABLED,
};

/// The webhook's name inside the configuration.
pub const WEBHOOK_NAME: &str = "inject.secrets.mlflow.org";
/// The API server's own deadline for calling us (the webhook denies
/// earlier, at its deadline).
const TIMEOUT_SECONDS: i32 = 10;
/// Time for the API server to pick up a widened caBundle before replicas
/// switch to a certificate from a new CA.
const CA_PROPAGATION: Duration = Duration::from_secs(2);

/// Renew and register for as long as this replica leads; the operator
/// drops (aborts) the task when the Lease is lost. Errors are logged and
/// retried on the next tick.
pub async fn leader_loop(client: kube::Client, cfg: CertConfig, metrics: Arc<OperatorMetrics>) {
    loop {
        if let Err(e) = tick(&client, &cfg, &metrics).await {
            tracing::warn!(error = %e, secret = %cfg.secret_name, "webhook certificate upkeep failed; retrying");
        }
        tokio::time::sleep(cfg.check_interval).await;
    }
}

async fn tick(
    client: &kube::Client,
    cfg: &CertConfig,
    metrics: &OperatorMetrics,
) -> Result<(), CertError> {
    let api = cfg.api(client);
    let existing = api.get_opt(&cfg.secret_name).await?;
    let current = existing.as_ref().map(Material::from_secret);
    let now = unix_now();
    let renew = cfg.renew_before.as_secs() as i64;
    let sans = cfg.sans();
    let next = match &current {
        None | Some(Err(_)) => Some(Material::generate(
            &sans,
            cfg.validity,
            cfg.ca_validity,
            None,
        )?),
        Some(Ok(m)) if m.ca_not_after - now <= renew => {
            let next = Material::generate(&sans, cfg.validity, cfg.ca_validity, Some(&m.ca_crt))?;
            // Trust the new CA before anyone serves with it.
            ensure_configuration(client, cfg, &next.ca_crt).await?;
            tokio::time::sleep(CA_PROPAGATION).await;
            tracing::info!(ca_not_after = next.ca_not_after, "rotated the webhook CA");
            Some(next)
        }
        Some(Ok(m)) if m.serving_not_after - now <= renew || m.sans != sans.join(",") => {
            let mut next = m.clone();
            next.reissue(&sans, cfg.validity)?;
            Some(next)
        }
        Some(Ok(_)) => None,
    };
    let in_force = match next {
        Some(m) => {
            let mut secret = m.to_secret(&cfg.namespace, &cfg.secret_name);
            let r = match &existing {
                None => api.create(&PostParams::default(), &secret).await,
                Some(old) => {
                    secret.metadata.resource_version = old.metadata.resource_version.clone();
                    api.replace(&cfg.secret_name, &PostParams::default(), &secret)
                        .await
                }
            };
            match r {
                Ok(_) => {
                    tracing::info!(
                        not_after = m.serving_not_after,
                        "renewed the webhook serving certificate"
                    );
                    metrics.cert_expiry.set(m.serving_not_after as f64);
                    m
                }
                // Someone else wrote it meanwhile: look again next tick.
                Err(e) if is_conflict(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        None => match current {
            Some(Ok(m)) => m,
            _ => unreachable!("absent or invalid material is always regenerated"),
        },
    };
    ensure_configuration(client, cfg, &in_force.ca_crt).await
}

/// The URL-based configuration `--webhook-url` registers: one webhook for
/// labelled pod CREATEs, failing closed, no side effects on dryRun.
pub fn webhook_configuration(
    cfg: &CertConfig,
    url: &str,
    ca_bundle: &str,
) -> MutatingWebhookConfiguration {
    let namespace_selector = namespace_selector(cfg);
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(cfg.webhook_config_name.clone()),
            labels: Some(BTreeMap::from([(
                super::super::secret::LABEL_MANAGED_BY.to_string(),
                FIELD_MANAGER.to_string(),
            )])),
            ..Default::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: WEBHOOK_NAME.into(),
            admission_review_versions: vec!["v1".into()],
            client_config: WebhookClientConfig {
                url: Some(url.to_string()),
                ca_bundle: Some(ByteString(ca_bundle.as_bytes().to_vec())),
                service: None,
            },
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector),
            object_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    LABEL_INJECT.to_string(),
                    "true".to_string(),
                )])),
                match_expressions: None,
            }),
            reinvocation_policy: Some("Never".into()),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["pods".into()]),
                scope: Some("Namespaced".into()),
            }]),
            side_effects: "NoneOnDryRun".into(),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            match_conditions: None,
        }]),
    }
}

/// The registered namespaceSelector: `cfg.namespace_selector` (default:
/// every namespace but the operator's own), always narrowed to namespaces
/// that opted in with `secrets.mlflow.org/injection: enabled` (docs/design.md §8,
/// "What the webhook trusts"). A selector without the opt-in label cannot
/// be configured: the handler would deny those namespaces anyway.
fn namespace_selector(cfg: &CertConfig) -> LabelSelector {
    let mut sel = cfg
        .namespace_selector
        .clone()
        .unwrap_or_else(|| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(vec![cfg.namespace.clone()]),
            }]),
            match_labels: None,
        });
    sel.match_labels.get_or_insert_with(BTreeMap::new).insert(
        LABEL_NAMESPACE_INJECTION.to_string(),
        NAMESPACE_INJECTION_ENABLED.to_string(),
    );
    sel
}

/// Make the configuration trust `ca_bundle`: register it whole (URL mode),
/// or patch the caBundle of every webhook in the chart's configuration.
async fn ensure_configuration(
    client: &kube::Client,
    cfg: &CertConfig,
    ca_bundle: &str,
) -> Result<(), CertError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    if let Some(url) = &cfg.webhook_url {
        let want = webhook_configuration(cfg, url, ca_bundle);
        api.patch(
            &cfg.webhook_config_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&want),
        )
        .await?;
        return Ok(());
    }
    let Some(have) = api.get_opt(&cfg.webhook_config_name).await? else {
        tracing::debug!(name = %cfg.webhook_config_name, "no MutatingWebhookConfiguration to keep current yet");
        return Ok(());
    };
    let want = serde_json::to_value(ByteString(ca_bundle.as_bytes().to_vec())).unwrap_or_default();
    let mut ops = Vec::new();
    for (i, w) in have.webhooks.unwrap_or_default().iter().enumerate() {
        if w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(ca_bundle.as_bytes())
        {
            continue;
        }
        // `test` the name first: if the list changed under us, the patch
        // fails instead of writing into the wrong webhook.
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w.name}));
        ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": want}));
    }
    if ops.is_empty() {
        return Ok(());
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| CertError::Invalid(format!("caBundle patch: {e}")))?;
    api.patch(
        &cfg.webhook_config_name,
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    tracing::info!(name = %cfg.webhook_config_name, "updated the webhook caBundle");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registered_selector_always_requires_the_opt_in_label() {
        let mut cfg = CertConfig::new("ops", "");
        let sel = namespace_selector(&cfg);
        assert_eq!(
            sel.match_labels.unwrap()[LABEL_NAMESPACE_INJECTION],
            NAMESPACE_INJECTION_ENABLED
        );
        assert_eq!(
            sel.match_expressions.unwrap()[0].values,
            Some(vec!["ops".to_string()])
        );
        // A custom selector narrows; it cannot drop the opt-in label.
        cfg.namespace_selector = Some(LabelSelector {
            match_labels: Some([("team".to_string(), "a".to_string())].into()),
            match_expressions: None,
        });
        let labels = namespace_selector(&cfg).match_labels.unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(
            labels[LABEL_NAMESPACE_INJECTION],
            NAMESPACE_INJECTION_ENABLED
        );
    }
}
