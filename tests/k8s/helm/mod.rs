// SPDX-License-Identifier: Apache-2.0
//! The Helm chart `charts/mlflow-secrets` (docs/design.md §8):
//! `helm lint --strict`, `helm template` with the default values, the
//! PostgreSQL example values and the optional NetworkPolicy/ServiceMonitor,
//! the refusal of several replicas on SQLite, the chart's CRDs equal to
//! `crds/`, and a real `helm install` against the shared test control plane.
//!
//! The rendered manifests are parsed (serde-saphyr into serde_json::Value)
//! and checked field by field: the restricted securityContext, the one
//! projected volume carrying both the keystore and the passphrases, the
//! webhook's selectors and policies, and least-privilege RBAC.
//!
//! The installed MutatingWebhookConfiguration fails closed, so the install
//! test narrows its namespaceSelector to a label no other namespace has:
//! other tests' pods are never sent to it. Everything cluster-scoped it
//! creates carries the unique release name and is removed by `helm
//! uninstall` (also when the test fails, from a drop guard). The CRDs are
//! shared by every test and are left in place.

mod checks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support;
use crate::support::{TestEnv, unique_name};
use checks::{
    WEBHOOK_NAME, check_deployment, check_rbac, check_webhook, env_var, kinds, one, parse_manifests,
};

/// The message the chart fails with for replicas > 1 on SQLite.
const SQLITE_REPLICAS_MESSAGE: &str = "SQLite supports exactly one operator replica";

