//! `mlflow-secrets doctor`: check an installation and say how to fix each
//! problem. Every check reports a status, what it found and, when it did
//! not pass, the remedy: a command or a file to change. Nothing printed
//! here is a value, a key or a passphrase: checks report versions, counts,
//! modes and paths.
//!
//! The checks reuse what the commands themselves run: the keystore's check
//! value (as `Keystore::load`), migrate's pending count and foreign-table
//! test, `audit verify`, the server's tokens-file parser, and (with a
//! kubeconfig) [`super::doctor_k8s`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::keystore::{self, KekState, KeystoreConfig};
use crate::store::SqlStore;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but wants attention (a rewrap is due, an old KEK).
    Warn,
    Fail,
    /// Not applicable here (no tokens file, no kubeconfig, no store).
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name, e.g. `keystore.permissions`, `kek.v2`, `store.migrations`.
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Check {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail, None)
    }

    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, detail, None)
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Fail, detail, Some(remedy.into()))
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Warn, detail, Some(remedy.into()))
    }

    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        remedy: Option<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            remedy,
        }
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct DoctorConfig {
    pub keystore: KeystoreConfig,
    pub store_uri: String,
    /// `serve --auth-tokens-file`, when the server is part of the setup.
    pub tokens_file: Option<PathBuf>,
    /// An active KEK older than this many days is reported for rotation.
    pub max_kek_age_days: u64,
    /// The cluster checks, when a kubeconfig is given.
    pub kube: Option<super::doctor_k8s::KubeTarget>,
}

/// Every check, in order.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// Run every check. Never fails as a whole: a check that cannot run is a
/// failed check with its reason.
pub async fn run(cfg: &DoctorConfig) -> DoctorReport {
    let mut checks = Vec::new();
    let active = keystore_checks(cfg, &mut checks).await;
    store_checks(cfg, active, &mut checks).await;
    checks.push(tokens_check(cfg.tokens_file.as_deref()));
    match &cfg.kube {
        Some(k) => checks.extend(super::doctor_k8s::checks(k).await),
        None => checks.push(Check::skip(
            "k8s",
            "no --kubeconfig given: cluster checks skipped",
        )),
    }
    DoctorReport {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    }
}

/// The keystore directory, its files' modes, each version's passphrase and
/// the active version. Returns the active version when there is one.
async fn keystore_checks(cfg: &DoctorConfig, out: &mut Vec<Check>) -> Option<u32> {
    let dir = &cfg.keystore.dir;
    if cfg.keystore.test_mode {
        out.push(Check::warn(
            "keystore",
            "test mode is on: secrets are encrypted with a fixed, publicly known key",
            format!("unset {} for real secrets", keystore::TEST_MODE_ENV),
        ));
        return None;
    }
    out.push(private_path_check(
        "keystore.permissions",
        dir,
        "keystore directory",
    ));
    let versions = match keystore::list_versions(dir) {
        Ok(v) if v.is_empty() => {
            out.push(Check::fail(
                "keystore.files",
                format!("{} holds no kek-v<N>.json file", dir.display()),
                "create a keystore with `mlflow-secrets kek generate`, or point --keystore / MLFLOW_SECRETS_KEYSTORE_PATH at yours (or restore it from a backup)",
            ));
            return None;
        }
        Ok(v) => v,
        Err(e) => {
            out.push(Check::fail(
                "keystore.files",
                e.to_string(),
                "fix or restore the named KEK file (`mlflow-secrets restore` puts a backup's keystore back)",
            ));
            return None;
        }
    };
    for k in &versions {
        let path = keystore::file::path_for(dir, k.version);
        out.push(private_path_check(
            &format!("keystore.file.v{}", k.version),
            &path,
            "KEK file",
        ));
    }
    for k in &versions {
        let name = format!("kek.v{}", k.version);
        if k.state == KekState::Retired {
            out.push(Check::ok(name, "retired: not loaded, no passphrase needed"));
            continue;
        }
        let config = cfg.keystore.clone();
        let v = k.version;
        let r = tokio::task::spawn_blocking(move || keystore::check_passphrase(&config, v))
            .await
            .expect("passphrase check panicked");
        out.push(match r {
            Ok(()) => Check::ok(
                name,
                format!("{}: the passphrase matches the check value", k.state.as_str()),
            ),
            Err(e @ keystore::KeystoreError::WrongPassphrase { .. }) => Check::fail(
                name,
                e.to_string(),
                format!(
                    "put the passphrase this version was created with in {} (the passphrase file or v{v} in the passphrase directory)",
                    cfg.keystore.passphrase.file_for(v).display()
                ),
            ),
            Err(e) => Check::fail(
                name,
                e.to_string(),
                format!(
                    "provide the passphrase of version {v}: set MLFLOW_SECRETS_KEK_PASSPHRASE_FILE to a file, or to a directory with a v{v} file"
                ),
            ),
        });
    }
    let actives: Vec<_> = versions
        .iter()
        .filter(|k| k.state == KekState::Active)
        .collect();
    match actives.as_slice() {
        [one] => {
            let age_days = (crate::model::now_ms() - one.created_at).max(0) as u64 / 86_400_000;
            let detail = format!("version {} is active, {age_days} day(s) old", one.version);
            out.push(if age_days > cfg.max_kek_age_days {
                Check::warn(
                    "kek.active",
                    detail,
                    format!(
                        "older than {} days: `mlflow-secrets kek rotate` then `mlflow-secrets rewrap --all`",
                        cfg.max_kek_age_days
                    ),
                )
            } else {
                Check::ok("kek.active", detail)
            });
            Some(one.version)
        }
        [] => {
            out.push(Check::fail(
                "kek.active",
                "no KEK version is active",
                "`mlflow-secrets kek set-active --version N`",
            ));
            None
        }
        many => {
            out.push(Check::fail(
                "kek.active",
                format!(
                    "{} versions are active ({:?}); an interrupted `kek rotate` leaves this",
                    many.len(),
                    many.iter().map(|k| k.version).collect::<Vec<_>>()
                ),
                "`mlflow-secrets kek set-active --version N` with the newest version",
            ));
            None
        }
    }
}

