// SPDX-License-Identifier: Apache-2.0
//! Tests of the test control plane itself (scripts/testenv.sh, tests/k8s/):
//! the API serves CRDs, kube-controller-manager turns a Job into a Pod, a
//! mutating webhook on https://127.0.0.1:<port> (registered by
//! `clientConfig.url` + `caBundle`, as the operator does outside a cluster)
//! admits that Pod and its patch is applied, Helm installs a chart, and
//! `down` leaves no process behind.
//!
//! See tests/k8s/mod.rs for where the control plane comes from.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::support;
use crate::support::{TestEnv, eventually};

const FIELD_MANAGER: &str = "mlflow-secrets-testenv";
const INJECT_LABEL: &str = "secrets.mlflow.org/inject";
const MUTATED_ANNOTATION: &str = "testenv.mlflow-secrets.test/mutated";

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("well-formed test object")
}

/// The Kubernetes version scripts/testenv.sh pins.
fn pinned_kube_version() -> String {
    let script = std::fs::read_to_string(support::script()).expect("read scripts/testenv.sh");
    script
        .lines()
        .find_map(|l| l.strip_prefix("KUBE_VERSION="))
        .expect("KUBE_VERSION= in scripts/testenv.sh")
        .trim()
        .to_string()
}

#[tokio::test]
async fn apiserver_and_kubectl_report_the_pinned_version() {
    support::skip_if_off!();
    let env = TestEnv::get().await;
    let want = pinned_kube_version();

    let server = env
        .client()
        .await
        .apiserver_version()
        .await
        .expect("GET /version");
    assert_eq!(server.git_version, want, "server /version: {server:?}");
    assert_eq!(server.major, "1");
    assert_eq!(
        Some(server.minor.as_str()),
        want.split('.').nth(1),
        "server minor version"
    );

    let out = env
        .command("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output()
        .await
        .expect("run kubectl");
    assert!(out.status.success(), "kubectl version: {out:?}");
    let client: Value = serde_json::from_slice(&out.stdout).expect("kubectl version json");
    assert_eq!(client["clientVersion"]["gitVersion"], want.as_str());
}

#[tokio::test]
async fn applied_crd_serves_custom_resources() {
    support::skip_if_off!();
    let env = TestEnv::get().await;
    let ns = env.namespace("crd").await;
    let client = env.client().await;

    // Cluster-scoped and shared by every run against this control plane:
    // server-side apply makes applying it again a no-op. It is left installed.
    let crd: CustomResourceDefinition = from_json(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.testenv.mlflow-secrets.test" },
        "spec": {
            "group": "testenv.mlflow-secrets.test",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets", "singular": "widget",
                "kind": "Widget", "listKind": "WidgetList"
            },
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {
                                "size": { "type": "integer", "minimum": 1 },
                                "color": { "type": "string", "enum": ["red", "blue"] }
                            }
                        },
                        "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
                    }
                }}
            }]
        }
    }));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "widgets.testenv.mlflow-secrets.test",
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    support::wait_crd_established(
        &client,
        "widgets.testenv.mlflow-secrets.test",
        Duration::from_secs(30),
    )
    .await;

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("testenv.mlflow-secrets.test", "v1alpha1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ar);
    let widget: DynamicObject = from_json(json!({
        "apiVersion": "testenv.mlflow-secrets.test/v1alpha1",
        "kind": "Widget",
        "metadata": { "name": "first" },
        "spec": { "size": 3, "color": "red" }
    }));
    // Established can precede the handler of the new API by a moment.
    eventually(
        Duration::from_secs(30),
        "the Widget API to accept a create",
        || {
            let widgets = widgets.clone();
            let widget = widget.clone();
            async move {
                match widgets.create(&PostParams::default(), &widget).await {
                    Ok(w) => Some(w),
                    Err(kube::Error::Api(s)) if s.code == 404 => None,
                    Err(e) => panic!("creating a Widget: {e}"),
                }
            }
        },
    )
    .await;

    let got = widgets.get("first").await.expect("get Widget");
    assert_eq!(got.data["spec"], json!({ "size": 3, "color": "red" }));

    // The structural schema is enforced by the API server.
    let invalid: DynamicObject = from_json(json!({
        "apiVersion": "testenv.mlflow-secrets.test/v1alpha1",
        "kind": "Widget",
        "metadata": { "name": "invalid" },
        "spec": { "size": 0, "color": "green" }
    }));
    match widgets.create(&PostParams::default(), &invalid).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(s.message.contains("spec.size"), "{}", s.message);
            assert!(s.message.contains("spec.color"), "{}", s.message);
        }
        other => panic!("an invalid Widget was not rejected: {other:?}"),
    }

    ns.cleanup().await;
}

