//! The cluster part of `doctor`: the CRDs, the webhook configuration and
//! its caBundle against the operator's serving certificate, the
//! certificate's expiry, and the namespaces that opted in to injection.
//!
//! It reads only: the certificate Secret is parsed with the operator's own
//! [`Material::from_secret`] (which also checks that the key fits the
//! certificate), and no key byte is printed.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::{CustomResourceExt, ResourceExt};

use super::doctor::Check;
use crate::k8s::crd::{MlflowSecret, MlflowSecretBinding};
use crate::k8s::webhook::certs::{Material, material::unix_now};
use crate::k8s::{LABEL_NAMESPACE_INJECTION, NAMESPACE_INJECTION_ENABLED};

/// A serving certificate closer than this to expiry is reported (the
/// operator renews 30 days ahead, so this means renewal is not happening).
const EXPIRY_WARN_SECS: i64 = 14 * 24 * 3600;

/// Which cluster and which operator installation to check.
#[derive(Debug, Clone)]
pub struct KubeTarget {
    /// A kubeconfig file; `None`: the usual discovery (`KUBECONFIG`,
    /// `~/.kube/config`, in-cluster).
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The operator's namespace (where its certificate Secret lives).
    pub namespace: String,
    /// The Secret with the CA and serving certificate (the operator's
    /// `--webhook-secret`, by default `mlflow-secrets-webhook-tls`).
    pub secret_name: String,
    /// The MutatingWebhookConfiguration (by default `mlflow-secrets`).
    pub webhook_config_name: String,
}

async fn client(t: &KubeTarget) -> Result<kube::Client, String> {
    let config = match &t.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no usable kubeconfig: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

/// Every cluster check, in order.
pub async fn checks(t: &KubeTarget) -> Vec<Check> {
    let mut out = Vec::new();
    let client = match client(t).await {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::fail(
                "k8s.api",
                e,
                "pass --kubeconfig FILE (or set KUBECONFIG) for the cluster the operator runs in",
            ));
            return out;
        }
    };
    match client.apiserver_version().await {
        Ok(v) => out.push(Check::ok(
            "k8s.api",
            format!("API server {}.{}", v.major, v.minor),
        )),
        Err(e) => {
            out.push(Check::fail(
                "k8s.api",
                format!("the API server does not answer: {e}"),
                "check the kubeconfig's server address and credentials",
            ));
            return out;
        }
    }
    out.push(crd_check(&client).await);
    let bundle = webhook_check(&client, t, &mut out).await;
    cert_checks(&client, t, bundle.as_deref(), &mut out).await;
    out.push(namespaces_check(&client).await);
    out
}

async fn crd_check(client: &kube::Client) -> Check {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut missing = Vec::new();
    for name in [MlflowSecret::crd_name(), MlflowSecretBinding::crd_name()] {
        match api.get_opt(name).await {
            Ok(Some(_)) => {}
            Ok(None) => missing.push(name.to_string()),
            Err(e) => {
                return Check::fail(
                    "k8s.crds",
                    format!("cannot read CRD {name}: {e}"),
                    "grant this user `get` on customresourcedefinitions",
                );
            }
        }
    }
    if missing.is_empty() {
        Check::ok(
            "k8s.crds",
            "MlflowSecret and MlflowSecretBinding are installed",
        )
    } else {
        Check::fail(
            "k8s.crds",
            format!("missing CRD(s): {}", missing.join(", ")),
            "install them: `helm upgrade --install` the chart, or `mlflow-secrets crdgen | kubectl apply -f -`",
        )
    }
}

/// The configuration's caBundle (PEM), when it has one.
async fn webhook_check(
    client: &kube::Client,
    t: &KubeTarget,
    out: &mut Vec<Check>,
) -> Option<String> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let cfg = match api.get_opt(&t.webhook_config_name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            out.push(Check::fail(
                "k8s.webhook",
                format!(
                    "MutatingWebhookConfiguration {} does not exist: no pod is injected",
                    t.webhook_config_name
                ),
                "install the Helm chart (it creates it), or run the operator with --webhook-url",
            ));
            return None;
        }
        Err(e) => {
            out.push(Check::fail(
                "k8s.webhook",
                format!(
                    "cannot read MutatingWebhookConfiguration {}: {e}",
                    t.webhook_config_name
                ),
                "grant this user `get` on mutatingwebhookconfigurations",
            ));
            return None;
        }
    };
    let hooks = cfg.webhooks.unwrap_or_default();
    let Some(bundle) = hooks
        .iter()
        .find_map(|h| h.client_config.ca_bundle.as_ref())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .filter(|b| !b.trim().is_empty())
    else {
        out.push(Check::fail(
            "k8s.webhook",
            format!("MutatingWebhookConfiguration {} has no caBundle: the API server cannot call the webhook", t.webhook_config_name),
            "start the operator (its leader writes the caBundle) and check its log for certificate errors",
        ));
        return None;
    };
    out.push(Check::ok(
        "k8s.webhook",
        format!("{} webhook(s), caBundle set", hooks.len()),
    ));
    Some(bundle)
}