fn chart_dir() -> PathBuf {
    support::repo_root().join("charts").join("mlflow-secrets")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Helm with a private home (it keeps no state outside it) and the control
/// plane's kubeconfig.
struct Helm {
    env: &'static TestEnv,
    home: tempfile::TempDir,
}

impl Helm {
    async fn new() -> Helm {
        Helm {
            env: TestEnv::get().await,
            home: tempfile::tempdir().expect("temp dir for helm"),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.env.command("helm");
        cmd.args(args)
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"));
        cmd
    }

    /// Runs helm; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(120), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("helm {args:?} timed out"))
            .unwrap_or_else(|e| panic!("running helm {args:?}: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "helm {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    /// `helm template` of the chart as release `rel` in namespace `ns`,
    /// parsed into one JSON value per manifest.
    async fn template(&self, rel: &str, ns: &str, extra: &[&str]) -> Vec<Value> {
        let chart = chart_dir();
        let mut args = vec!["template", rel, path_str(&chart), "--namespace", ns];
        args.extend_from_slice(extra);
        parse_manifests(&self.ok(&args).await)
    }
}

// --- lint and template ---------------------------------------------------------

#[tokio::test]
async fn chart_lints_strictly() {
    support::skip_if_off!();
    let helm = Helm::new().await;
    let chart = chart_dir();
    let postgres = support::repo_root().join("examples/values-postgres.yaml");
    let out = helm.ok(&["lint", "--strict", path_str(&chart)]).await;
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let out = helm
        .ok(&[
            "lint",
            "--strict",
            path_str(&chart),
            "-f",
            path_str(&postgres),
        ])
        .await;
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[tokio::test]
async fn template_with_default_values_is_one_sqlite_replica() {
    support::skip_if_off!();
    let helm = Helm::new().await;
    let docs = helm.template("rel", "ops", &[]).await;
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ],
        "no PDB or ServiceMonitor by default; the NetworkPolicy is on"
    );
    let fullname = "rel-mlflow-secrets";
    check_deployment(&docs, fullname);
    check_rbac(&docs, fullname);
    let w = check_webhook(one(&docs, "MutatingWebhookConfiguration"), fullname, "ops");
    // helm template has no cluster to look up a live caBundle in.
    assert!(w["clientConfig"].get("caBundle").is_none());

    let dep = one(&docs, "Deployment");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(dep["spec"]["strategy"]["type"], "Recreate");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_var(c, "MLFLOW_SECRETS_STORE_URI")["value"],
        "sqlite:///data/mlflow-secrets.db"
    );
    let pvc = one(&docs, "PersistentVolumeClaim");
    let volumes = dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| { v["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] })
    );
    assert_eq!(
        pvc["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    let svc = one(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "https");
    assert_eq!(svc["spec"]["ports"][1]["targetPort"], "metrics");
    // On by default: the webhook port and the metrics port, separately.
    let np = one(&docs, "NetworkPolicy");
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], "https");
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], "metrics");
}

/// `rbac.namespaces`: a Role and RoleBinding per namespace, a ClusterRole
/// with only the webhook configuration rule, the certificate Secret's Role
/// in the release namespace, `--watch-namespaces`, and a webhook limited to
/// those namespaces.
#[tokio::test]
async fn template_with_rbac_namespaces_renders_a_role_per_namespace() {
    support::skip_if_off!();
    let helm = Helm::new().await;
    let fullname = "rel-mlflow-secrets";
    let docs = helm
        .template("rel", "ops", &["--set", "rbac.namespaces={team-a,team-b}"])
        .await;
    let cr = one(&docs, "ClusterRole");
    let cluster_rules = cr["rules"].as_array().unwrap();
    // Only two cluster-scoped things, each by name: the listed namespaces
    // (read, for the webhook's opt-in check) and this release's webhook
    // configuration.
    assert_eq!(cluster_rules.len(), 2, "{cluster_rules:?}");
    assert_eq!(cluster_rules[0]["resources"], json!(["namespaces"]));
    assert_eq!(
        cluster_rules[0]["resourceNames"],
        json!(["team-a", "team-b"])
    );
    assert_eq!(cluster_rules[0]["verbs"], json!(["get", "list", "watch"]));
    assert_eq!(
        cluster_rules[1]["resources"],
        json!(["mutatingwebhookconfigurations"])
    );
    assert_eq!(cluster_rules[1]["resourceNames"], json!([fullname]));
    let of = |kind: &str, name: &str| -> Vec<&Value> {
        docs.iter()
            .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .collect()
    };
    let roles = of("Role", fullname);
    let mut namespaces: Vec<&str> = roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    namespaces.sort_unstable();
    assert_eq!(namespaces, ["team-a", "team-b"]);
    for role in &roles {
        let rules = role["rules"].as_array().unwrap();
        checks::check_rules(rules);
        for (g, res, v) in checks::WORKLOAD_GRANTS {
            assert!(
                checks::grants(rules, g, res, v),
                "Role lacks {v} on {g}/{res}"
            );
        }
    }
    let bindings = of("RoleBinding", fullname);
    assert_eq!(bindings.len(), 2);
    for b in bindings {
        assert_eq!(b["roleRef"]["kind"], "Role");
        assert_eq!(b["subjects"][0]["namespace"], "ops");
    }
    let tls = of("Role", &format!("{fullname}-webhook-tls"));
    assert_eq!(tls.len(), 1);
    assert_eq!(tls[0]["metadata"]["namespace"], "ops");
    assert_eq!(
        tls[0]["rules"][0]["resourceNames"],
        json!(["mlflow-secrets-webhook-tls"])
    );
    let dep = one(&docs, "Deployment");
    let args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert!(
        args.contains(&json!("--watch-namespaces=team-a,team-b")),
        "{args:?}"
    );
    let w = check_webhook(one(&docs, "MutatingWebhookConfiguration"), fullname, "ops");
    assert!(
        w["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap()
            .contains(&json!({
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["team-a", "team-b"]
            })),
        "{w}"
    );

    // Cluster-wide by default: no flag, no namespace list.
    let docs = helm.template("rel", "ops", &[]).await;
    let dep = one(&docs, "Deployment");
    let args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert!(
        !args
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("--watch-namespaces"))
    );
    assert!(
        !one(&docs, "MutatingWebhookConfiguration")
            .to_string()
            .contains("\"In\"")
    );
}

#[tokio::test]
async fn template_with_postgres_values_has_two_replicas_and_a_pdb() {
    support::skip_if_off!();
    let helm = Helm::new().await;
    let values = support::repo_root().join("examples/values-postgres.yaml");
    let docs = helm
        .template("mlflow-secrets", "ops", &["-f", path_str(&values)])
        .await;
    // A release named like the chart is not doubled.
    let fullname = "mlflow-secrets";
    check_deployment(&docs, fullname);
    check_rbac(&docs, fullname);
    check_webhook(one(&docs, "MutatingWebhookConfiguration"), fullname, "ops");
    assert!(!kinds(&docs).contains(&"PersistentVolumeClaim"));

    let dep = one(&docs, "Deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(
        dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let uri = env_var(c, "MLFLOW_SECRETS_STORE_URI");
    assert!(
        uri.get("value").is_none(),
        "the URL must come from a Secret"
    );
    assert_eq!(
        uri["valueFrom"]["secretKeyRef"],
        json!({ "name": "mlflow-secrets-db", "key": "url" })
    );
    // The example's spread constraint gets the pods' own selector.
    let spread = &dep["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(
        spread["labelSelector"]["matchLabels"],
        dep["spec"]["selector"]["matchLabels"]
    );
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        dep["spec"]["selector"]["matchLabels"]
    );
    let np = one(&docs, "NetworkPolicy");
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], "https");
}