fn job_object(name: &str, pod_labels: Value, pod_annotations: Value) -> Job {
    from_json(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "template": {
                "metadata": { "labels": pod_labels, "annotations": pod_annotations },
                "spec": {
                    "restartPolicy": "Never",
                    // Never pulled: there is no kubelet.
                    "containers": [{ "name": "main", "image": "testenv/never-pulled:0" }]
                }
            }
        }
    }))
}

/// The Pod kube-controller-manager creates for Job `job`.
async fn pod_of_job(pods: &Api<Pod>, job: &str) -> Pod {
    let selector = format!("batch.kubernetes.io/job-name={job}");
    eventually(
        Duration::from_secs(60),
        &format!("a Pod of Job {job}"),
        || {
            let pods = pods.clone();
            let lp = ListParams::default().labels(&selector);
            async move { pods.list(&lp).await.ok()?.items.into_iter().next() }
        },
    )
    .await
}

#[tokio::test]
async fn job_creates_pod_and_finishes_when_its_pod_succeeds() {
    support::skip_if_off!();
    let env = TestEnv::get().await;
    let ns = env.namespace("job").await;
    let client = env.client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());

    let job = jobs
        .create(
            &PostParams::default(),
            &job_object("scorer", json!({ "app": "scorer" }), json!({})),
        )
        .await
        .expect("create Job");
    let pod = pod_of_job(&pods, "scorer").await;

    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .expect("the Pod has an owner");
    assert_eq!(owner.kind, "Job");
    assert_eq!(owner.name, "scorer");
    assert_eq!(Some(&owner.uid), job.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    // No scheduler, no kubelet: the Pod stays unbound and Pending.
    let spec = pod.spec.as_ref().expect("pod spec");
    assert_eq!(spec.node_name, None);
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    // The ServiceAccount admission plugin ran: a projected token volume.
    assert!(
        spec.volumes
            .iter()
            .flatten()
            .any(|v| v.name.starts_with("kube-api-access-")),
        "no service-account token volume on {:?}",
        spec.volumes
    );

    // Finish the Job the only way there is without a kubelet.
    let pod_name = pod.metadata.name.clone().expect("pod name");
    ns.set_pod_phase(&pod_name, "Succeeded").await;
    eventually(Duration::from_secs(60), "the Job to complete", || {
        let jobs = jobs.clone();
        async move {
            let status = jobs.get("scorer").await.ok()?.status?;
            let complete = status
                .conditions?
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True");
            (complete && status.succeeded == Some(1)).then_some(())
        }
    })
    .await;

    ns.cleanup().await;
}

// --- mutating webhook ---------------------------------------------------------

