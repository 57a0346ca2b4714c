//! Fixtures of the tests against real MLflow (tests/cli/mlflow_import.rs,
//! tests/cli/mlflow_push.rs, tests/k8s/mlflow_sync.rs): the pinned MLflow
//! venv (`scripts/mlflow-env.sh`), MLflow's own store code
//! (tests/testkit/gateway.py), a scratch keystore and store of ours, and the
//! binary ([`crate::bin`]).
//!
//! `MLFLOW_SECRETS_MLFLOW=off` skips these tests with one line;
//! `scripts/test.sh` sets `require`, and otherwise the venv is installed on
//! first use.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use mlflow_secrets::keystore::{self, KeystoreConfig, KeystoreHandle, NewKekOptions};
use mlflow_secrets::store::{SecretsStore, SqlStore};
use mlflow_secrets::value::SecretValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// The passphrase of the MLflow installations under test.
pub const MLFLOW_PASS: &str = "mlflow gateway test passphrase";
/// Our own keystore's passphrase.
pub const OUR_PASS: &str = "our keystore test passphrase";

/// Skip the calling test (one line on stderr) when MLflow tests are off.
#[macro_export]
macro_rules! mlflow_skip_if_off {
    () => {
        if !$crate::mlflow::enabled() {
            return;
        }
    };
}

