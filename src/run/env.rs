//! The command's environment (docs/design.md §13): the parent's, without
//! `run`'s own credentials (or, with `--pristine`, only a few neutral
//! variables), plus the bindings and what `run` tells the command.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use crate::store::InjectedRef;

/// What was injected: `<name>@<secret_id>:<version>,...`, sorted by name.
pub const INJECTED_ENV: &str = "MLFLOW_SECRETS_INJECTED";
/// The secrets directory of `--inject file`.
pub const DIR_ENV: &str = "MLFLOW_SECRETS_DIR";

/// `run`'s own credentials: the command never sees them. (The runner token
/// and the two passphrase sources, ours and MLflow's.)
pub const SCRUBBED: [&str; 3] = [
    crate::store::http::TOKEN_ENV,
    crate::keystore::PASSPHRASE_FILE_ENV,
    "MLFLOW_CRYPTO_KEK_PASSPHRASE",
];

/// What `--pristine` keeps of the parent's environment (and every `LC_*`).
pub const PRISTINE_KEEP: [&str; 7] = ["PATH", "HOME", "USER", "LANG", "TERM", "TZ", "TMPDIR"];

fn kept_by_pristine(name: &OsStr) -> bool {
    let Some(n) = name.to_str() else {
        return false;
    };
    PRISTINE_KEEP.contains(&n) || n.starts_with("LC_")
}

/// The `MLFLOW_SECRETS_INJECTED` value.
pub fn injected_list(injected: &[InjectedRef]) -> String {
    let mut refs: Vec<&InjectedRef> = injected.iter().collect();
    refs.sort_by(|a, b| a.binding_name.cmp(&b.binding_name));
    refs.iter()
        .map(|r| format!("{}@{}:{}", r.binding_name, r.secret_id, r.version))
        .collect::<Vec<_>>()
        .join(",")
}

/// The command's environment, and the variables of the parent's that a
/// binding replaced (for the warning; names only).
pub struct ChildEnv {
    pub vars: Vec<(OsString, OsString)>,
    pub replaced: Vec<String>,
}

impl std::fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildEnv")
            .field("vars", &"[REDACTED]")
            .field("replaced", &self.replaced)
            .finish()
    }
}

/// Build the command's environment from the parent's.
///
/// - `run`'s credentials ([`SCRUBBED`]) are always removed; with
///   `pristine`, everything but [`PRISTINE_KEEP`] and `LC_*` is.
/// - `bindings` (env mode) are set; a name the parent already has is
///   replaced and reported in `replaced`. File mode passes none.
/// - [`INJECTED_ENV`] always, [`DIR_ENV`] in file mode. A value of the
///   parent's for either is replaced silently: it is `run`'s to set.
pub fn child_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    pristine: bool,
    bindings: &[(&str, &SecretString)],
    injected: &[InjectedRef],
    secrets_dir: Option<&Path>,
) -> ChildEnv {
    let mut vars: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(k, _)| !SCRUBBED.iter().any(|s| k == s))
        .filter(|(k, _)| !pristine || kept_by_pristine(k))
        .filter(|(k, _)| k != INJECTED_ENV && k != DIR_ENV)
        .collect();
    let mut replaced = Vec::new();
    for (name, value) in bindings {
        if let Some(i) = vars.iter().position(|(k, _)| k == name) {
            vars.remove(i);
            replaced.push(name.to_string());
        }
        vars.push((name.into(), value.expose_secret().into()));
    }
    vars.push((INJECTED_ENV.into(), injected_list(injected).into()));
    if let Some(d) = secrets_dir {
        vars.push((DIR_ENV.into(), d.as_os_str().to_owned()));
    }
    ChildEnv { vars, replaced }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Vec<(OsString, OsString)> {
        [
            ("PATH", "/bin"),
            ("HOME", "/home/u"),
            ("LC_ALL", "C"),
            ("MLFLOW_SECRETS_TOKEN", "tok"),
            ("MLFLOW_SECRETS_KEK_PASSPHRASE_FILE", "/p"),
            ("MLFLOW_CRYPTO_KEK_PASSPHRASE", "mlflow-pass"),
            ("OPENAI_API_KEY", "old"),
            ("EDITOR", "vi"),
            ("MLFLOW_SECRETS_INJECTED", "forged"),
        ]
        .iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    fn get<'a>(e: &'a ChildEnv, k: &str) -> Option<&'a OsStr> {
        e.vars
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_os_str())
    }

    fn refs() -> Vec<InjectedRef> {
        vec![
            InjectedRef {
                binding_name: "OPENAI_API_KEY".into(),
                secret_id: "id-2".into(),
                version: 20,
            },
            InjectedRef {
                binding_name: "AZURE_API_KEY".into(),
                secret_id: "id-1".into(),
                version: 10,
            },
        ]
    }

    #[test]
    fn credentials_go_bindings_replace_and_injected_is_set() {
        let v = SecretString::from("new-value");
        let e = child_env(parent(), false, &[("OPENAI_API_KEY", &v)], &refs(), None);
        for s in SCRUBBED {
            assert_eq!(get(&e, s), None, "{s}");
        }
        assert_eq!(get(&e, "OPENAI_API_KEY").unwrap(), "new-value");
        assert_eq!(e.replaced, ["OPENAI_API_KEY"]);
        assert_eq!(get(&e, "EDITOR").unwrap(), "vi");
        assert_eq!(
            get(&e, INJECTED_ENV).unwrap(),
            "AZURE_API_KEY@id-1:10,OPENAI_API_KEY@id-2:20"
        );
        assert_eq!(e.vars.iter().filter(|(k, _)| k == INJECTED_ENV).count(), 1);
        assert_eq!(get(&e, DIR_ENV), None);
        assert!(!format!("{e:?}").contains("new-value"));
    }

    #[test]
    fn pristine_keeps_only_neutral_variables_and_file_mode_sets_the_dir() {
        let e = child_env(parent(), true, &[], &refs(), Some(Path::new("/dev/shm/x")));
        let mut names: Vec<&str> = e.vars.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        names.sort();
        assert_eq!(
            names,
            ["HOME", "LC_ALL", DIR_ENV, INJECTED_ENV, "PATH"],
            "file mode sets no binding variable"
        );
        assert_eq!(get(&e, DIR_ENV).unwrap(), "/dev/shm/x");
        assert!(e.replaced.is_empty());
    }
}