/// A mutating admission webhook served over TLS on 127.0.0.1 by this test.
struct Webhook {
    url: String,
    ca_pem: String,
    /// `request` of every AdmissionReview received.
    seen: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    async fn start() -> Webhook {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        // A CA of its own, as the operator has; its PEM is the caBundle.
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mlflow-secrets testenv webhook CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("serving key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("serving params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .expect("serving certificate");

        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut tls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("TLS server config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind webhook listener");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = service_fn(move |req| handle_admission(req, seen.clone()));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        });
        Webhook {
            url: format!("https://127.0.0.1:{port}/mutate"),
            ca_pem: ca_cert.pem(),
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Escape a key for a JSON Pointer (RFC 6901).
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSONPatch this webhook applies to a Pod: an annotation, and an env var
/// on its first container.
fn pod_patch(pod: &Value) -> Value {
    let mut ops = Vec::new();
    if pod["metadata"]["annotations"].is_object() {
        ops.push(json!({
            "op": "add",
            "path": format!("/metadata/annotations/{}", pointer_escape(MUTATED_ANNOTATION)),
            "value": "true"
        }));
    } else {
        ops.push(json!({
            "op": "add", "path": "/metadata/annotations",
            "value": { MUTATED_ANNOTATION: "true" }
        }));
    }
    let var = json!({ "name": "TESTENV_INJECTED", "value": "yes" });
    if pod["spec"]["containers"][0]["env"].is_array() {
        ops.push(json!({ "op": "add", "path": "/spec/containers/0/env/-", "value": var }));
    } else {
        ops.push(json!({ "op": "add", "path": "/spec/containers/0/env", "value": [var] }));
    }
    Value::Array(ops)
}

async fn handle_admission(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Value>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        Ok(resp)
    };
    if req.uri().path() != "/mutate" {
        return reply(StatusCode::NOT_FOUND, b"{}".to_vec());
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, b"{}".to_vec()),
    };
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return reply(StatusCode::BAD_REQUEST, b"{}".to_vec());
    };
    let request = review["request"].clone();
    seen.lock().expect("lock").push(request.clone());
    let patch = serde_json::to_vec(&pod_patch(&request["object"])).expect("patch json");
    let response = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": request["uid"],
            "allowed": true,
            "patchType": "JSONPatch",
            "patch": base64::engine::general_purpose::STANDARD.encode(patch),
        }
    });
    reply(
        StatusCode::OK,
        serde_json::to_vec(&response).expect("response json"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_webhook_by_url_patches_the_pod_of_a_job() {
    support::skip_if_off!();
    let env = TestEnv::get().await;
    let ns = env.namespace("webhook").await;
    let client = env.client().await;
    let webhook = Webhook::start().await;

    // Owned by the test namespace, so the garbage collector removes the
    // configuration with the namespace even when this test fails midway.
    let ns_uid = Api::<Namespace>::all(client.clone())
        .get(ns.name())
        .await
        .expect("get namespace")
        .metadata
        .uid
        .expect("namespace uid");
    let mwc_name = format!("testenv-{}", ns.name());
    let mwc: MutatingWebhookConfiguration = from_json(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": mwc_name,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Namespace", "name": ns.name(), "uid": ns_uid
            }]
        },
        "webhooks": [{
            "name": "pods.testenv.mlflow-secrets.test",
            "clientConfig": {
                "url": webhook.url,
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&webhook.ca_pem),
            },
            "rules": [{
                "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods"], "scope": "Namespaced"
            }],
            // Only this test's namespace, and only labelled Pods, as the
            // product's webhook is scoped.
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns.name() } },
            "objectSelector": { "matchLabels": { INJECT_LABEL: "true" } },
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10
        }]
    }));
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    mwcs.create(&PostParams::default(), &mwc)
        .await
        .expect("create MutatingWebhookConfiguration");

    // The API server picks up a new configuration asynchronously: wait until
    // a dry-run create of a labelled Pod comes back patched.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let probe: Pod = from_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "probe", "labels": { INJECT_LABEL: "true" } },
        "spec": { "containers": [{ "name": "main", "image": "testenv/never-pulled:0" }] }
    }));
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(Duration::from_secs(30), "the webhook to be called", || {
        let (pods, probe, dry_run) = (pods.clone(), probe.clone(), dry_run.clone());
        async move {
            let pod = pods.create(&dry_run, &probe).await.ok()?;
            pod.metadata
                .annotations?
                .contains_key(MUTATED_ANNOTATION)
                .then_some(())
        }
    })
    .await;

    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    jobs.create(
        &PostParams::default(),
        &job_object(
            "scorer",
            json!({ INJECT_LABEL: "true" }),
            json!({ "secrets.mlflow.org/resource-id": "job-1" }),
        ),
    )
    .await
    .expect("create Job");
    let pod = pod_of_job(&pods, "scorer").await;
    let pod_name = pod.metadata.name.clone().expect("pod name");

    // The patch is in the stored Pod.
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(MUTATED_ANNOTATION).map(String::as_str),
        Some("true"),
        "{annotations:?}"
    );
    assert_eq!(
        annotations
            .get("secrets.mlflow.org/resource-id")
            .map(String::as_str),
        Some("job-1")
    );
    let env_vars = pod.spec.as_ref().expect("spec").containers[0]
        .env
        .clone()
        .unwrap_or_default();
    assert!(
        env_vars
            .iter()
            .any(|e| e.name == "TESTENV_INJECTED" && e.value.as_deref() == Some("yes")),
        "{env_vars:?}"
    );

    // The webhook saw the real (not dry-run) admission of that Pod, created
    // by kube-controller-manager for the Job, with the Job as its owner.
    let seen = webhook.seen();
    let request = seen
        .iter()
        .find(|r| {
            r["dryRun"] != json!(true)
                && r["object"]["metadata"]["generateName"] == json!("scorer-")
        })
        .unwrap_or_else(|| panic!("the webhook never saw the Job's Pod; it saw {seen:#?}"));
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["namespace"], ns.name());
    assert_eq!(
        request["kind"],
        json!({ "group": "", "version": "v1", "kind": "Pod" })
    );
    assert_eq!(
        request["object"]["metadata"]["ownerReferences"][0]["kind"],
        "Job"
    );
    assert!(
        request["userInfo"]["username"]
            .as_str()
            .is_some_and(|u| u.contains("job-controller")),
        "Pod not created by the job controller: {}",
        request["userInfo"]
    );
    assert!(pod_name.starts_with("scorer-"));

    // An unlabelled Pod is not sent to the webhook (objectSelector).
    let plain: Pod = from_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "plain" },
        "spec": { "containers": [{ "name": "main", "image": "testenv/never-pulled:0" }] }
    }));
    let plain = pods
        .create(&PostParams::default(), &plain)
        .await
        .expect("create unlabelled Pod");
    assert!(
        !plain
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(MUTATED_ANNOTATION)
    );
    assert!(
        !webhook
            .seen()
            .iter()
            .any(|r| r["object"]["metadata"]["name"] == json!("plain")),
        "the webhook saw an unlabelled Pod"
    );

    mwcs.delete(&mwc_name, &DeleteParams::default())
        .await
        .expect("delete MutatingWebhookConfiguration");
    ns.cleanup().await;
}

