//! The JSON patch that injects a per-Job Secret into a Pod: pure, no I/O,
//! so every merge rule is unit-tested here.
//!
//! The patch only ever *references* the Secret (`secretKeyRef`, or a
//! `secret` volume): no value reaches the Pod object or the
//! AdmissionResponse, by construction — this module never sees a value.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
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
/// keys), the mode and the containers.
#[derive(Debug, Clone)]
pub struct Injection {
    pub secret_name: String,
    pub mode: InjectMode,
    /// Binding name to what was injected under it. Sorted, so the patch and
    /// the annotation are deterministic.
    pub bindings: BTreeMap<String, InjectedBinding>,
    /// `secrets.mlflow.org/containers`: only these containers get the
    /// bindings. `None`: every container and init container.
    pub containers: Option<BTreeSet<String>>,
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
    #[error(
        "container {container} already defines {variable} in its env: the webhook never overrides a variable the pod sets (rename the binding or the variable)"
    )]
    EnvDefined { container: String, variable: String },
    #[error(
        "container {container} takes variables with prefix {prefix:?} from envFrom, which may define {variable}: the webhook never overrides a variable the pod sets"
    )]
    EnvFromPrefix {
        container: String,
        prefix: String,
        variable: String,
    },
}

/// A binding name the container already defines: in `env`, or possibly
/// through an `envFrom` source with a prefix the name starts with. (An
/// `envFrom` without a prefix can define any name; which ones is known only
/// from the ConfigMap or Secret at container start, and `env` wins over it
/// there, so it is not a conflict the webhook can see.)
fn env_conflict<'a>(
    c: &Container,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(), PatchError> {
    for name in names {
        if c.env.iter().flatten().any(|e| e.name == *name) {
            return Err(PatchError::EnvDefined {
                container: c.name.clone(),
                variable: name.clone(),
            });
        }
        for src in c.env_from.iter().flatten() {
            if let Some(p) = src.prefix.as_deref().filter(|p| !p.is_empty())
                && name.starts_with(p)
            {
                return Err(PatchError::EnvFromPrefix {
                    container: c.name.clone(),
                    prefix: p.to_string(),
                    variable: name.clone(),
                });
            }
        }
    }
    Ok(())
}

fn ptr<'a>(tokens: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn env_var(secret_name: &str, key: &str) -> Value {
    json!({
        "name": key,
        "valueFrom": { "secretKeyRef": { "name": secret_name, "key": key } }
    })
}

/// `containers` and `initContainers` with their JSON field names and
/// indexes, limited to `only` when given.
fn all_containers<'p>(
    pod: &'p Pod,
    only: Option<&BTreeSet<String>>,
) -> Result<Vec<(&'static str, usize, &'p Container)>, PatchError> {
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
    if let Some(only) = only {
        out.retain(|(_, _, c)| only.contains(&c.name));
    }
    Ok(out)
}

/// The JSON patch for `pod`.
///
/// `secret-env`: every binding becomes an env var with a `secretKeyRef` in
/// every chosen container (all containers and init containers unless
/// `inj.containers` limits them). A container that already defines one of
/// the names (in `env`, or by an `envFrom` prefix) is refused, naming it:
/// the webhook never overrides a variable the pod set itself.
///
/// `secret-file`: a `secret` volume and a read-only mount at
/// [`SECRET_FILE_MOUNT_PATH`] in every chosen container.
///
/// Both: the `injected` annotation.
pub fn build_patch(pod: &Pod, inj: &Injection) -> Result<Patch, PatchError> {
    let mut ops = Vec::new();
    let containers = all_containers(pod, inj.containers.as_ref())?;
    let max = containers.iter().map(|(_, i, _)| *i + 1).max().unwrap_or(0);
    let i_s: Vec<String> = (0..max).map(|i| i.to_string()).collect();
    match inj.mode {
        InjectMode::SecretEnv => {
            for (field, i, c) in &containers {
                env_conflict(c, inj.bindings.keys())?;
                let idx = i_s[*i].as_str();
                if c.env.is_none() {
                    let env: Vec<Value> = inj
                        .bindings
                        .keys()
                        .map(|k| env_var(&inj.secret_name, k))
                        .collect();
                    ops.push(add(ptr(["spec", field, idx, "env"]), Value::Array(env)));
                } else {
                    for key in inj.bindings.keys() {
                        let var = env_var(&inj.secret_name, key);
                        ops.push(add(ptr(["spec", field, idx, "env", "-"]), var));
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
            containers: None,
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
    fn env_appends_to_existing_env_and_keeps_env_from() {
        let p = pod(json!({
            "metadata": {},
            "spec": {"containers": [{
                "name": "main",
                "env": [{"name": "KEEP", "value": "x"}, {"name": "LAST", "value": "y"}],
                "envFrom": [{"configMapRef": {"name": "cm"}}, {"prefix": "APP_", "secretRef": {"name": "s"}}]
            }]}
        }));
        let inj = injection(InjectMode::SecretEnv, &["TOKEN", "NEW"]);
        let doc = patched(&p, &inj);
        let env = doc["spec"]["containers"][0]["env"].as_array().unwrap();
        let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["KEEP", "LAST", "NEW", "TOKEN"]);
        assert_eq!(env[0]["value"], "x");
        assert_eq!(
            doc["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            "cm"
        );
        // No annotations before: the map is created.
        assert!(doc["metadata"]["annotations"][ANNOTATION_INJECTED].is_string());
    }

    #[test]
    fn a_variable_the_pod_defines_is_never_overridden() {
        let p = pod(json!({
            "metadata": {},
            "spec": {
                "initContainers": [{"name": "init"}],
                "containers": [
                    {"name": "main"},
                    {"name": "side", "env": [{"name": "OPENAI_API_KEY", "value": "mine"}]}
                ]
            }
        }));
        let inj = injection(InjectMode::SecretEnv, &["OPENAI_API_KEY"]);
        assert_eq!(
            build_patch(&p, &inj).unwrap_err(),
            PatchError::EnvDefined {
                container: "side".into(),
                variable: "OPENAI_API_KEY".into()
            }
        );
        let msg = build_patch(&p, &inj).unwrap_err().to_string();
        assert!(
            msg.contains("container side") && msg.contains("OPENAI_API_KEY"),
            "{msg}"
        );
        // Limited to containers that do not define it: allowed.
        let mut only = inj.clone();
        only.containers = Some(["main".to_string()].into());
        let doc = patched(&p, &only);
        assert!(secret_ref(&doc, "containers", 0, "OPENAI_API_KEY").is_some());
        assert_eq!(doc["spec"]["containers"][1]["env"][0]["value"], "mine");
        assert!(doc["spec"]["initContainers"][0].get("env").is_none());
        // File mode adds no variable, so it overrides nothing.
        let mut file = inj.clone();
        file.mode = InjectMode::SecretFile;
        build_patch(&p, &file).unwrap();
        // An envFrom prefix the name starts with.
        let pre = pod(json!({"metadata": {}, "spec": {"containers": [{
            "name": "c", "envFrom": [{"prefix": "OPENAI_", "secretRef": {"name": "s"}}]}]}}));
        assert_eq!(
            build_patch(&pre, &inj).unwrap_err(),
            PatchError::EnvFromPrefix {
                container: "c".into(),
                prefix: "OPENAI_".into(),
                variable: "OPENAI_API_KEY".into()
            }
        );
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
