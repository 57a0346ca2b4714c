//! "How to use it": copyable CLI, REST, Job YAML and `run` text for a
//! secret or a resource. Built from metadata only (names, ids, the
//! server's URL); a value has no way in. The REST snippet reads the token
//! from an environment variable, never inlines one.
//!
//! Every name and id in a snippet was chosen by someone else (any writer
//! of the workspace, or whoever sent the link: a resource page renders the
//! id in its URL), and a resource id may hold `;`, `$` or quotes. So each
//! is written as one shell word ([`sh`]) or one YAML scalar ([`yaml`]):
//! pasting a snippet runs the command it shows and nothing else.

use crate::model::{DEFAULT_RESOURCE_TYPE, Secret, SecretBinding};

/// A labelled snippet.
pub struct Snippet {
    pub id: &'static str,
    pub label: &'static str,
    pub text: String,
}

/// `word` as one POSIX shell word: as it is when it holds nothing a shell
/// reads specially, else single-quoted (shlex). A NUL, which no shell
/// argument can hold (the validators refuse it, so only a row written
/// around them has one), gives a placeholder that is not a command.
fn sh(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| "'<not a shell word>'".to_string(), |w| w.into_owned())
}

/// `s` as one YAML scalar: a JSON string is a YAML double-quoted scalar,
/// so no `:`, `#`, quote or leading indicator can change the document.
fn yaml(s: &str) -> String {
    serde_json::Value::from(s).to_string()
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
                "mlflow-secrets bind {} --workspace {} --resource-type {} --resource-id {} --name {}",
                sh(&s.secret_name),
                sh(ws),
                sh(&rtype),
                sh(&rid),
                sh(&name)
            ),
        },
        Snippet {
            id: "snippet-rest",
            label: "REST: read its metadata",
            text: format!(
                "curl -H \"Authorization: Bearer $MLFLOW_SECRETS_TOKEN\" \\\n  {}",
                sh(&format!(
                    "{base_url}/api/2.0/mlflow/secrets/get?secret_id={}",
                    s.secret_id
                ))
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
  name: {name}
  namespace: {ns}
spec:
  template:
    metadata:
      labels:
        secrets.mlflow.org/inject: \"true\"
      annotations:
        secrets.mlflow.org/resource-type: {ty}
        secrets.mlflow.org/resource-id: {name}
    spec:
      restartPolicy: Never
      containers:
        - name: scorer
          image: my-scorer:latest",
            name = yaml(rid),
            ns = yaml(workspace),
            ty = yaml(rtype),
        ),
    }
}

/// `mlflow-secrets run` for a resource outside Kubernetes.
pub fn run(workspace: &str, rtype: &str, rid: &str) -> Snippet {
    Snippet {
        id: "snippet-run",
        label: "Outside Kubernetes: run a scorer with them",
        text: format!(
            "mlflow-secrets run --workspace {} --resource-type {} --resource-id {} -- python score.py",
            sh(workspace),
            sh(rtype),
            sh(rid)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id that would run a second command if it were pasted unquoted.
    const HOSTILE: &str = "x;touch${IFS}/tmp/pwned`id`'\"#: &|";

    #[test]
    fn a_hostile_id_stays_one_shell_word() {
        let run = run("team-a", "SCORER_JOB", HOSTILE).text;
        let words = shlex::split(&run).expect("the snippet parses as shell words");
        assert_eq!(
            words,
            [
                "mlflow-secrets",
                "run",
                "--workspace",
                "team-a",
                "--resource-type",
                "SCORER_JOB",
                "--resource-id",
                HOSTILE,
                "--",
                "python",
                "score.py",
            ]
        );
        // Plain words stay readable.
        assert!(run.contains("--resource-id 'x;"), "{run}");
        assert!(run.contains("--workspace team-a "), "{run}");
    }

    #[test]
    fn a_hostile_name_and_id_stay_one_word_in_the_bind_snippet() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "secret_id": "0b5b5c6e-0000-4000-8000-000000000001",
            "workspace": "default",
            "secret_name": "clé-ü",
            "masked_value": "***",
            "is_shared": false,
            "state": "ACTIVE",
            "created_at": 0,
            "last_updated_at": 0
        }))
        .expect("a Secret");
        let binding: SecretBinding = serde_json::from_value(serde_json::json!({
            "binding_id": "0b5b5c6e-0000-4000-8000-000000000002",
            "secret_id": secret.secret_id,
            "workspace": "default",
            "resource_type": "SCORER_JOB",
            "resource_id": HOSTILE,
            "binding_name": "OPENAI_API_KEY",
            "created_at": 0
        }))
        .expect("a SecretBinding");
        let all = for_secret(&secret, Some(&binding), "https://h:1");
        let cli = shlex::split(&all[0].text).expect("the CLI snippet parses");
        assert_eq!(cli[2], "clé-ü");
        assert_eq!(cli[8], HOSTILE);
        let rest = shlex::split(&all[1].text.replace("\\\n", "")).expect("the REST snippet parses");
        assert_eq!(rest.len(), 4, "{rest:?}");
    }

    #[test]
    fn a_hostile_id_stays_one_yaml_scalar() {
        let job = job_yaml("team-a", "SCORER_JOB", HOSTILE).text;
        let doc: serde_json::Value = serde_saphyr::from_str(&job).expect("the Job YAML parses");
        assert_eq!(doc["metadata"]["name"], HOSTILE);
        assert_eq!(doc["metadata"]["namespace"], "team-a");
        let ann = &doc["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(ann["secrets.mlflow.org/resource-id"], HOSTILE);
        assert_eq!(ann["secrets.mlflow.org/resource-type"], "SCORER_JOB");
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][0]["name"],
            "scorer"
        );
    }
}
