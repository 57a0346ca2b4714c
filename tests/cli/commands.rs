//! End-to-end tests of the `mlflow-secrets` binary (docs/design.md §9): each test
//! runs the built binary against a temporary SQLite database and keystore.
//!
//! Every invocation goes through [`Env::run`], which asserts that no secret
//! value or passphrase the test has used appears on stdout or stderr
//! (docs/design.md §10 rule 2). Each process derives its KEKs with PBKDF2, so the
//! tests keep the number of invocations modest; bulk data is written through
//! the library instead.

use mlflow_secrets::model::ResourceRef;
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mlflow_secrets::keystore::{Keystore, KeystoreConfig, KeystoreHandle, PassphraseSource};
use mlflow_secrets::store::{SecretsStore, SqlStore};
use mlflow_secrets::value::SecretValue;
use secrecy::ExposeSecret;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mlflow-secrets");

/// A scratch keystore, passphrase source and database.
struct Env {
    _tmp: tempfile::TempDir,
    ks: PathBuf,
    pass: PathBuf,
    db: PathBuf,
    /// Strings that must never be printed: values and passphrases.
    forbidden: RefCell<Vec<String>>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    what: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "{} failed\nstdout: {}\nstderr: {}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    fn fails(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "{}: expected exit {code}\nstdout: {}\nstderr: {}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {}", self.what, self.stdout))
    }

    /// The single `error:` line of a failed command.
    fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected one line: {}",
            self.what,
            self.stderr
        );
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        lines[0]
    }
}

impl Env {
    /// A passphrase file (one passphrase for every version).
    fn with_pass_file(pass: &str) -> Self {
        let env = Self::bare();
        std::fs::write(&env.pass, format!("{pass}\n")).unwrap();
        env.forbid(pass);
        env
    }

    /// [`Env::with_pass_file`] and a keystore generated with it.
    fn with_keystore(pass: &str) -> Self {
        let env = Self::with_pass_file(pass);
        env.run(&["kek", "generate", "-q"]).ok();
        env
    }

    /// A passphrase directory with `v1` (the projected-Secret form).
    fn with_pass_dir(v1: &str) -> Self {
        let env = Self::bare();
        std::fs::create_dir(&env.pass).unwrap();
        env.set_dir_pass(1, v1);
        env
    }

    fn bare() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().to_path_buf();
        Self {
            ks: p.join("keystore"),
            pass: p.join("kek-pass"),
            db: p.join("t.db"),
            _tmp: tmp,
            forbidden: RefCell::new(Vec::new()),
        }
    }

    fn set_dir_pass(&self, version: u32, pass: &str) {
        std::fs::write(self.pass.join(format!("v{version}")), pass).unwrap();
        self.forbid(pass);
    }

    fn forbid(&self, s: &str) {
        self.forbidden.borrow_mut().push(s.to_string());
    }

    /// `create <name> --value-stdin`, which must succeed; the value joins
    /// the strings no output may contain.
    fn create(&self, name: &str, value: &str) -> Run {
        self.forbid(value);
        self.run_stdin(&["create", name, "--value-stdin"], Some(value))
            .ok()
    }

    /// The JSON a command that must succeed prints (`-o json`).
    fn json(&self, args: &[&str]) -> Value {
        self.run(args).ok().json()
    }

    fn uri(&self) -> String {
        format!("sqlite://{}", self.db.display())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("MLFLOW_SECRETS_KEK_PASSPHRASE_FILE", &self.pass)
            .env("MLFLOW_SECRETS_KEYSTORE_PATH", &self.ks)
            .env("MLFLOW_SECRETS_STORE_URI", self.uri())
            .env("USER", "tester")
            .env_remove("MLFLOW_SECRETS_TEST_MODE")
            .env_remove("MLFLOW_SECRETS_WORKSPACE")
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let out = testkit::output_with_stdin(self.cmd(args), stdin);
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what: format!("mlflow-secrets {}", args.join(" ")),
        };
        self.assert_no_leak(&run);
        run
    }

    fn assert_no_leak(&self, run: &Run) {
        for secret in self.forbidden.borrow().iter() {
            assert!(
                !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
                "{} printed a secret value or passphrase",
                run.what
            );
        }
    }

    /// The library's view of the same store, for bulk writes and for
    /// reading values back (which the CLI never prints).
    async fn store(&self) -> SqlStore {
        let cfg = KeystoreConfig {
            dir: self.ks.clone(),
            passphrase: PassphraseSource::new(&self.pass),
            test_mode: false,
        };
        let ks = Keystore::load_async(cfg).await.unwrap();
        let store = SqlStore::connect(&self.uri(), KeystoreHandle::new(ks))
            .await
            .unwrap();
        store.ensure_schema(true).await.unwrap();
        store
    }
}

