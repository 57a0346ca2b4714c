//! "How to use it": copyable CLI, REST, Job YAML and `run` text for a
//! secret or a resource. Built from metadata only (names, ids, the
//! server's URL); a value has no way in. The REST snippet reads the token
//! from an environment variable, never inlines one.

use crate::model::{DEFAULT_RESOURCE_TYPE, Secret, SecretBinding};

/// A labelled snippet.
pub struct Snippet {
    pub id: &'static str,
    pub label: &'static str,
    pub text: String,
}

/// A binding name suggestion for a secret's snippets.
fn env_name(binding: Option<&SecretBinding>) -> String {
    binding
        .map(|b| b.binding_name.clone())
        .unwrap_or_else(|| "OPENAI_API_KEY".into())
}

/// The snippets of the secret page; `binding` (its first binding, if any)
/// fills in the resource and the variable name.
pub fn for_secret(s: &Secret, binding: Option<&SecretBinding>, base_url: &str) -> Vec<Snippet> {
    let (rtype, rid) = binding
        .map(|b| (b.resource_type.clone(), b.resource_id.clone()))
        .unwrap_or_else(|| (DEFAULT_RESOURCE_TYPE.into(), "my-scorer".into()));
    let name = env_name(binding);
    let ws = &s.workspace;
    vec![
        Snippet {
            id: "snippet-cli",
            label: "CLI: bind it to a scorer",
            text: format!(
                "mlflow-secrets bind {} --workspace {ws} --resource-type {rtype} --resource-id {rid} --name {name}",
                s.secret_name
            ),
        },
        Snippet {
            id: "snippet-rest",
            label: "REST: read its metadata",
            text: format!(
                "curl -H \"Authorization: Bearer $MLFLOW_SECRETS_TOKEN\" \\\n  \"{base_url}/api/2.0/mlflow/secrets/get?secret_id={}\"",
                s.secret_id
            ),
        },
        job_yaml(ws, &rtype, &rid),
        run(ws, &rtype, &rid),
    ]
}

/// The Job template that gets a resource's bindings injected.
pub fn job_yaml(workspace: &str, rtype: &str, rid: &str) -> Snippet {
    Snippet {
        id: "snippet-job",
        label: "Kubernetes Job: get the bindings injected",
        text: format!(
            "apiVersion: batch/v1
kind: Job
metadata:
  name: {rid}
  namespace: {workspace}
spec:
  template:
    metadata:
      labels:
        secrets.mlflow.org/inject: \"true\"
      annotations:
        secrets.mlflow.org/resource-type: {rtype}
        secrets.mlflow.org/resource-id: {rid}
    spec:
      restartPolicy: Never
      containers:
        - name: scorer
          image: my-scorer:latest"
        ),
    }
}

/// `mlflow-secrets run` for a resource outside Kubernetes.
pub fn run(workspace: &str, rtype: &str, rid: &str) -> Snippet {
    Snippet {
        id: "snippet-run",
        label: "Outside Kubernetes: run a scorer with them",
        text: format!(
            "mlflow-secrets run --workspace {workspace} --resource-type {rtype} --resource-id {rid} -- python score.py"
        ),
    }
}
