// SPDX-License-Identifier: Apache-2.0
//! What every rendering of the chart must satisfy, shared by the `helm
//! template` tests and the check of the installed objects in
//! tests/k8s/helm/mod.rs: the restricted securityContext, the projected keystore
//! volume, the webhook's contract (docs/design.md §8) and least-privilege RBAC.

use serde_json::{Value, json};

/// The name of the chart's one webhook.
pub const WEBHOOK_NAME: &str = "inject.secrets.mlflow.org";

pub fn parse_manifests(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("rendered manifests are not YAML: {e}\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

pub fn kinds(docs: &[Value]) -> Vec<&str> {
    let mut k: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    k.sort_unstable();
    k
}

pub fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, got {:?}", kinds(docs));
    found[0]
}

pub fn env_var<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("env {name} missing: {}", container["env"]))
}

/// The checks every rendering of the Deployment must pass, whatever the
/// values: the restricted securityContext, the probes, the downward API
/// env, the projected keystore volume and the operator's flags naming the
/// chart's own objects.
pub fn check_deployment(docs: &[Value], fullname: &str) {
    let dep = one(docs, "Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];

    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{sc}");
    assert_eq!(sc["runAsUser"], 65532, "{sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    assert!(sc["capabilities"].get("add").is_none(), "{sc}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");

    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(
            get["port"], "metrics",
            "{probe}: probes are not on the webhook port"
        );
    }
    assert_eq!(c["ports"][0]["name"], "https");
    assert_eq!(c["ports"][0]["containerPort"], 8443);
    assert_eq!(c["ports"][1]["name"], "metrics");
    assert_eq!(c["ports"][1]["containerPort"], 9443);

    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            env_var(c, name)["valueFrom"]["fieldRef"]["fieldPath"],
            field
        );
    }
    assert_eq!(
        env_var(c, "MLFLOW_SECRETS_KEYSTORE_PATH")["value"],
        "/etc/mlflow/keystore"
    );
    assert_eq!(
        env_var(c, "MLFLOW_SECRETS_KEK_PASSPHRASE_FILE")["value"],
        "/etc/mlflow/kek-passphrase"
    );

    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "operator", "{args:?}");
    for want in [
        format!("--webhook-config-name={fullname}"),
        format!("--service-name={fullname}"),
        "--webhook-listen=0.0.0.0:8443".to_string(),
        "--metrics-listen=0.0.0.0:9443".to_string(),
        "--log-format=json".to_string(),
    ] {
        assert!(args.contains(&want.as_str()), "{want} not in {args:?}");
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--webhook-url")),
        "the chart must not set --webhook-url: {args:?}"
    );

    // One projected volume at /etc/mlflow, both Secrets mapped into their
    // own directories by items (no subPath: subPath mounts never update).
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert!(
        mounts.iter().all(|m| m.get("subPath").is_none()),
        "{mounts:?}"
    );
    let kek_mount = mounts
        .iter()
        .find(|m| m["mountPath"] == "/etc/mlflow")
        .expect("a mount at /etc/mlflow");
    assert_eq!(kek_mount["readOnly"], true);
    assert!(
        mounts.iter().any(|m| m["mountPath"] == "/tmp"),
        "no /tmp mount"
    );
    let volumes = pod["volumes"].as_array().expect("volumes");
    let kek = volumes
        .iter()
        .find(|v| v["name"] == kek_mount["name"])
        .expect("the /etc/mlflow volume");
    let sources = kek["projected"]["sources"]
        .as_array()
        .unwrap_or_else(|| panic!("/etc/mlflow is not a projected volume: {kek}"));
    assert_eq!(sources.len(), 2, "{kek}");
    let items = |secret: &str| -> Vec<(String, String)> {
        let src = sources
            .iter()
            .find(|s| s["secret"]["name"] == secret)
            .unwrap_or_else(|| panic!("no projected source for Secret {secret}: {kek}"));
        src["secret"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap().to_string(),
                    i["path"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let keystore = items("mlflow-secrets-keystore");
    let passphrases = items("mlflow-secrets-kek-passphrase");
    assert!(keystore.contains(&("kek-v1.json".into(), "keystore/kek-v1.json".into())));
    assert!(keystore.contains(&("kek-v2.json".into(), "keystore/kek-v2.json".into())));
    assert!(passphrases.contains(&("v1".into(), "kek-passphrase/v1".into())));
    assert!(passphrases.contains(&("v2".into(), "kek-passphrase/v2".into())));
    assert!(keystore.iter().all(|(_, p)| p.starts_with("keystore/")));
    assert!(
        passphrases
            .iter()
            .all(|(_, p)| p.starts_with("kek-passphrase/"))
    );
    assert!(
        dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .is_some_and(|s| s.len() == 64),
        "no checksum/config annotation"
    );
}

/// The webhook of the MutatingWebhookConfiguration, checked against the
/// injection contract (docs/design.md §8).
pub fn check_webhook(mwc: &Value, fullname: &str, release_ns: &str) -> Value {
    assert_eq!(mwc["metadata"]["name"], fullname);
    let hooks = mwc["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1);
    let w = &hooks[0];
    assert_eq!(w["name"], WEBHOOK_NAME);
    assert_eq!(w["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["sideEffects"], "NoneOnDryRun");
    assert_eq!(w["timeoutSeconds"], 10);
    assert_eq!(w["reinvocationPolicy"], "Never");
    assert_eq!(
        w["objectSelector"]["matchLabels"],
        json!({ "secrets.mlflow.org/inject": "true" })
    );
    let rule = &w["rules"][0];
    assert_eq!(rule["operations"], json!(["CREATE"]));
    assert_eq!(rule["resources"], json!(["pods"]));
    assert_eq!(rule["apiGroups"], json!([""]));
    let svc = &w["clientConfig"]["service"];
    assert_eq!(svc["name"], fullname);
    assert_eq!(svc["namespace"], release_ns);
    assert_eq!(svc["path"], "/mutate");
    assert_eq!(svc["port"], 443);
    let exprs = w["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("namespaceSelector.matchExpressions");
    assert!(
        exprs.contains(&json!({
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": [release_ns]
        })),
        "the release namespace is not excluded: {exprs:?}"
    );
    assert_eq!(
        w["namespaceSelector"]["matchLabels"]["secrets.mlflow.org/injection"], "enabled",
        "only namespaces that opted in are sent"
    );
    w.clone()
}

/// Rules every rendered Role and ClusterRole obey: no wildcard, no pods,
/// no deletecollection, and delete only on core Secrets (the revocation
/// sweep deletes a per-Job Secret once no key is left in it).
pub fn check_rules(rules: &[Value]) {
    for r in rules {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !r[field].as_array().unwrap().contains(&json!("*")),
                "wildcard in {r}"
            );
        }
        let verbs = r["verbs"].as_array().unwrap();
        assert!(
            !verbs.contains(&json!("deletecollection")),
            "the operator needs no deletecollection: {r}"
        );
        if verbs.contains(&json!("delete")) {
            assert_eq!(
                (&r["apiGroups"], &r["resources"]),
                (&json!([""]), &json!(["secrets"])),
                "delete is for per-Job Secrets only: {r}"
            );
        }
        assert!(!r["resources"].as_array().unwrap().contains(&json!("pods")));
    }
}

/// Whether `rules` grant `verb` on `group`/`resource`.
pub fn grants(rules: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r["apiGroups"].as_array().unwrap().contains(&json!(group))
            && r["resources"]
                .as_array()
                .unwrap()
                .contains(&json!(resource))
            && r["verbs"].as_array().unwrap().contains(&json!(verb))
    })
}

/// The rules the operator needs in every namespace it serves.
pub const WORKLOAD_GRANTS: [(&str, &str, &str); 12] = [
    ("secrets.mlflow.org", "mlflowsecrets", "watch"),
    ("secrets.mlflow.org", "mlflowsecretbindings", "patch"),
    ("secrets.mlflow.org", "mlflowsecrets/status", "patch"),
    (
        "secrets.mlflow.org",
        "mlflowsecretbindings/finalizers",
        "update",
    ),
    ("", "secrets", "create"),
    ("", "secrets", "patch"),
    ("", "secrets", "delete"),
    ("", "secrets", "list"),
    ("events.k8s.io", "events", "create"),
    ("", "events", "create"),
    // The webhook's Job check (read only).
    ("batch", "jobs", "watch"),
    ("batch", "jobs", "get"),
];

/// Least privilege (cluster-wide mode): the rules of [`check_rules`],
/// webhook configurations only by name, leases only in the release
/// namespace.
pub fn check_rbac(docs: &[Value], fullname: &str) {
    let cr = one(docs, "ClusterRole");
    let rules = cr["rules"].as_array().expect("rules");
    check_rules(rules);
    let mwc_rule = rules
        .iter()
        .find(|r| r["resources"] == json!(["mutatingwebhookconfigurations"]))
        .expect("a rule for mutatingwebhookconfigurations");
    assert_eq!(mwc_rule["resourceNames"], json!([fullname]));
    assert!(
        !mwc_rule["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("create"))
    );
    let has = |group: &str, resource: &str, verb: &str| grants(rules, group, resource, verb);
    for (g, res, v) in WORKLOAD_GRANTS {
        // The webhook's namespace opt-in check (read only, cluster-wide mode).
        assert!(
            has("", "namespaces", "watch"),
            "ClusterRole lacks watch on namespaces"
        );
        assert!(has(g, res, v), "ClusterRole lacks {v} on {g}/{res}");
    }
    for v in ["create", "update", "patch"] {
        assert!(!has("batch", "jobs", v), "the webhook only reads Jobs");
        assert!(
            !has("", "namespaces", v),
            "the webhook only reads namespaces"
        );
    }
    assert!(
        !has("coordination.k8s.io", "leases", "create"),
        "leases must not be cluster-wide"
    );
    let role = one(docs, "Role");
    assert_eq!(
        role["rules"],
        json!([{
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update", "patch"]
        }])
    );
}