#[tokio::test]
async fn template_with_network_policy_and_service_monitor() {
    support::skip_if_off!();
    let helm = Helm::new().await;
    let docs = helm
        .template(
            "rel",
            "ops",
            &[
                "--set",
                "networkPolicy.enabled=true",
                "--set",
                "serviceMonitor.enabled=true",
            ],
        )
        .await;
    check_deployment(&docs, "rel-mlflow-secrets");
    let np = one(&docs, "NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        np["spec"]["ingress"],
        json!([
            { "ports": [{ "port": "https", "protocol": "TCP" }] },
            { "ports": [{ "port": "metrics", "protocol": "TCP" }] }
        ])
    );
    let egress_ports: Vec<&Value> = np["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_array().unwrap())
        .map(|p| &p["port"])
        .collect();
    assert!(egress_ports.contains(&&json!(53)));
    assert!(egress_ports.contains(&&json!(6443)));
    // SQLite: no database port is opened.
    assert!(!egress_ports.contains(&&json!(5432)));

    // With a client CA: mounted, and the webhook port requires it.
    let docs_ca = helm
        .template(
            "rel",
            "ops",
            &["--set", "webhook.clientCA.secretName=apiserver-webhook-ca"],
        )
        .await;
    let c = &one(&docs_ca, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        c["args"].as_array().unwrap().contains(&json!(
            "--webhook-client-ca=/etc/mlflow-webhook-client-ca/ca.crt"
        )),
        "{c}"
    );
    let vols = &one(&docs_ca, "Deployment")["spec"]["template"]["spec"]["volumes"];
    assert!(
        vols.as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "apiserver-webhook-ca"),
        "{vols}"
    );

    let sm = one(&docs, "ServiceMonitor");
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["scheme"], "https");
    assert_eq!(ep["port"], "metrics");
    assert_eq!(ep["path"], "/metrics");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        one(&docs, "Service")["spec"]["selector"]
    );
}

#[tokio::test]
async fn template_refuses_several_replicas_on_sqlite() {
    support::skip_if_off!();
    let helm = Helm::new().await;
    let chart = chart_dir();
    let (ok, _, stderr) = helm
        .run(&[
            "template",
            "rel",
            path_str(&chart),
            "--set",
            "replicaCount=2",
        ])
        .await;
    assert!(!ok, "replicaCount=2 with SQLite rendered");
    assert!(stderr.contains(SQLITE_REPLICAS_MESSAGE), "{stderr}");
    // The same count with a database URL is fine.
    helm.template(
        "rel",
        "ops",
        &[
            "--set",
            "replicaCount=3",
            "--set",
            "database.urlSecret.name=db",
        ],
    )
    .await;
    // And the chart refuses clusters older than its kubeVersion.
    let (ok, _, stderr) = helm
        .run(&[
            "template",
            "rel",
            path_str(&chart),
            "--kube-version",
            "1.29.0",
        ])
        .await;
    assert!(!ok && stderr.contains("kubeVersion"), "{stderr}");
}

#[tokio::test]
async fn template_refuses_values_outside_the_schema() {
    support::skip_if_off!();
    let helm = Helm::new().await;
    let chart = chart_dir();
    for (set, path) in [
        ("logFormat=xml", "/logFormat"),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("webhook.failurePolicy=Maybe", "/webhook/failurePolicy"),
        ("keystore.secretName=", "/keystore/secretName"),
    ] {
        let (ok, _, stderr) = helm
            .run(&["template", "rel", path_str(&chart), "--set", set])
            .await;
        assert!(!ok, "--set {set} rendered");
        assert!(stderr.contains(path), "--set {set}: {stderr}");
    }
}

/// The chart ships the CRDs `mlflow-secrets crdgen` generates, unchanged.
fn assert_chart_crds_match_repo() {
    let read = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (generate it with `mlflow-secrets crdgen --output-dir crds/`)",
                    dir.display()
                )
            })
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.is_file())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).expect("read CRD file"))
            })
            .collect();
        files.sort();
        files
    };
    let repo = read(&support::repo_root().join("crds"));
    let chart = read(&chart_dir().join("crds"));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert!(!repo.is_empty(), "crds/ is empty");
    assert_eq!(
        names(&chart),
        names(&repo),
        "charts/mlflow-secrets/crds/ vs crds/"
    );
    for ((name, a), (_, b)) in chart.iter().zip(&repo) {
        assert!(
            a == b,
            "charts/mlflow-secrets/crds/{name} differs from crds/{name}: copy crds/ into the chart"
        );
    }
}