/// Certificates compared by their base64 body, whatever the line breaks.
fn pem_bodies(bundle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in bundle.lines().map(str::trim) {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            cur = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
        }
    }
    out
}

async fn cert_checks(
    client: &kube::Client,
    t: &KubeTarget,
    bundle: Option<&str>,
    out: &mut Vec<Check>,
) {
    let api: Api<Secret> = Api::namespaced(client.clone(), &t.namespace);
    let secret = match api.get_opt(&t.secret_name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            out.push(Check::fail(
                "k8s.certificate",
                format!("Secret {}/{} does not exist", t.namespace, t.secret_name),
                "start the operator (it creates the Secret), or pass --operator-namespace for the namespace it runs in",
            ));
            return;
        }
        Err(e) => {
            out.push(Check::fail(
                "k8s.certificate",
                format!("cannot read Secret {}/{}: {e}", t.namespace, t.secret_name),
                "run doctor with credentials that may read the operator's namespace",
            ));
            return;
        }
    };
    let material = match Material::from_secret(&secret) {
        Ok(m) => m,
        Err(e) => {
            out.push(Check::fail(
                "k8s.certificate",
                format!("Secret {}/{}: {e}", t.namespace, secret.name_any()),
                "delete the Secret and restart the operator: it issues a new CA and certificate",
            ));
            return;
        }
    };
    if let Some(bundle) = bundle {
        let trusted = pem_bodies(bundle);
        let ca = material
            .current_ca()
            .map(|c| pem_bodies(&c))
            .unwrap_or_default();
        if ca.iter().all(|c| trusted.contains(c)) && !ca.is_empty() {
            out.push(Check::ok(
                "k8s.ca_bundle",
                "the caBundle trusts the CA of the serving certificate",
            ));
        } else {
            out.push(Check::fail(
                "k8s.ca_bundle",
                format!(
                    "the caBundle of {} does not hold the CA that issued the serving certificate in {}/{}: the API server rejects the webhook's TLS and pods are refused or not injected",
                    t.webhook_config_name, t.namespace, t.secret_name
                ),
                "restart the operator (its leader rewrites the caBundle within a minute); if something else manages the configuration (GitOps, a Helm value), stop it from overwriting caBundle",
            ));
        }
    }
    let left = material.serving_not_after - unix_now();
    let days = left / 86_400;
    out.push(if left <= 0 {
        Check::fail(
            "k8s.cert_expiry",
            "the serving certificate has expired",
            "restart the operator; if it does not renew, delete the Secret so it issues a new one",
        )
    } else if left < EXPIRY_WARN_SECS {
        Check::warn(
            "k8s.cert_expiry",
            format!("the serving certificate expires in {days} day(s)"),
            "the operator renews 30 days ahead: check that a replica holds the Lease and its log",
        )
    } else {
        Check::ok(
            "k8s.cert_expiry",
            format!("serving certificate valid for {days} more day(s)"),
        )
    });
}

async fn namespaces_check(client: &kube::Client) -> Check {
    let api: Api<Namespace> = Api::all(client.clone());
    let selector = format!("{LABEL_NAMESPACE_INJECTION}={NAMESPACE_INJECTION_ENABLED}");
    match api.list(&ListParams::default().labels(&selector)).await {
        Ok(l) if l.items.is_empty() => Check::warn(
            "k8s.namespaces",
            format!("no namespace is labelled {selector}: no pod is injected"),
            format!(
                "`kubectl label namespace NS {selector}` for each namespace that runs scorer jobs"
            ),
        ),
        Ok(l) => {
            let names: Vec<String> = l.items.iter().map(|n| n.name_any()).collect();
            Check::ok(
                "k8s.namespaces",
                format!(
                    "{} namespace(s) opted in: {}",
                    names.len(),
                    names.join(", ")
                ),
            )
        }
        Err(e) => Check::fail(
            "k8s.namespaces",
            format!("cannot list namespaces: {e}"),
            "grant this user `list` on namespaces",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::pem_bodies;

    #[test]
    fn certificates_compare_by_body_whatever_the_line_breaks() {
        let a = "-----BEGIN CERTIFICATE-----\nQUJD\nREVG\n-----END CERTIFICATE-----\n";
        let b = "  -----BEGIN CERTIFICATE-----\r\nQUJDREVG\r\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nWFla\n-----END CERTIFICATE-----";
        assert_eq!(pem_bodies(a), vec!["QUJDREVG".to_string()]);
        assert_eq!(
            pem_bodies(b),
            vec!["QUJDREVG".to_string(), "WFla".to_string()]
        );
        assert!(pem_bodies("not a pem").is_empty());
    }
}
