//! The JSON patch that injects a per-Job Secret into a Pod: pure, no I/O,
//! so every merge rule is unit-tested here.
//!
//! The patch only ever *references* the Secret (`secretKeyRef`, or a
//! `secret` volume): no value reaches the Pod object or the
//! AdmissionResponse, by construction — this module never sees a value.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use crate::k8s::{ANNOTATION_INJECTED, SECRET_FILE_MOUNT_PATH};

/// Name of the volume `secret-file` mode adds. Prefixed, so it does not
/// collide with a user's volume names in practice; a collision is refused
/// rather than silently shadowing the user's volume.
pub const SECRET_VOLUME_NAME: &str = "mlflow-secrets-injected";

/// How the bound values reach the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectMode {
    /// `env[].valueFrom.secretKeyRef` in every container (the default).
    SecretEnv,
    /// The Secret mounted read-only at [`SECRET_FILE_MOUNT_PATH`].
    SecretFile,
}

impl InjectMode {
    /// The mode named by the `inject-mode` annotation (absent: `secret-env`).
    pub fn parse(annotation: Option<&str>) -> Result<Self, String> {
        match annotation.map(str::trim) {
            None | Some("") | Some("secret-env") => Ok(Self::SecretEnv),
            Some("secret-file") => Ok(Self::SecretFile),
            Some(other) => Err(format!(
                "annotation {} is {other:?}: it must be secret-env or secret-file",
                crate::k8s::ANNOTATION_INJECT_MODE
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretEnv => "secret-env",
            Self::SecretFile => "secret-file",
        }
    }
}

/// What one binding contributed: which stored secret, at which version.
/// Metadata only; it ends up in the `injected` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedBinding {
    pub secret_id: String,
    /// `last_updated_at` of the secret (epoch ms): every value change gets a
    /// new DEK and a new timestamp, so this identifies the value version
    /// without revealing anything about it.
    pub version: i64,
}

/// Everything the patch needs: the Secret's name, the binding names (its
/// keys) and the mode.
#[derive(Debug, Clone)]
pub struct Injection {
    pub secret_name: String,
    pub mode: InjectMode,
    /// Binding name to what was injected under it. Sorted, so the patch and
    /// the annotation are deterministic.
    pub bindings: BTreeMap<String, InjectedBinding>,
}

impl Injection {
    /// The value of the `secrets.mlflow.org/injected` annotation: compact
    /// JSON `{"mode", "secret", "bindings": {NAME: {"secretId", "version"}}}`.
    pub fn annotation(&self) -> String {
        let bindings: serde_json::Map<String, Value> = self
            .bindings
            .iter()
            .map(|(name, b)| {
                (
                    name.clone(),
                    json!({ "secretId": b.secret_id, "version": b.version }),
                )
            })
            .collect();
        json!({ "mode": self.mode.as_str(), "secret": self.secret_name, "bindings": bindings })
            .to_string()
    }
}

/// Why a pod cannot be patched. Names the container or volume only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("pod has no spec")]
    NoSpec,
    #[error("pod already has a volume named {SECRET_VOLUME_NAME}")]
    VolumeExists,
    #[error("container {0} already mounts something at {SECRET_FILE_MOUNT_PATH}")]
    MountPathTaken(String),
}

fn ptr<'a>(tokens: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn replace(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path, value })
}

fn env_var(secret_name: &str, key: &str) -> Value {
    json!({
        "name": key,
        "valueFrom": { "secretKeyRef": { "name": secret_name, "key": key } }
    })
}

/// `containers` and `initContainers` with their JSON field names.
fn all_containers(pod: &Pod) -> Result<Vec<(&'static str, usize, &Container)>, PatchError> {
    let spec = pod.spec.as_ref().ok_or(PatchError::NoSpec)?;
    let mut out: Vec<_> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| ("containers", i, c))
        .collect();
    if let Some(init) = &spec.init_containers {
        out.extend(
            init.iter()
                .enumerate()
                .map(|(i, c)| ("initContainers", i, c)),
        );
    }
    Ok(out)
}