#[test]
fn chart_crds_equal_the_generated_crds() {
    assert_chart_crds_match_repo();
}

// --- install -------------------------------------------------------------------

/// Removes a release and whatever cluster-scoped objects it made when the
/// test ends early (a panic): a leftover MutatingWebhookConfiguration that
/// fails closed must not outlive the test.
struct ReleaseGuard<'a> {
    helm: &'a Helm,
    release: String,
    namespace: String,
    fullname: String,
    done: bool,
}

impl Drop for ReleaseGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let helm = self.helm.env.bin_dir().join("helm");
        let kubectl = self.helm.env.bin_dir().join("kubectl");
        let kubeconfig = self.helm.env.kubeconfig_path();
        let _ = std::process::Command::new(helm)
            .args(["uninstall", &self.release, "--namespace", &self.namespace])
            .args(["--wait", "--timeout", "60s"])
            .env("KUBECONFIG", kubeconfig)
            .env("HELM_CACHE_HOME", self.helm.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.helm.home.path().join("config"))
            .env("HELM_DATA_HOME", self.helm.home.path().join("data"))
            .status();
        for kind in [
            "mutatingwebhookconfiguration",
            "clusterrole",
            "clusterrolebinding",
        ] {
            let _ = std::process::Command::new(&kubectl)
                .args(["delete", kind, &self.fullname, "--ignore-not-found"])
                .env("KUBECONFIG", kubeconfig)
                .status();
        }
    }
}