// --- helm ---------------------------------------------------------------------

#[tokio::test]
async fn helm_installs_a_minimal_chart() {
    support::skip_if_off!();
    let env = TestEnv::get().await;
    let ns = env.namespace("helm").await;
    let client = env.client().await;
    let chart = support::repo_root().join("tests/fixtures/minimal-chart");
    // Helm keeps no state outside this directory.
    let home = tempfile::tempdir().expect("temp dir");
    let helm = |args: &[&str]| {
        let mut cmd = env.command("helm");
        cmd.args(args)
            .args(["--namespace", ns.name()])
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data"));
        cmd
    };
    let run = |mut cmd: tokio::process::Command, what: &'static str| async move {
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{what} timed out"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let chart_path = chart.to_str().expect("utf-8 path");
    run(
        helm(&[
            "install",
            "minimal",
            chart_path,
            "--set",
            "greeting=hello from a test",
            "--wait",
            "--timeout",
            "60s",
        ]),
        "helm install",
    )
    .await;

    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns.name())
        .get("minimal-info")
        .await
        .expect("the chart's ConfigMap");
    let data: BTreeMap<String, String> = cm.data.unwrap_or_default();
    assert_eq!(
        data.get("greeting").map(String::as_str),
        Some("hello from a test")
    );
    // .Capabilities come from the API server: the version ldflags are right.
    let server = client.apiserver_version().await.expect("GET /version");
    assert_eq!(data.get("kubeVersion"), Some(&server.git_version));
    assert_eq!(data.get("hasBatchV1Job").map(String::as_str), Some("true"));

    let list = run(helm(&["list", "-o", "json"]), "helm list").await;
    let releases: Value = serde_json::from_str(&list).expect("helm list json");
    assert_eq!(releases[0]["name"], "minimal", "{releases}");
    assert_eq!(releases[0]["status"], "deployed", "{releases}");

    run(helm(&["uninstall", "minimal", "--wait"]), "helm uninstall").await;
    let gone = Api::<ConfigMap>::namespaced(client, ns.name())
        .get_opt("minimal-info")
        .await
        .expect("get ConfigMap");
    assert!(gone.is_none(), "uninstall left the ConfigMap");

    ns.cleanup().await;
}

// --- down ---------------------------------------------------------------------

/// `scripts/testenv.sh selftest` starts a second control plane in a run
/// directory of its own, stops it with `down`, and fails if any of its
/// processes or its data directory is left.
#[tokio::test]
async fn down_leaves_no_process() {
    support::skip_if_off!();
    // Makes sure the binaries are built (and fails loudly when they are not
    // and cannot be).
    let _ = TestEnv::get().await;
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("bash")
            .arg(support::script())
            .arg("selftest")
            .env_remove("MLFLOW_SECRETS_TESTENV_DIR")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("selftest timed out")
    .expect("run scripts/testenv.sh selftest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("selftest: ok"),
        "selftest failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