/// The JSON patch for `pod`.
///
/// `secret-env`: every binding becomes an env var with a `secretKeyRef` in
/// every container and init container. A variable of the same name that
/// the pod already declares is *replaced*, so the bound secret wins and no
/// name appears twice; `envFrom` is left alone (explicit `env` entries take
/// precedence over it in Kubernetes).
///
/// `secret-file`: a `secret` volume and a read-only mount at
/// [`SECRET_FILE_MOUNT_PATH`] in every container and init container.
///
/// Both: the `injected` annotation.
pub fn build_patch(pod: &Pod, inj: &Injection) -> Result<Patch, PatchError> {
    let mut ops = Vec::new();
    let containers = all_containers(pod)?;
    let i_s: Vec<String> = (0..containers.len()).map(|i| i.to_string()).collect();
    match inj.mode {
        InjectMode::SecretEnv => {
            for (field, i, c) in &containers {
                let idx = i_s[*i].as_str();
                match &c.env {
                    None => {
                        let env: Vec<Value> = inj
                            .bindings
                            .keys()
                            .map(|k| env_var(&inj.secret_name, k))
                            .collect();
                        ops.push(add(ptr(["spec", field, idx, "env"]), Value::Array(env)));
                    }
                    Some(existing) => {
                        for key in inj.bindings.keys() {
                            let var = env_var(&inj.secret_name, key);
                            match existing.iter().position(|e| e.name == *key) {
                                Some(j) => {
                                    let j = j.to_string();
                                    ops.push(replace(
                                        ptr(["spec", field, idx, "env", j.as_str()]),
                                        var,
                                    ));
                                }
                                None => ops.push(add(ptr(["spec", field, idx, "env", "-"]), var)),
                            }
                        }
                    }
                }
            }
        }
        InjectMode::SecretFile => {
            let spec = pod.spec.as_ref().ok_or(PatchError::NoSpec)?;
            let volume = json!({
                "name": SECRET_VOLUME_NAME,
                "secret": { "secretName": inj.secret_name, "defaultMode": 0o440 }
            });
            match &spec.volumes {
                None => ops.push(add(ptr(["spec", "volumes"]), json!([volume]))),
                Some(v) if v.iter().any(|v| v.name == SECRET_VOLUME_NAME) => {
                    return Err(PatchError::VolumeExists);
                }
                Some(_) => ops.push(add(ptr(["spec", "volumes", "-"]), volume)),
            }
            let mount = json!({
                "name": SECRET_VOLUME_NAME,
                "mountPath": SECRET_FILE_MOUNT_PATH,
                "readOnly": true
            });
            for (field, i, c) in &containers {
                let idx = i_s[*i].as_str();
                match &c.volume_mounts {
                    None => ops.push(add(
                        ptr(["spec", field, idx, "volumeMounts"]),
                        json!([mount.clone()]),
                    )),
                    Some(m) if m.iter().any(|m| m.mount_path == SECRET_FILE_MOUNT_PATH) => {
                        return Err(PatchError::MountPathTaken(c.name.clone()));
                    }
                    Some(_) => ops.push(add(
                        ptr(["spec", field, idx, "volumeMounts", "-"]),
                        mount.clone(),
                    )),
                }
            }
        }
    }
    let annotation = inj.annotation();
    match &pod.metadata.annotations {
        None => ops.push(add(
            ptr(["metadata", "annotations"]),
            json!({ ANNOTATION_INJECTED: annotation }),
        )),
        // `add` on an existing member replaces it, so a pod that arrives
        // with a forged `injected` annotation gets ours instead.
        Some(_) => ops.push(add(
            ptr(["metadata", "annotations", ANNOTATION_INJECTED]),
            Value::String(annotation),
        )),
    }
    Ok(Patch(ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn injection(mode: InjectMode, names: &[&str]) -> Injection {
        Injection {
            secret_name: "job-mlflow-secrets".into(),
            mode,
            bindings: names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    (
                        n.to_string(),
                        InjectedBinding {
                            secret_id: format!("id-{i}"),
                            version: 1000 + i as i64,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Apply the patch the way the API server does and return the result.
    fn patched(p: &Pod, inj: &Injection) -> Value {
        let patch = build_patch(p, inj).unwrap();
        let mut doc = serde_json::to_value(p).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        doc
    }

    fn secret_ref(doc: &Value, field: &str, i: usize, name: &str) -> Option<Value> {
        doc["spec"][field][i]["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["secretKeyRef"].clone())
    }

    #[test]
    fn env_into_containers_without_env_and_init_containers() {
        let p = pod(json!({
            "metadata": {"annotations": {"a": "b"}},
            "spec": {
                "initContainers": [{"name": "init"}],
                "containers": [{"name": "main"}, {"name": "side", "env": []}]
            }
        }));
        let inj = injection(InjectMode::SecretEnv, &["OPENAI_API_KEY", "B"]);
        let doc = patched(&p, &inj);
        for (field, i) in [("containers", 0), ("containers", 1), ("initContainers", 0)] {
            for name in ["OPENAI_API_KEY", "B"] {
                assert_eq!(
                    secret_ref(&doc, field, i, name),
                    Some(json!({"name": "job-mlflow-secrets", "key": name})),
                    "{field}[{i}] {name}"
                );
            }
        }
        assert_eq!(doc["metadata"]["annotations"]["a"], "b");
        let ann: Value = serde_json::from_str(
            doc["metadata"]["annotations"][ANNOTATION_INJECTED]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(ann["mode"], "secret-env");
        assert_eq!(ann["secret"], "job-mlflow-secrets");
        assert_eq!(ann["bindings"]["B"]["secretId"], "id-1");
        assert_eq!(ann["bindings"]["OPENAI_API_KEY"]["version"], 1000);
    }

    #[test]
    fn env_merges_with_existing_env_and_keeps_env_from() {
        let p = pod(json!({
            "metadata": {},
            "spec": {"containers": [{
                "name": "main",
                "env": [
                    {"name": "KEEP", "value": "x"},
                    {"name": "TOKEN", "value": "user-set"},
                    {"name": "LAST", "value": "y"}
                ],
                "envFrom": [{"configMapRef": {"name": "cm"}}]
            }]}
        }));
        let inj = injection(InjectMode::SecretEnv, &["TOKEN", "NEW"]);
        let doc = patched(&p, &inj);
        let env = doc["spec"]["containers"][0]["env"].as_array().unwrap();
        let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
        // Existing order kept, TOKEN replaced in place (no duplicate), NEW appended.
        assert_eq!(names, ["KEEP", "TOKEN", "LAST", "NEW"]);
        assert_eq!(
            env[1].get("value"),
            None,
            "the user's literal value is replaced"
        );
        assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["key"], "TOKEN");
        assert_eq!(env[0]["value"], "x");
        assert_eq!(
            doc["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            "cm"
        );
        // No annotations before: the map is created.
        assert!(doc["metadata"]["annotations"][ANNOTATION_INJECTED].is_string());
    }

    #[test]
    fn file_mode_adds_volume_and_read_only_mounts() {
        let p = pod(json!({
            "metadata": {"annotations": {}},
            "spec": {
                "volumes": [{"name": "data", "emptyDir": {}}],
                "initContainers": [{"name": "init", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "containers": [{"name": "main"}]
            }
        }));
        let inj = injection(InjectMode::SecretFile, &["A"]);
        let doc = patched(&p, &inj);
        let vols = doc["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[0]["name"], "data");
        assert_eq!(vols[1]["secret"]["secretName"], "job-mlflow-secrets");
        for (field, n) in [("containers", 1), ("initContainers", 2)] {
            let mounts = doc["spec"][field][0]["volumeMounts"].as_array().unwrap();
            assert_eq!(mounts.len(), n, "{field}");
            let m = mounts.last().unwrap();
            assert_eq!(m["name"], SECRET_VOLUME_NAME);
            assert_eq!(m["mountPath"], SECRET_FILE_MOUNT_PATH);
            assert_eq!(m["readOnly"], true);
            assert!(
                doc["spec"][field][0].get("env").is_none(),
                "file mode adds no env"
            );
        }
        // Without volumes at all, the list is created.
        let bare = pod(json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}}));
        let doc = patched(&bare, &inj);
        assert_eq!(doc["spec"]["volumes"][0]["name"], SECRET_VOLUME_NAME);
    }

    #[test]
    fn file_mode_refuses_collisions() {
        let vol = pod(json!({"metadata": {}, "spec": {
            "volumes": [{"name": SECRET_VOLUME_NAME, "emptyDir": {}}],
            "containers": [{"name": "c"}]}}));
        let inj = injection(InjectMode::SecretFile, &["A"]);
        assert_eq!(
            build_patch(&vol, &inj).unwrap_err(),
            PatchError::VolumeExists
        );
        let mount = pod(json!({"metadata": {}, "spec": {
            "containers": [{"name": "c", "volumeMounts": [{"name": "x", "mountPath": SECRET_FILE_MOUNT_PATH}]}]}}));
        assert_eq!(
            build_patch(&mount, &inj).unwrap_err(),
            PatchError::MountPathTaken("c".into())
        );
        let nospec = pod(json!({"metadata": {}}));
        assert_eq!(build_patch(&nospec, &inj).unwrap_err(), PatchError::NoSpec);
    }

    #[test]
    fn forged_injected_annotation_is_overwritten_and_paths_are_escaped() {
        let p = pod(json!({
            "metadata": {"annotations": {ANNOTATION_INJECTED: "forged"}},
            "spec": {"containers": [{"name": "c"}]}
        }));
        let inj = injection(InjectMode::SecretEnv, &["A"]);
        let patch = build_patch(&p, &inj).unwrap();
        let text = serde_json::to_string(&patch).unwrap();
        assert!(
            text.contains("/metadata/annotations/secrets.mlflow.org~1injected"),
            "{text}"
        );
        let doc = patched(&p, &inj);
        assert_ne!(
            doc["metadata"]["annotations"][ANNOTATION_INJECTED],
            "forged"
        );
    }

    #[test]
    fn mode_parsing() {
        assert_eq!(InjectMode::parse(None).unwrap(), InjectMode::SecretEnv);
        assert_eq!(
            InjectMode::parse(Some("secret-env")).unwrap(),
            InjectMode::SecretEnv
        );
        assert_eq!(
            InjectMode::parse(Some(" secret-file ")).unwrap(),
            InjectMode::SecretFile
        );
        let e = InjectMode::parse(Some("plain")).unwrap_err();
        assert!(e.contains("secret-env or secret-file"), "{e}");
    }
}