/// `kubectl apply --dry-run=server` of an example manifest, moved into `ns`.
async fn dry_run_example(env: &TestEnv, ns: &str, file: &str) -> Result<String, String> {
    use tokio::io::AsyncWriteExt as _;
    let text = std::fs::read_to_string(support::repo_root().join("examples").join(file))
        .unwrap_or_else(|e| panic!("examples/{file}: {e}"));
    let text = text.replace("namespace: ml-scoring", &format!("namespace: {ns}"));
    let mut cmd = env.command("kubectl");
    cmd.args(["apply", "--dry-run=server", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kubectl");
    let mut stdin = child.stdin.take().expect("kubectl stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("write manifest");
    drop(stdin);
    let out = child.wait_with_output().await.expect("kubectl apply");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn to_value<T: serde::Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("object as JSON")
}

#[tokio::test]
async fn helm_install_creates_the_chart_objects() {
    support::skip_if_off!();
    // Helm installs the chart's CRDs when they are missing, and they are
    // shared by every test: only ever the generated ones.
    assert_chart_crds_match_repo();

    let env = TestEnv::get().await;
    let ns = env.namespace("helm-chart").await;
    let helm = Helm::new().await;
    let client = env.client().await;
    let release = unique_name("mlsec");
    let fullname = format!("{release}-mlflow-secrets");
    // The webhook only selects namespaces carrying this label, and none
    // does: the installed configuration never sees another test's pod.
    let only_label = format!("mlflow-secrets.test/webhook-{release}");

    // A database URL (never connected to: there is no kubelet) gives the
    // two-replica shape with its PodDisruptionBudget.
    let url_secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "test-db" },
        "stringData": { "url": "postgres://mlflow@db.invalid:5432/mlflow" }
    }))
    .expect("Secret");
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &url_secret)
        .await
        .expect("create the URL Secret");
    let values = json!({
        "database": { "urlSecret": { "name": "test-db", "key": "url" } },
        "networkPolicy": { "enabled": true },
        "webhook": { "namespaceSelector": { "matchLabels": { only_label.clone(): "true" } } }
    });
    let values_file = helm.home.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).expect("write values");
    let chart = chart_dir();
    let install_args = [
        release.as_str(),
        path_str(&chart),
        "--namespace",
        ns.name(),
        "-f",
        path_str(&values_file),
        "--timeout",
        "90s",
    ];
    let mut guard = ReleaseGuard {
        helm: &helm,
        release: release.clone(),
        namespace: ns.name().to_string(),
        fullname: fullname.clone(),
        done: false,
    };
    helm.ok(&[&["install"], &install_args[..]].concat()).await;

    // The objects exist and are what the chart rendered.
    let dep = Api::<Deployment>::namespaced(client.clone(), ns.name())
        .get(&fullname)
        .await
        .expect("the Deployment");
    let dep = to_value(&dep);
    assert_eq!(dep["spec"]["replicas"], 2);
    check_deployment(std::slice::from_ref(&dep), &fullname);
    let svc = Api::<Service>::namespaced(client.clone(), ns.name())
        .get(&fullname)
        .await
        .expect("the Service");
    assert_eq!(to_value(&svc)["spec"]["ports"][0]["port"], 443);
    Api::<ServiceAccount>::namespaced(client.clone(), ns.name())
        .get(&fullname)
        .await
        .expect("the ServiceAccount");
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns.name())
        .get(&fullname)
        .await
        .expect("the PodDisruptionBudget");
    assert_eq!(to_value(&pdb)["spec"]["minAvailable"], 1);
    Api::<NetworkPolicy>::namespaced(client.clone(), ns.name())
        .get(&fullname)
        .await
        .expect("the NetworkPolicy");
    let role = Api::<Role>::namespaced(client.clone(), ns.name())
        .get(&format!("{fullname}-leader-election"))
        .await
        .expect("the leader-election Role");
    let cr = Api::<ClusterRole>::all(client.clone())
        .get(&fullname)
        .await
        .expect("the ClusterRole");
    check_rbac(&[to_value(&cr), to_value(&role)], &fullname);
    let crb = Api::<ClusterRoleBinding>::all(client.clone())
        .get(&fullname)
        .await
        .expect("the ClusterRoleBinding");
    assert_eq!(
        to_value(&crb)["subjects"],
        json!([{ "kind": "ServiceAccount", "name": fullname, "namespace": ns.name() }])
    );
    Api::<RoleBinding>::namespaced(client.clone(), ns.name())
        .get(&format!("{fullname}-leader-election"))
        .await
        .expect("the leader-election RoleBinding");
    let mwcs = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let mwc = to_value(
        &mwcs
            .get(&fullname)
            .await
            .expect("the webhook configuration"),
    );
    let w = check_webhook(&mwc, &fullname, ns.name());
    assert_eq!(
        w["namespaceSelector"]["matchLabels"],
        json!({ only_label.clone(): "true", "secrets.mlflow.org/injection": "enabled" }),
        "the opt-in label, narrowed by the values' matchLabels"
    );

    // The CRDs are served, and the examples are valid against them.
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for name in [
        "mlflowsecrets.secrets.mlflow.org",
        "mlflowsecretbindings.secrets.mlflow.org",
    ] {
        support::wait_crd_established(&client, name, Duration::from_secs(30)).await;
    }
    for file in [
        "namespace.yaml",
        "mlflowsecret.yaml",
        "mlflowsecretbinding.yaml",
        "azure-credential.yaml",
        "scorer-job.yaml",
    ] {
        let mut last = String::new();
        let mut accepted = false;
        for _ in 0..30 {
            match dry_run_example(env, ns.name(), file).await {
                Ok(_) => {
                    accepted = true;
                    break;
                }
                // kubectl's discovery may not know a just-created CRD yet.
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(accepted, "examples/{file} was refused: {last}");
    }

    // The operator owns caBundle: an upgrade keeps the live one.
    let ca_bundle =
        ByteString(b"-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n".to_vec());
    mwcs.patch(
        &fullname,
        &PatchParams::default(),
        &Patch::Strategic(json!({
            "webhooks": [{ "name": WEBHOOK_NAME, "clientConfig": { "caBundle": ca_bundle } }]
        })),
    )
    .await
    .expect("set caBundle as the operator would");
    helm.ok(&[&["upgrade"], &install_args[..]].concat()).await;
    let after = mwcs.get(&fullname).await.expect("webhook configuration");
    assert_eq!(
        after.webhooks.as_deref().unwrap_or_default()[0]
            .client_config
            .ca_bundle
            .as_ref(),
        Some(&ca_bundle),
        "helm upgrade lost the operator's caBundle"
    );

    // Uninstall removes the cluster-scoped objects; the shared CRDs stay.
    helm.ok(&[
        "uninstall",
        &release,
        "--namespace",
        ns.name(),
        "--wait",
        "--timeout",
        "60s",
    ])
    .await;
    guard.done = true;
    assert!(mwcs.get_opt(&fullname).await.expect("get").is_none());
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&fullname)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        Api::<ClusterRoleBinding>::all(client.clone())
            .get_opt(&fullname)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        crds.get_opt("mlflowsecrets.secrets.mlflow.org")
            .await
            .expect("get")
            .is_some()
    );
    drop(guard);
    ns.cleanup().await;
}
