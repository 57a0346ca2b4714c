//! Fixtures of the `backup` / `restore` / `doctor` tests (tests/cli and
//! tests/k8s): a keystore made with the CLI, the CLI binary with that
//! environment, fresh server databases, and seeding through the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::db::{require_all, with_database};
use mlflow_secrets::keystore::{Keystore, KeystoreConfig, KeystoreHandle, PassphraseSource};
use mlflow_secrets::store::{SecretsStore, SqlStore};
use mlflow_secrets::value::SecretValue;
use sqlx::Connection;

pub const PASS_V1: &str = "ops drill passphrase number one";
pub const PASS_V2: &str = "ops drill passphrase number two";

/// A working directory with a passphrase directory (`v1`, `v2`), a
/// keystore path and a store URI, and the CLI run against them.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub pass: PathBuf,
    pub keystore: PathBuf,
    pub store_uri: String,
}

impl Setup {
    /// A new setup on a SQLite file in the temporary directory, or on
    /// `store_uri` when given. The keystore is not created yet.
    pub fn new(store_uri: Option<String>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let pass = tmp.path().join("pass");
        std::fs::create_dir(&pass).unwrap();
        std::fs::write(pass.join("v1"), format!("{PASS_V1}\n")).unwrap();
        std::fs::write(pass.join("v2"), format!("{PASS_V2}\n")).unwrap();
        let keystore = tmp.path().join("keystore");
        let store_uri = store_uri
            .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("store.db").display()));
        Self {
            tmp,
            pass,
            keystore,
            store_uri,
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// The CLI with this setup's keystore, passphrases and store; nothing
    /// from the caller's environment or home.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(crate::bin());
        c.current_dir(self.tmp.path())
            .env_remove("MLFLOW_SECRETS_TEST_MODE")
            .env_remove("MLFLOW_SECRETS_DATA_DIR")
            .env_remove("KUBECONFIG")
            .env("XDG_DATA_HOME", self.tmp.path().join("xdg"))
            .env("MLFLOW_SECRETS_KEYSTORE_PATH", &self.keystore)
            .env("MLFLOW_SECRETS_KEK_PASSPHRASE_FILE", &self.pass)
            .env("MLFLOW_SECRETS_STORE_URI", &self.store_uri);
        c
    }

    /// Run the CLI; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd().args(args).output().expect("run mlflow-secrets");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run the CLI and require exit 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.cli(args);
        assert_eq!(code, 0, "mlflow-secrets {args:?} failed:\n{out}\n{err}");
        out
    }

    /// `kek generate` with the v1 passphrase, as a user does it.
    pub fn generate_keystore(&self) {
        let p = self.pass.join("v1");
        self.ok(&["kek", "generate", "--passphrase-file", p.to_str().unwrap()]);
    }

    /// `kek rotate` with the v2 passphrase, as a user does it.
    pub fn rotate(&self) {
        let p = self.pass.join("v2");
        self.ok(&["kek", "rotate", "--passphrase-file", p.to_str().unwrap()]);
    }

    pub fn keystore_config(&self, dir: &Path) -> KeystoreConfig {
        KeystoreConfig {
            dir: dir.to_path_buf(),
            passphrase: PassphraseSource::new(&self.pass),
            test_mode: false,
        }
    }

    /// The store in this process, with the keystore at `dir`.
    pub async fn store_at(&self, uri: &str, dir: &Path) -> SqlStore {
        let ks = Keystore::load(&self.keystore_config(dir)).unwrap();
        SqlStore::connect_existing(uri, KeystoreHandle::new(ks))
            .await
            .unwrap()
    }
}

/// A value long and distinct enough that finding it in an archive can only
/// mean a leak (the masked form shows at most 8 characters).
pub fn value_for(name: &str) -> String {
    format!("sk-ops-drill-VALUE-{name}-7c1f9e2a4b6d8f0a1c3e5a7b9d")
}

/// Create secret `name` in `default` with [`value_for`]`(name)` through the
/// store (audited); returns the value.
pub async fn create_drill_secret(
    store: &SqlStore,
    name: &str,
    shared: bool,
    actor: &str,
) -> String {
    let v = value_for(name);
    let value = SecretValue::from_string(v.clone()).unwrap();
    store
        .create_secret("default", name, &value, shared, actor)
        .await
        .unwrap();
    v
}