/// Reachability, the foreign `secrets` table, migrations, rows per KEK
/// version and the audit chain.
async fn store_checks(cfg: &DoctorConfig, active: Option<u32>, out: &mut Vec<Check>) {
    let uri = cfg.store_uri.as_str();
    if uri.starts_with("http://") || uri.starts_with("https://") {
        out.push(Check::skip(
            "store",
            "the store is a server: run doctor where the server runs, against its database",
        ));
        return;
    }
    let store = match SqlStore::connect_existing(uri, keystore::Keystore::metadata_only().into())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            out.push(Check::fail(
                "store.reachable",
                e.to_string(),
                "check --store-uri / MLFLOW_SECRETS_STORE_URI, that the database is up and the credentials are right (the incident id in the message points to the log line with the driver's error)",
            ));
            return;
        }
    };
    out.push(Check::ok(
        "store.reachable",
        format!("connected to the {} database", store.dialect().name()),
    ));
    match store.refuse_foreign_secrets_table().await {
        Ok(()) => out.push(Check::ok(
            "store.foreign_table",
            "no foreign `secrets` table",
        )),
        Err(e) => {
            out.push(Check::fail(
                "store.foreign_table",
                e.to_string(),
                "give mlflow-secrets its own database or schema (docs/operations.md); never the MLflow tracking database",
            ));
            return;
        }
    }
    match store.pending_migrations().await {
        Ok(0) => {
            let level = super::facts::migration_level(&store).await;
            out.push(Check::ok(
                "store.migrations",
                format!(
                    "schema current (latest migration {})",
                    level.ok().and_then(|l| l.latest()).unwrap_or(0)
                ),
            ));
        }
        Ok(n) => {
            out.push(Check::fail(
                "store.migrations",
                format!("{n} migration(s) pending"),
                "run `mlflow-secrets migrate` against this store",
            ));
            return;
        }
        Err(e) => {
            out.push(Check::fail(
                "store.migrations",
                e.to_string(),
                "run `mlflow-secrets migrate`",
            ));
            return;
        }
    }
    out.push(kek_usage_check(&store, cfg, active).await);
    out.push(match store.audit_verify().await {
        Ok(r) if r.ok => Check::ok("audit.chain", format!("{} row(s), chain intact", r.rows)),
        Ok(r) => Check::fail(
            "audit.chain",
            format!(
                "broken at row {}: {}",
                r.first_broken_seq.unwrap_or(0),
                r.reason.as_deref().unwrap_or("unknown")
            ),
            "treat as tampering: keep the database as it is, compare with the exported `audit head` log lines (`audit verify --head N:H`), restore the last good backup (docs/operations.md)",
        ),
        Err(e) => Check::fail("audit.chain", e.to_string(), "run `mlflow-secrets audit verify`"),
    });
}