pub fn enabled() -> bool {
    if std::env::var("MLFLOW_SECRETS_MLFLOW").as_deref() == Ok("off") {
        eprintln!("skipping: MLFLOW_SECRETS_MLFLOW=off (tests against real MLflow are disabled)");
        return false;
    }
    true
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The pinned venv's python3 (installed on first use, then cached).
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new(repo().join("scripts/mlflow-env.sh"))
            .arg("python")
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/mlflow-env.sh");
        assert!(
            out.status.success(),
            "scripts/mlflow-env.sh python failed (set MLFLOW_SECRETS_MLFLOW=off to skip MLflow tests)"
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Run gateway.py (MLflow's store code) with MLflow's passphrase.
pub fn gateway_py(args: &[&str], stdin: Option<&Value>) -> Output {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg(repo().join("tests/testkit/gateway.py"))
        .args(args)
        .env("MLFLOW_CRYPTO_KEK_PASSPHRASE", MLFLOW_PASS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gateway.py");
    let mut input = child.stdin.take().unwrap();
    if let Some(v) = stdin {
        input.write_all(v.to_string().as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gateway.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Create gateway secrets with MLflow's `SqlAlchemyStore.create_gateway_secret`;
/// returns (name, MLflow secret id) in order.
pub fn mlflow_seed(db_uri: &str, specs: &Value) -> Vec<(String, String)> {
    let out = gateway_py(&["seed", "--db-uri", db_uri], Some(specs));
    secret_rows(&out.stdout)
        .map(|(name, id, _)| (name, id))
        .collect()
}

/// gateway.py's JSON array of secrets as (name, id, provider).
fn secret_rows(stdout: &[u8]) -> impl Iterator<Item = (String, String, Option<String>)> {
    let v: Value = serde_json::from_slice(stdout).unwrap();
    let Value::Array(rows) = v else {
        panic!("gateway.py printed no array")
    };
    rows.into_iter().map(|e| {
        (
            e["name"].as_str().unwrap().to_string(),
            e["secret_id"].as_str().unwrap().to_string(),
            e["provider"].as_str().map(str::to_string),
        )
    })
}

/// What MLflow's own decrypt path (`SqlAlchemyStore._get_decrypted_secret`)
/// reads for every gateway secret, by name, via a file so no value is
/// printed.
pub fn mlflow_decrypt_all(db_uri: &str) -> serde_json::Map<String, Value> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("values.json");
    gateway_py(
        &[
            "decrypt",
            "--db-uri",
            db_uri,
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    match serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap() {
        Value::Object(m) => m,
        other => panic!("gateway.py decrypt wrote {}", other.to_string().len()),
    }
}

/// Every gateway secret of every workspace, decrypted by MLflow's own
/// `_decrypt_secret`, keyed `"<workspace>/<name>"` (the store's listing
/// sees one workspace at a time).
pub fn mlflow_decrypt_workspaces(db_uri: &str) -> serde_json::Map<String, Value> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("values.json");
    let args = [
        "decrypt-workspaces",
        "--db-uri",
        db_uri,
        "--out",
        out.to_str().unwrap(),
    ];
    gateway_py(&args, None);
    match serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap() {
        Value::Object(m) => m,
        other => panic!(
            "gateway.py decrypt-workspaces wrote {}",
            other.to_string().len()
        ),
    }
}

/// MLflow's gateway secrets: (name, id, provider).
pub fn mlflow_list(db_uri: &str) -> Vec<(String, String, Option<String>)> {
    let out = gateway_py(&["list", "--db-uri", db_uri], None);
    secret_rows(&out.stdout).collect()
}

/// A fresh SQLite file for MLflow: (SQLAlchemy URI, path).
pub fn mlflow_sqlite(dir: &Path) -> (String, PathBuf) {
    let path = dir.join("mlflow.db");
    (format!("sqlite:///{}", path.display()), path)
}

/// A fresh PostgreSQL database for MLflow, as SQLAlchemy names it, or `None`
/// when `MLFLOW_SECRETS_TEST_POSTGRES_URL` is unset (and not required).
/// SQLAlchemy 2.1 defaults `postgresql://` to psycopg 3; the venv has
/// psycopg2.
pub async fn mlflow_postgres() -> Option<String> {
    mlflow_database(
        "MLFLOW_SECRETS_TEST_POSTGRES_URL",
        "postgres://",
        "postgresql+psycopg2://",
    )
    .await
}

/// The same on MariaDB (`MLFLOW_SECRETS_TEST_MYSQL_URL`), with PyMySQL.
pub async fn mlflow_mysql() -> Option<String> {
    mlflow_database(
        "MLFLOW_SECRETS_TEST_MYSQL_URL",
        "mysql://",
        "mysql+pymysql://",
    )
    .await
}

/// A new database on the server of the admin URL in `var`, named for
/// SQLAlchemy (`ours` scheme replaced by `sqlalchemy`'s).
async fn mlflow_database(var: &str, ours: &str, sqlalchemy: &str) -> Option<String> {
    let Ok(admin) = std::env::var(var) else {
        assert!(
            std::env::var("MLFLOW_SECRETS_REQUIRE_ALL_BACKENDS").as_deref() != Ok("1"),
            "{var} is not set but all backends are required"
        );
        eprintln!("skipping MLflow on a database server: {var} is not set");
        return None;
    };
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("mlf_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let base = base.replacen(ours, sqlalchemy, 1);
    Some(format!("{base}/{name}"))
}

/// Our side: a keystore, a passphrase file and a SQLite store.
pub struct Ours {
    pub tmp: tempfile::TempDir,
    pub keystore: PathBuf,
    pub pass_file: PathBuf,
    pub store_uri: String,
    pub db_path: PathBuf,
}

impl Ours {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let pass_file = tmp.path().join("pass");
        std::fs::write(&pass_file, format!("{OUR_PASS}\n")).unwrap();
        let ks = tmp.path().join("keystore");
        keystore::generate(&ks, &SecretString::from(OUR_PASS), NewKekOptions::default()).unwrap();
        let db_path = tmp.path().join("ours.db");
        Self {
            store_uri: format!("sqlite://{}", db_path.display()),
            keystore: ks,
            pass_file,
            db_path,
            tmp,
        }
    }

    /// The binary, pointed at this keystore and store, with a clean MLflow
    /// environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(crate::bin());
        c.env("MLFLOW_SECRETS_KEYSTORE_PATH", &self.keystore)
            .env("MLFLOW_SECRETS_KEK_PASSPHRASE_FILE", &self.pass_file)
            .env("MLFLOW_SECRETS_STORE_URI", &self.store_uri)
            .env("USER", "tester")
            .env_remove("MLFLOW_SECRETS_TEST_MODE")
            .env_remove("MLFLOW_CRYPTO_KEK_PASSPHRASE")
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .env_remove("MLFLOW_TRACKING_USERNAME")
            .env_remove("MLFLOW_TRACKING_PASSWORD")
            .current_dir(self.tmp.path());
        c
    }

    /// Our store, opened through the library (to read values back).
    pub async fn store(&self) -> SqlStore {
        let cfg = KeystoreConfig {
            dir: self.keystore.clone(),
            passphrase: keystore::PassphraseSource::new(self.pass_file.clone()),
            test_mode: false,
        };
        let ks = keystore::Keystore::load(&cfg).unwrap();
        let store = SqlStore::connect(&self.store_uri, KeystoreHandle::new(ks))
            .await
            .unwrap();
        store.ensure_schema(true).await.unwrap();
        store
    }

    /// Our value of `name` in `default`, as MLflow-style JSON (a string
    /// value as `{"value": s}`).
    pub async fn value_json(&self, name: &str) -> Value {
        let store = self.store().await;
        let s = store.get_secret_by_name("default", name).await.unwrap();
        let v = store.get_secret_value(&s.secret_id, "test").await.unwrap();
        value_json(&v)
    }
}

/// A value as JSON (`{"value": s}` for a string), for comparisons.
pub fn value_json(v: &SecretValue) -> Value {
    match v {
        SecretValue::String(s) => serde_json::json!({ "value": s.expose_secret() }),
        SecretValue::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_string())))
                .collect(),
        ),
    }
}

/// The outcome of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Run `cmd`, and check that none of `forbidden` (values, passphrases)
/// appears in what it printed.
pub fn run(mut cmd: Command, forbidden: &[&str]) -> Run {
    let out = cmd.output().expect("run mlflow-secrets");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for f in forbidden {
        assert!(
            !r.stdout.contains(f) && !r.stderr.contains(f),
            "a value or passphrase was printed"
        );
    }
    r
}

/// A real `mlflow server` on loopback with a SQLite backend and
/// `MLFLOW_CRYPTO_KEK_PASSPHRASE` set; killed on drop.
pub struct MlflowServer {
    child: std::process::Child,
    pub url: String,
    pub db_uri: String,
    _dir: tempfile::TempDir,
}

/// The admin of [`MlflowServer::start_with_basic_auth`].
pub const MLFLOW_ADMIN: (&str, &str) = ("admin", "admin-pass-for-the-push-test-9137");

impl MlflowServer {
    pub async fn start() -> Self {
        Self::start_app(false, false).await
    }

    /// With MLflow's workspaces on (`MLFLOW_ENABLE_WORKSPACES`), and the
    /// workspaces `names` created through its REST API.
    pub async fn start_with_workspaces(names: &[&str]) -> Self {
        let server = Self::start_app(false, true).await;
        for name in names {
            let body = serde_json::json!({ "name": name }).to_string();
            let (status, text) = server.post("/api/3.0/mlflow/workspaces", &body).await;
            assert_eq!(status, 201, "create MLflow workspace {name}: {text}");
        }
        server
    }

    /// MLflow's basic-auth app (`--app-name basic-auth`, `mlflow[auth]`)
    /// with [`MLFLOW_ADMIN`] as its admin and its user database in the
    /// server's own directory.
    pub async fn start_with_basic_auth() -> Self {
        Self::start_app(true, false).await
    }

    async fn start_app(basic_auth: bool, workspaces: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db_uri, _) = mlflow_sqlite(dir.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mlflow = python().with_file_name("mlflow");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(mlflow);
        // Its own process group: `mlflow server` runs uvicorn as a child,
        // and drop must stop both.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        if basic_auth {
            let ini = dir.path().join("basic_auth.ini");
            std::fs::write(
                &ini,
                format!(
                    "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{}\n\
                     admin_username = {}\nadmin_password = {}\n\
                     authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
                    dir.path().join("basic_auth.db").display(),
                    MLFLOW_ADMIN.0,
                    MLFLOW_ADMIN.1
                ),
            )
            .unwrap();
            // The app refuses to start without a static key for its CSRF
            // tokens (browser forms; API clients send none).
            cmd.args(["server", "--app-name", "basic-auth"])
                .env("MLFLOW_AUTH_CONFIG_PATH", ini)
                .env("MLFLOW_FLASK_SERVER_SECRET_KEY", "push-test-flask-key-5521");
        } else {
            cmd.arg("server");
        }
        if workspaces {
            cmd.env("MLFLOW_ENABLE_WORKSPACES", "true");
        }
        let child = cmd
            .args(["--host", "127.0.0.1", "--workers", "1"])
            .args(["--port", &port.to_string(), "--backend-store-uri", &db_uri])
            .arg("--default-artifact-root")
            .arg(dir.path().join("artifacts"))
            .env("MLFLOW_CRYPTO_KEK_PASSPHRASE", MLFLOW_PASS)
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start mlflow server");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            db_uri,
            _dir: dir,
        };
        server.wait_ready(port).await;
        server
    }

    /// POST a JSON body to `path`: (status, body text).
    pub async fn post(&self, path: &str, body: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    async fn wait_ready(&self, port: u16) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                let req = format!(
                    "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                );
                if s.write_all(req.as_bytes()).await.is_ok() {
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf).await;
                    if buf.starts_with(b"HTTP/1.1 200") {
                        return;
                    }
                }
            }
            let log =
                std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default();
            assert!(
                std::time::Instant::now() < deadline,
                "mlflow server did not become ready in 240 s; its log:\n{log}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}