fn string_of(v: &SecretValue) -> String {
    match v {
        SecretValue::String(s) => s.expose_secret().to_string(),
        other => panic!("expected a string value, got {other:?}"),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `kek list -o json` as version -> (state, secrets).
fn kek_table(env: &Env) -> Vec<(u64, String, Value)> {
    env.json(&["kek", "list", "-o", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["state"].as_str().unwrap().to_string(),
                r["secrets"].clone(),
            )
        })
        .collect()
}

#[test]
fn quick_start_flow_and_json_output() {
    let env = Env::with_pass_file("quick start passphrase");
    let value = "sk-proj-QUICKSTART-abcdefghijklmnop";
    env.forbid(value);

    let r = env.json(&["kek", "generate", "-o", "json"]);
    assert_eq!(r["version"], 1);
    assert_eq!(r["state"], "active");
    assert!(Path::new(r["path"].as_str().unwrap()).is_file());

    env.run_stdin(
        &["create", "openai-key", "--value-stdin"],
        Some(&format!("{value}\n")),
    )
    .ok();

    let s = env.json(&["get", "openai-key", "-o", "json"]);
    assert_eq!(s["secret_name"], "openai-key");
    assert_eq!(s["workspace"], "default");
    assert_eq!(s["state"], "ACTIVE");
    assert_eq!(s["created_by"], "cli:tester");
    assert!(s["masked_value"].as_str().unwrap().contains("..."));
    for field in [
        "value",
        "ciphertext",
        "wrapped_dek",
        "kek_version",
        "aad_hash",
    ] {
        assert!(s.get(field).is_none(), "get -o json has {field}");
    }
    let human = env.run(&["get", "openai-key"]).ok();
    assert!(human.stdout.contains("openai-key") && human.stdout.contains("ACTIVE"));

    let b = env.json(&[
        "bind",
        "openai-key",
        "--resource-type",
        "SCORER_JOB",
        "--resource-id",
        "job-42",
        "--name",
        "OPENAI_API_KEY",
        "-o",
        "json",
    ]);
    assert_eq!(b["secret_id"], s["secret_id"]);

    let bl = env.json(&["list-bindings", "--secret", "openai-key", "-o", "json"]);
    let bindings = bl["bindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0]["binding_name"], "OPENAI_API_KEY");
    assert_eq!(bindings[0]["resource_id"], "job-42");

    let v = env.json(&["verify", "-o", "json"]);
    assert_eq!(v["total"], 1);
    assert_eq!(v["ok"], 1);
    assert_eq!(v["failed"].as_array().unwrap().len(), 0);

    let l = env.json(&["list", "-o", "json"]);
    assert_eq!(l["secrets"].as_array().unwrap().len(), 1);
    assert!(l["next_page_token"].is_null());
    let table = env.run(&["list"]).ok();
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);

    assert_eq!(
        kek_table(&env),
        vec![(1, "active".to_string(), Value::from(1))]
    );

    // create, bind, verify: the audit chain is intact and counts them.
    let a = env.json(&["audit", "verify", "-o", "json"]);
    assert_eq!(a["ok"], true);
    assert!(a["rows"].as_u64().unwrap() >= 3, "{a}");
}

#[test]
fn value_flags_warn_and_never_print_values() {
    let env = Env::with_keystore("values passphrase");

    let argv_value = "sk-ARGV-value-0123456789";
    env.forbid(argv_value);
    let r = env
        .run(&["create", "from-argv", "--value", argv_value])
        .ok();
    assert!(r.stderr.contains("warning: --value"), "{}", r.stderr);
    assert!(r.stderr.contains("shell history"), "{}", r.stderr);

    let file_value = "sk-FILE-value-abcdefghijk";
    env.forbid(file_value);
    let f = env._tmp.path().join("value.txt");
    std::fs::write(&f, format!("{file_value}\n")).unwrap();
    env.run(&["update", "from-argv", "--value-file", f.to_str().unwrap()])
        .ok();

    let json_value = "sk-JSON-value-zyxwvutsrqp";
    env.forbid(json_value);
    let jf = env._tmp.path().join("value.json");
    std::fs::write(
        &jf,
        format!(r#"{{"api_key": "{json_value}", "org": "org-1234567890abc"}}"#),
    )
    .unwrap();
    let s = env.json(&[
        "create",
        "from-json",
        "--shared",
        "--json-file",
        jf.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(s["is_shared"], true);

    // No flag and no terminal: refuse, and say which flags exist.
    let r = env.run(&["create", "no-value"]).fails(1);
    assert!(r.error_line().contains("--value-stdin"), "{}", r.stderr);

    // A bad JSON file is refused without echoing it.
    let bad = "sk-BAD-json-never-echoed";
    env.forbid(bad);
    std::fs::write(&jf, format!(r#"{{"k": ["{bad}"]}}"#)).unwrap();
    env.run(&["create", "bad-json", "--json-file", jf.to_str().unwrap()])
        .fails(1);

    // The stored values are the ones given, newline stripped.
    rt().block_on(async {
        let store = env.store().await;
        let s = store
            .get_secret_by_name("default", "from-argv")
            .await
            .unwrap();
        let v = store.get_secret_value(&s.secret_id, "test").await.unwrap();
        assert_eq!(string_of(&v), file_value);
        let s = store
            .get_secret_by_name("default", "from-json")
            .await
            .unwrap();
        match store.get_secret_value(&s.secret_id, "test").await.unwrap() {
            SecretValue::Object(m) => assert_eq!(m["api_key"].expose_secret(), json_value),
            other => panic!("expected an object, got {other:?}"),
        }
    });
}

#[test]
fn exit_codes() {
    let env = Env::with_pass_file("exit codes passphrase");
    // Usage errors are clap's: exit 2.
    env.run(&["create"]).fails(2);
    env.run(&["rewrap"]).fails(2);
    env.run(&["rewrap", "--all", "--kek-version", "1"]).fails(2);
    env.run(&["create", "x", "--value-stdin", "--value", "y"])
        .fails(2);
    env.run(&["list", "--state", "DELETED"]).fails(2);

    // Metadata commands need no keystore; anything that decrypts does, and
    // says in one line how to make one. (Neither creates the database:
    // `migrate` does.)
    env.run(&["migrate", "-q"]).ok();
    env.run(&["list"]).ok();
    let r = env.run(&["verify"]).fails(1);
    assert!(r.error_line().contains("kek generate"), "{}", r.stderr);

    env.run(&["kek", "generate", "-q"]).ok();
    let r = env.run(&["get", "no-such-secret"]).fails(1);
    assert!(r.error_line().contains("'no-such-secret'"), "{}", r.stderr);

    // Maintenance commands need the database itself, not a server.
    let r = env
        .run(&["--store-uri", "https://127.0.0.1:9", "verify"])
        .fails(1);
    assert!(
        r.error_line().contains("direct database access"),
        "{}",
        r.stderr
    );
    // Plain http:// is refused for a non-loopback server (the token would
    // travel in clear); no connection is attempted.
    let r = env
        .run(&["--store-uri", "http://10.0.0.1:5005", "list"])
        .fails(1);
    assert!(r.error_line().contains("https://"), "{}", r.stderr);
}

#[test]
fn rotation_with_passphrase_directory() {
    let env = Env::with_pass_dir("first passphrase v1");
    env.run(&["kek", "generate", "-q"]).ok();
    let values = [
        ("alpha", "sk-alpha-0123456789abcdef"),
        ("beta", "sk-beta-0123456789abcdef"),
        ("gamma", "sk-gamma-0123456789abcdef"),
    ];
    for (name, value) in values {
        env.create(name, value);
    }

    // The active version cannot be retired.
    env.run(&["kek", "retire", "--version", "1"]).fails(1);

    // A new passphrase for v2 lands in the projected directory, then rotate.
    env.set_dir_pass(2, "second passphrase v2");
    let r = env.json(&["kek", "rotate", "-o", "json"]);
    assert_eq!(r["version"], 2);
    assert_eq!(r["state"], "active");

    // v1 still holds rows: retiring it is refused and says what to do.
    let r = env.run(&["kek", "retire", "--version", "1"]).fails(1);
    assert!(r.error_line().contains("rewrap"), "{}", r.stderr);

    let r = env.json(&["rewrap", "--all", "-o", "json"]);
    assert_eq!(r["rewrapped"], 3);
    assert_eq!(r["to_version"], 2);

    assert_eq!(
        kek_table(&env),
        vec![
            (1, "decrypt_only".to_string(), Value::from(0)),
            (2, "active".to_string(), Value::from(3)),
        ]
    );
    let v = env.json(&["verify", "-o", "json"]);
    assert_eq!(v["ok"], 3);
    assert_eq!(v["by_kek_version"], serde_json::json!({"2": 3}));

    rt().block_on(async {
        let store = env.store().await;
        for (name, value) in values {
            let s = store.get_secret_by_name("default", name).await.unwrap();
            let v = store.get_secret_value(&s.secret_id, "test").await.unwrap();
            assert_eq!(string_of(&v), value, "{name} changed");
        }
    });

    env.run(&["kek", "retire", "--version", "1"]).ok();
    // v1's passphrase is no longer needed once it is retired.
    std::fs::remove_file(env.pass.join("v1")).unwrap();
    let states = kek_table(&env);
    assert_eq!(states[0].1, "retired");
    env.run(&["verify"]).ok();
}

#[test]
fn rewrap_survives_kill_9() {
    const N: usize = 3000;
    let env = Env::with_pass_dir("crash test passphrase v1");
    env.run(&["kek", "generate", "-q"]).ok();
    rt().block_on(async {
        let store = env.store().await;
        for i in 0..N {
            let v = SecretValue::from_string(format!("crash-value-{i:05}-xxxxxxxx")).unwrap();
            store
                .create_secret("default", &format!("s{i:05}"), &v, false, "test")
                .await
                .unwrap();
        }
    });
    env.forbid("crash-value-");
    env.set_dir_pass(2, "crash test passphrase v2");
    env.run(&["kek", "rotate", "-q"]).ok();

    // Start a slow rewrap and kill it hard once a batch has committed.
    let mut child = env
        .cmd(&[
            "rewrap",
            "--all",
            "--batch-size",
            "50",
            "--log-level",
            "info",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("rewrap progress") {
                let _ = tx.send(());
            }
        }
    });
    let started = Instant::now();
    let _ = rx.recv_timeout(Duration::from_secs(120));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    reader.join().unwrap();
    eprintln!(
        "rewrap killed after {:?} (exit status {status:?})",
        started.elapsed()
    );

    let (total, counts) = rt().block_on(async {
        let store = env.store().await;
        (
            store.count_secrets().await.unwrap(),
            store.kek_version_counts().await.unwrap(),
        )
    });
    assert_eq!(total, N as u64, "rows lost by the interrupted rewrap");
    eprintln!("after the kill: {counts:?}");

    // A rerun finishes the job.
    let r = env.json(&["rewrap", "--all", "-o", "json"]);
    assert_eq!(
        r["rewrapped"].as_u64().unwrap(),
        counts.get(&1).copied().unwrap_or(0)
    );
    let v = env.json(&["verify", "-o", "json"]);
    assert_eq!(v["total"], N as u64);
    assert_eq!(v["ok"], N as u64);
    assert_eq!(v["by_kek_version"], serde_json::json!({"2": N}));

    // A plain `list` pages through everything; --max-results gives one page.
    let l = env.json(&["list", "-o", "json"]);
    assert_eq!(l["secrets"].as_array().unwrap().len(), N);
    let p = env.json(&["list", "--max-results", "10", "-o", "json"]);
    assert_eq!(p["secrets"].as_array().unwrap().len(), 10);
    let token = p["next_page_token"].as_str().unwrap();
    let p2 = env.json(&[
        "list",
        "--max-results",
        "10",
        "--page-token",
        token,
        "-o",
        "json",
    ]);
    assert_eq!(p2["secrets"][0]["secret_name"], "s00010");
}

#[test]
fn delete_needs_confirmation_and_cascades() {
    let env = Env::with_keystore("delete passphrase");
    env.create("doomed", "sk-delete-me-0123456789");
    env.run(&[
        "bind",
        "doomed",
        "--resource-id",
        "job-1",
        "--name",
        "KEY",
        "-q",
    ])
    .ok();

    let r = env.run(&["delete", "doomed"]).fails(1);
    assert!(r.error_line().contains("--yes"), "{}", r.stderr);
    env.run(&["get", "doomed", "-q"]).ok();

    let r = env.json(&["delete", "doomed", "--yes", "-o", "json"]);
    assert_eq!(r["deleted"], true);
    assert_eq!(r["bindings_deleted"], 1);
    env.run(&["get", "doomed"]).fails(1);
    let b = env.json(&["list-bindings", "-o", "json"]);
    assert_eq!(b["bindings"].as_array().unwrap().len(), 0);
}

#[test]
fn audit_verify_detects_an_edited_row() {
    let env = Env::with_keystore("audit passphrase");
    env.create("audited", "sk-audit-0123456789abc");
    env.run(&["revoke", "audited", "-q"]).ok();
    let r = env.run(&["audit", "verify"]).ok();
    assert!(r.stdout.contains("intact"), "{}", r.stdout);
    assert!(r.stdout.contains("2 row(s)"), "{}", r.stdout);

    rt().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&env.uri()).await.unwrap();
        // Someone with database access drops the append-only guard first.
        for sql in [
            "DROP TRIGGER trg_secrets_audit_log_no_update",
            "UPDATE secrets_audit_log SET principal = 'someone-else' WHERE seq = 1",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    });
    let r = env.run(&["audit", "verify"]).fails(1);
    assert!(r.stdout.contains("BROKEN at row 1"), "{}", r.stdout);
}

#[test]
fn passphrase_from_a_flag_must_also_be_in_the_configured_source() {
    let env = Env::bare();
    let pass = "stdin passphrase for v1";
    env.forbid(pass);
    let r = env
        .run_stdin(&["kek", "generate", "--passphrase-stdin"], Some(pass))
        .ok();
    assert!(r.stderr.contains("warning:"), "{}", r.stderr);
    assert!(
        r.stderr.contains(env.pass.to_str().unwrap()),
        "{}",
        r.stderr
    );
    // Until it is stored there, the keystore does not load.
    let r = env.run(&["verify"]).fails(1);
    assert!(r.error_line().contains("no passphrase for KEK version 1"));
    std::fs::write(&env.pass, pass).unwrap();
    env.run(&["migrate", "-q"]).ok();
    env.run(&["verify"]).ok();
    // A second generate refuses to overwrite the keystore.
    let r = env.run(&["kek", "generate"]).fails(1);
    assert!(r.error_line().contains("kek rotate"), "{}", r.stderr);
}

/// The binary in `cwd` with none of the caller's configuration (no store,
/// keystore or passphrase from the environment): what a newcomer runs.
fn bare_cmd(cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("MLFLOW_SECRETS_") || k == "XDG_DATA_HOME" || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

fn output(mut c: Command) -> Run {
    let out = c.stdin(Stdio::null()).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what: format!("{c:?}"),
    }
}

#[test]
fn provider_field_and_service_account_flags() {
    let env = Env::with_keystore("field binding passphrase");
    let key = "azure-KEY-0123456789abcdef";
    env.forbid(key);
    let jf = env._tmp.path().join("azure.json");
    std::fs::write(
        &jf,
        format!(r#"{{"api_key":"{key}","api_base":"https://x.openai.azure.com"}}"#),
    )
    .unwrap();
    let s = env.json(&[
        "create",
        "azure",
        "--shared",
        "--provider",
        "azure",
        "--json-file",
        jf.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(s["provider"], "azure");
    let b = env.json(&[
        "bind",
        "azure",
        "--resource-id",
        "job-1",
        "--name",
        "AZURE_API_KEY",
        "--field",
        "api_key",
        "--service-account",
        "scorer",
        "--service-account",
        "eval",
        "-o",
        "json",
    ]);
    assert_eq!(b["value_field"], "api_key");
    assert_eq!(b["service_accounts"], serde_json::json!(["scorer", "eval"]));
    let table = env.run(&["list-bindings"]).ok();
    assert!(table.stdout.contains("azure[api_key]"), "{}", table.stdout);
    // A field the value does not have is refused, naming it (keys only).
    let bind_azure = |extra: &[&str]| {
        let mut args = vec!["bind", "azure", "--resource-id", "job-1", "--name"];
        args.extend_from_slice(extra);
        env.run(&args).fails(1)
    };
    let r = bind_azure(&["AZURE_ORG", "--field", "org"]);
    assert!(
        r.error_line().contains("'org'") && r.error_line().contains("api_base"),
        "{}",
        r.stderr
    );
    let r = bind_azure(&["X_KEY", "--service-account", "Not_DNS"]);
    assert!(r.error_line().contains("DNS-1123"), "{}", r.stderr);
    rt().block_on(async {
        let bound = env
            .store()
            .await
            .get_all_bound_values(ResourceRef::new("default", "SCORER_JOB", "job-1"), "test")
            .await
            .unwrap();
        assert_eq!(string_of(&bound["AZURE_API_KEY"].value), key);
    });
}

#[test]
fn reserved_binding_names_are_refused_by_the_cli() {
    let env = Env::with_keystore("reserved names passphrase");
    env.run(&[
        "create",
        "u",
        "--shared",
        "--value",
        "https://attacker.example/v1",
    ])
    .ok();
    for name in [
        "LD_PRELOAD",
        "PYTHONPATH",
        "https_proxy",
        "PATH",
        "MLFLOW_SECRETS_STORE_URI",
    ] {
        let r = env
            .run(&["bind", "u", "--resource-id", "job-1", "--name", name])
            .fails(1);
        assert!(
            r.error_line().contains("reserved") && r.error_line().contains(name),
            "{}",
            r.stderr
        );
    }
    let b = env.json(&["list-bindings", "-o", "json"]);
    assert!(b["bindings"].as_array().unwrap().is_empty(), "{b}");
}

#[test]
fn revoke_shreds_and_verify_counts_it_apart() {
    let env = Env::with_keystore("revoke shred passphrase");
    let leaked = "sk-LEAKED-0123456789abcdef";
    env.create("leaked", leaked);
    env.run_stdin(
        &["create", "kept", "--value-stdin"],
        Some("sk-KEPT-0123456789abcdef"),
    )
    .ok();
    let before = rt().block_on(async {
        let store = env.store().await;
        let s = store.get_secret_by_name("default", "leaked").await.unwrap();
        store.get_secret_value(&s.secret_id, "test").await.unwrap();
        s.secret_id
    });
    env.run(&["revoke", "leaked", "-q"]).ok();
    let v = env.json(&["verify", "-o", "json"]);
    assert_eq!(
        (v["total"].as_u64(), v["ok"].as_u64(), v["revoked"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{v}"
    );
    assert!(v["failed"].as_array().unwrap().is_empty());
    let human = env.run(&["verify"]).ok();
    assert!(human.stdout.contains("1 revoked"), "{}", human.stdout);
    rt().block_on(async {
        let store = env.store().await;
        // Not even the store's own internal read can bring it back.
        let e = store.get_secret_value(&before, "test").await.unwrap_err();
        assert!(e.to_string().contains("revoked"), "{e}");
    });
}

#[test]
fn test_mode_is_refused_with_shared_stores() {
    let env = Env::with_pass_file("test mode passphrase");
    for uri in [
        "postgres://secrets@db.example/secrets",
        "mysql://secrets@db.example/secrets",
        "https://secrets.example",
        "http://127.0.0.1:5005",
    ] {
        let r = output({
            let mut c = env.cmd(&["--store-uri", uri, "list"]);
            c.env("MLFLOW_SECRETS_TEST_MODE", "1");
            c
        })
        .fails(1);
        assert!(
            r.stderr.contains("test mode") && r.stderr.contains("refused"),
            "{uri}: {}",
            r.stderr
        );
    }
    // A local SQLite file is what test mode is for; its rows are KEK v0.
    let mut c = env.cmd(&["create", "t", "--value", "test-mode-value-0123"]);
    c.env("MLFLOW_SECRETS_TEST_MODE", "1");
    output(c).ok();
    let mut c = env.cmd(&["verify", "-o", "json"]);
    c.env("MLFLOW_SECRETS_TEST_MODE", "1");
    let v = output(c).ok().json();
    assert_eq!(v["by_kek_version"], serde_json::json!({"0": 1}), "{v}");
}

#[test]
fn read_and_maintenance_commands_never_create_a_database() {
    let env = Env::with_keystore("no create passphrase");
    for args in [
        vec!["verify"],
        vec!["list"],
        vec!["get", "x"],
        vec!["audit", "verify"],
        vec!["rewrap", "--all"],
        vec!["list-bindings"],
        vec!["kek", "retire", "--version", "1"],
    ] {
        let r = env.run(&args).fails(1);
        assert!(
            r.error_line().contains(env.db.to_str().unwrap())
                && r.error_line().contains("does not exist"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!env.db.exists(), "{args:?} created {}", env.db.display());
    }
    // `migrate` creates it, owner-only.
    env.run(&["migrate", "-q"]).ok();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env.db).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn kek_retire_needs_a_named_store_with_secrets() {
    let env = Env::with_keystore("retire guard passphrase");
    env.run(&["kek", "rotate", "-q"]).ok();
    // No store named: refused, whatever the default would hold.
    let mut c = env.cmd(&["kek", "retire", "--version", "1"]);
    c.env_remove("MLFLOW_SECRETS_STORE_URI")
        .current_dir(env._tmp.path());
    let r = output(c).fails(1);
    assert!(r.stderr.contains("named explicitly"), "{}", r.stderr);
    assert!(!env._tmp.path().join("mlflow-secrets.db").exists());
    // A named store with no secret at all: refused unless told it is fine.
    env.run(&["migrate", "-q"]).ok();
    let r = env.run(&["kek", "retire", "--version", "1"]).fails(1);
    assert!(
        r.error_line().contains("no secret") && r.error_line().contains("--empty-store-ok"),
        "{}",
        r.stderr
    );
    assert_eq!(kek_table(&env)[0].1, "decrypt_only");
    env.run(&["kek", "retire", "--version", "1", "--empty-store-ok", "-q"])
        .ok();
    assert_eq!(kek_table(&env)[0].1, "retired");
}

#[test]
fn audit_verify_head_flag() {
    let env = Env::with_keystore("audit head passphrase");
    env.run(&["create", "a", "--value", "audit-head-value-0123"])
        .ok();
    let entries = rt().block_on(async {
        env.store()
            .await
            .list_audit(&Default::default())
            .await
            .unwrap()
    });
    let last = entries.last().unwrap();
    let head = format!("{}:{}", last.seq, last.row_hash);
    let r = env.run(&["audit", "verify", "--head", &head]).ok();
    assert!(r.stdout.contains("exported head"), "{}", r.stdout);
    let wrong = format!("{}:{}", last.seq, "0".repeat(64));
    let r = env.run(&["audit", "verify", "--head", &wrong]).fails(1);
    assert!(r.stdout.contains("rewritten"), "{}", r.stdout);
    env.run(&["audit", "verify", "--head", "not-a-head"])
        .fails(2);
}

#[test]
fn a_group_or_world_writable_home_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join(".mlflow-secrets");
    std::fs::create_dir(&home).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for args in [vec!["list"], vec!["serve", "--listen", "127.0.0.1:0"]] {
        let r = output(bare_cmd(tmp.path(), &args)).fails(1);
        assert!(
            r.stderr.contains("local home") && r.stderr.contains("writable"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(
        !home.join("keystore").exists(),
        "a refused home was written to"
    );
}

/// docs/design.md §5: a newcomer's `serve` creates `./.mlflow-secrets/`, and the CLI
/// run in the same directory afterwards uses that home's database, keystore
/// and passphrase, so it lists the secret created through the server.
#[test]
fn serve_then_the_cli_in_the_same_directory_see_one_store() {
    if Path::new("/etc/mlflow/keystore/kek-v1.json").exists() {
        eprintln!("skipping: a keystore at /etc/mlflow/keystore takes precedence over the home");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = bare_cmd(
        tmp.path(),
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let value = "sk-SERVED-0123456789abcdef";
    let body = format!(r#"{{"secret_name":"served","value":"{value}","provider":"openai"}}"#);
    let started = Instant::now();
    let created = loop {
        match http_post(port, "/api/2.0/mlflow/secrets/create", &body) {
            Ok(r) => break r,
            Err(_) if started.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("serve did not answer: {e}"),
        }
    };
    assert!(created.contains("\"provider\":\"openai\""), "{created}");
    let list = output(bare_cmd(tmp.path(), &["list", "-o", "json"])).ok();
    let names: Vec<String> = list.json()["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["secret_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["served"], "{}", list.stdout);
    // And the CLI decrypts with the home's keystore and passphrase.
    let v = output(bare_cmd(tmp.path(), &["verify", "-o", "json"]))
        .ok()
        .json();
    assert_eq!(v["ok"], 1, "{v}");
    assert!(
        !tmp.path().join("mlflow-secrets.db").exists(),
        "the CLI opened another store"
    );
    // The SQLite files of the running server are owner-only, -wal and -shm too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [
            "mlflow-secrets.db",
            "mlflow-secrets.db-wal",
            "mlflow-secrets.db-shm",
        ] {
            let p = tmp.path().join(".mlflow-secrets").join(f);
            let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains(value));
    // serve exports the audit head at start (docs/design.md §2).
    assert!(log.contains("audit head seq="), "{log}");
}

/// One POST over a plain socket; the body of a 200 answer.
fn http_post(port: u16, path: &str, body: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(out));
    }
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