/// Create `n` secrets `<prefix>-<i>` through the store; returns name → value.
pub async fn seed(store: &SqlStore, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let v = create_drill_secret(store, &name, i % 2 == 0, "test:seed").await;
        out.insert(name, v);
    }
    out
}

/// Every secret of `store` decrypts to `expected[name]`; returns how many.
pub async fn check_values(store: &SqlStore, expected: &BTreeMap<String, String>) -> usize {
    use mlflow_secrets::model::SecretFilter;
    let mut n = 0;
    let mut filter = SecretFilter::default();
    loop {
        let page = store.list_secrets(&filter).await.unwrap();
        for s in &page.items {
            if s.state == mlflow_secrets::model::SecretState::Revoked {
                n += 1;
                continue;
            }
            let want = expected
                .get(&s.secret_name)
                .unwrap_or_else(|| panic!("restored secret {} was never created", s.secret_name));
            let got = store
                .get_secret_value(&s.secret_id, "test:check")
                .await
                .unwrap();
            let SecretValue::String(got) = got else {
                panic!("secret {} is not a string value", s.secret_name)
            };
            use secrecy::ExposeSecret;
            assert_eq!(
                got.expose_secret(),
                want.as_str(),
                "secret {} does not decrypt to its value",
                s.secret_name
            );
            n += 1;
        }
        match page.next_page_token {
            Some(t) => filter.page_token = Some(t),
            None => break,
        }
    }
    n
}

/// The admin URL of a server backend from `var`, or `None` (with a line
/// saying so) when it is not set and not required.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                !require_all(),
                "{var} is not set but MLFLOW_SECRETS_REQUIRE_ALL_BACKENDS=1: start the databases with scripts/db.sh up"
            );
            eprintln!("skipping: {var} is not set (run scripts/db.sh up)");
            None
        }
    }
}

/// A fresh empty database on the server of `admin`; returns (name, URL).
pub async fn fresh_database(admin: &str, tag: &str) -> (String, String) {
    sqlx::any::install_default_drivers();
    let name = format!(
        "ops_{tag}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut conn = sqlx::AnyConnection::connect(admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    (name.clone(), with_database(admin, &name))
}

/// The password of a `scheme://user:password@host/...` URL (for MYSQL_PWD).
pub fn url_password(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let auth = rest.rsplit_once('@').map_or("", |(a, _)| a);
    auth.split_once(':').map_or("", |(_, p)| p).to_string()
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---- `doctor` (tests/cli/ops_doctor.rs, tests/k8s/ops_doctor.rs)

/// A keystore, a migrated store and one secret.
pub async fn healthy() -> Setup {
    let s = Setup::new(None);
    s.generate_keystore();
    s.ok(&["migrate"]);
    let store = s.store_at(&s.store_uri, &s.keystore).await;
    seed(&store, "doc", 2).await;
    s
}

/// Run doctor with `-o json`; returns (exit code, report, text output).
pub fn doctor(s: &Setup, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec!["doctor", "-o", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = s.cli(&args);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}{err}"));
    let mut text_args = vec!["doctor"];
    text_args.extend_from_slice(extra);
    let (text_code, text, text_err) = s.cli(&text_args);
    assert_eq!(code, text_code, "the table and JSON runs disagree");
    let all = format!("{out}{err}{text}{text_err}");
    for secret in [PASS_V1, PASS_V2, &value_for("doc-0"), &value_for("doc-1")] {
        assert!(
            !all.contains(secret),
            "doctor printed a passphrase or a value"
        );
    }
    (code, report, format!("{text}{text_err}"))
}

/// The one check named `name`.
pub fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

/// Exit 1, and `name` failed with a remedy containing `remedy`, listed in
/// the table's remedies too.
pub fn assert_fails(s: &Setup, extra: &[&str], name: &str, detail: &str, remedy: &str) {
    let (code, report, text) = doctor(s, extra);
    assert_eq!(code, 1, "doctor should fail: {text}");
    let c = check(&report, name);
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains(detail), "{c}");
    assert!(c["remedy"].as_str().unwrap().contains(remedy), "{c}");
    assert!(text.contains(&format!("{name} (FAIL): ")), "{text}");
    assert!(
        text.contains(name) && text.contains("error: doctor found"),
        "{text}"
    );
}