async fn kek_usage_check(store: &SqlStore, cfg: &DoctorConfig, active: Option<u32>) -> Check {
    let counts = match store.kek_version_counts().await {
        Ok(c) => c,
        Err(e) => return Check::fail("store.kek_usage", e.to_string(), "check the database"),
    };
    let detail = if counts.is_empty() {
        "no secrets".to_string()
    } else {
        counts
            .iter()
            .map(|(v, n)| format!("v{v}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let known = keystore::list_versions(&cfg.keystore.dir).unwrap_or_default();
    let unusable: Vec<u32> = counts
        .keys()
        .copied()
        .filter(|v| {
            !known
                .iter()
                .any(|k| k.version == *v && k.state != KekState::Retired)
        })
        .collect();
    if !unusable.is_empty() && !cfg.keystore.test_mode {
        return Check::fail(
            "store.kek_usage",
            format!(
                "{detail}; rows use KEK version(s) {unusable:?} that this keystore cannot open"
            ),
            "restore the missing kek-v<N>.json files from a backup (`mlflow-secrets restore`), or point --keystore at the keystore this store was written with",
        );
    }
    match active {
        Some(a) if counts.keys().any(|v| *v != a) => Check::warn(
            "store.kek_usage",
            format!("{detail}; rows not on the active version {a}"),
            "a rewrap is due: `mlflow-secrets rewrap --all`, then `kek retire --version N` for emptied versions",
        ),
        _ => Check::ok("store.kek_usage", detail),
    }
}

/// The tokens file of `serve`, parsed as the server parses it.
fn tokens_check(path: Option<&Path>) -> Check {
    let Some(path) = path else {
        return Check::skip("tokens_file", "no --tokens-file given");
    };
    let perms = private_path_check("tokens_file", path, "tokens file");
    if perms.status == Status::Fail {
        return perms;
    }
    match crate::server::auth::TokenStore::load(path) {
        Ok(t) if t.is_empty() => Check::fail(
            "tokens_file",
            format!(
                "{} has no tokens: the server refuses every request",
                path.display()
            ),
            "add one with `mlflow-secrets token create --principal NAME --role ROLE >> FILE`",
        ),
        Ok(t) => Check::ok(
            "tokens_file",
            format!("{} token(s), every line valid", t.len()),
        ),
        Err(e) => Check::fail(
            "tokens_file",
            e.to_string(),
            "fix or remove the named line (`mlflow-secrets token create` prints valid ones)",
        ),
    }
}

/// `path` must exist, be owned by this user and not be writable by group
/// or others (the rules `serve` applies to a home); a group- or
/// world-readable KEK or tokens file is a warning.
pub fn private_path_check(name: &str, path: &Path, what: &str) -> Check {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Follow links: a Kubernetes projected volume's files are links
        // into its `..data` directory, and what matters is their target.
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                return Check::fail(
                    name,
                    format!("{what} {}: {e}", path.display()),
                    format!("create it, or point the configuration at the right {what}"),
                );
            }
        };
        let mode = meta.mode() & 0o7777;
        let owner = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        if let Some(me) = owner
            && meta.uid() != me
        {
            return Check::fail(
                name,
                format!(
                    "{what} {} is owned by uid {}, not by this user (uid {me})",
                    path.display(),
                    meta.uid()
                ),
                "`chown` it to the user that runs mlflow-secrets: another user could have planted it",
            );
        }
        if mode & 0o022 != 0 {
            return Check::fail(
                name,
                format!(
                    "{what} {} is writable by group or others (mode {mode:o})",
                    path.display()
                ),
                format!("`chmod go-w {}`", path.display()),
            );
        }
        if !meta.is_dir() && mode & 0o044 != 0 {
            return Check::warn(
                name,
                format!(
                    "{what} {} is readable by group or others (mode {mode:o})",
                    path.display()
                ),
                format!("`chmod 600 {}`", path.display()),
            );
        }
        Check::ok(
            name,
            format!("{} mode {mode:o}, owned by this user", path.display()),
        )
    }
    #[cfg(not(unix))]
    {
        Check::skip(
            name,
            format!("{what} {}: permissions not checked here", path.display()),
        )
    }
}
