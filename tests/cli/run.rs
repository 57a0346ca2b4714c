//! `mlflow-secrets run` through the real binary (docs/design.md §13,
//! docs/run.md): exit codes, signals, masking, credential scrubbing,
//! `--pristine`, file mode on tmpfs, `--dry-run`, a SQLite store and a live
//! `serve` over https with a runner token, parity with the webhook's
//! per-Job Secret, and MLflow's OpenAI judge reading the injected key.
//! Self-contained: every helper is in this file.

use mlflow_secrets::model::ResourceRef;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

const BIN: &str = env!("CARGO_BIN_EXE_mlflow-secrets");
const KEY: &str = "sk-run-test-0123456789abcdef";
const JOB: &str = "job-run";

/// A SQLite store in test mode with `OPENAI_API_KEY` and the three Azure
/// field bindings bound to [`JOB`].
struct Store {
    dir: tempfile::TempDir,
    azure_id: String,
}

fn clean(c: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("MLFLOW_SECRETS_") || k == "MLFLOW_CRYPTO_KEK_PASSPHRASE" {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "error");
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = Self {
            dir,
            azure_id: String::new(),
        };
        let id = |o: Output| -> String {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            v["secret_id"].as_str().unwrap().to_string()
        };
        id(s.cli(&["-o", "json", "create", "openai", "--value", KEY]));
        let azure = r#"{"api_key":"az-key-0123456789","api_base":"https://a.example","api_version":"2024-06-01"}"#;
        let f = s.json_file(azure);
        let azure_id = id(s.cli(&["-o", "json", "create", "azure", "--json-file", &f]));
        s.ok(&[
            "bind",
            "openai",
            "--resource-id",
            JOB,
            "--name",
            "OPENAI_API_KEY",
        ]);
        for (name, field) in [
            ("AZURE_API_KEY", "api_key"),
            ("AZURE_API_BASE", "api_base"),
            ("AZURE_API_VERSION", "api_version"),
        ] {
            s.ok(&[
                "bind",
                "azure",
                "--resource-id",
                JOB,
                "--name",
                name,
                "--field",
                field,
            ]);
        }
        Self { azure_id, ..s }
    }

    /// Write an object value to a file for `--json-file`; its path.
    fn json_file(&self, json: &str) -> String {
        let p = self.dir.path().join("value.json");
        std::fs::write(&p, json).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn uri(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("s.db").display())
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        clean(&mut c);
        c.current_dir(self.dir.path())
            .env("MLFLOW_SECRETS_TEST_MODE", "1")
            .env("MLFLOW_SECRETS_STORE_URI", self.uri())
            .stdin(Stdio::null());
        c
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `run --resource-id JOB <extra> -- sh -c SCRIPT`.
    fn run_sh(&self, extra: &[&str], script: &str) -> Command {
        let mut c = self.cmd();
        c.args(["run", "--resource-id", JOB])
            .args(extra)
            .args(["--", "sh", "-c", script]);
        c
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_no_value(o: &Output) {
    for stream in [&o.stdout, &o.stderr] {
        assert!(
            !text(stream).contains(KEY),
            "a value was printed: {}",
            text(stream)
        );
    }
}

/// Wait for `child` with a timeout; its exit status.
fn wait(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < end, "run did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(pid: u32) {
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Read `child`'s stdout until a line equals `want`.
fn read_until(out: &mut impl BufRead, want: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "no {want:?} line");
        if line.trim_end() == want {
            return;
        }
    }
}

#[test]
fn exit_codes() {
    let s = Store::new();
    let code = |c: &mut Command| c.output().unwrap().status.code();
    assert_eq!(code(&mut s.run_sh(&[], "exit 0")), Some(0));
    assert_eq!(code(&mut s.run_sh(&[], "exit 3")), Some(3));
    assert_eq!(
        code(&mut s.run_sh(&["--mask", "always"], "exit 3")),
        Some(3)
    );
    // Killed by SIGTERM: 128 + 15 from the supervisor.
    assert_eq!(
        code(&mut s.run_sh(&["--mask", "always"], "kill -TERM $$")),
        Some(143)
    );
    // run itself fails: no binding, an unknown --only name.
    for args in [
        vec!["run", "--resource-id", "nobody", "--", "true"],
        vec!["run", "--resource-id", JOB, "--only", "NOPE", "--", "true"],
    ] {
        let o = s.cli(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        let err = text(&o.stderr);
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    }
    let o = s.cli(&["run", "--resource-id", JOB, "--", "no-such-command-xyz"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(text(&o.stderr).contains("no-such-command-xyz: command not found"));
    let script = s.dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let o = s.cli(&["run", "--resource-id", JOB, "--", script.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(126), "{}", text(&o.stderr));
    // A revoked secret fails the whole run, naming it.
    s.ok(&["revoke", "openai"]);
    let o = s.cli(&["run", "--resource-id", JOB, "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("revoked"), "{}", text(&o.stderr));
}

#[test]
fn term_is_forwarded_exactly_once_and_file_mode_cleans_up() {
    let s = Store::new();
    let log = s.dir.path().join("terms");
    let script = format!(
        "trap 'echo TERM >> {}' TERM; echo ready; i=0; while [ $i -lt 15 ]; do sleep 0.1; i=$((i+1)); done; exit 0",
        log.display()
    );
    let mut child = s
        .run_sh(&["--mask", "always"], &script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "ready");
    sigterm(child.id());
    assert_eq!(wait(&mut child, 20).code(), Some(0));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "TERM\n");

    // File mode: the directory is gone after TERM kills the command.
    let mut child = s
        .run_sh(
            &["--inject", "file", "--mask", "never"],
            "echo \"$MLFLOW_SECRETS_DIR\"; echo ready; sleep 30",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut dir = String::new();
    out.read_line(&mut dir).unwrap();
    let dir = PathBuf::from(dir.trim());
    assert!(dir.join("OPENAI_API_KEY").exists());
    read_until(&mut out, "ready");
    sigterm(child.id());
    // sh waits for its `sleep`; TERM reaches sh, which dies at once.
    assert_eq!(wait(&mut child, 20).code(), Some(143));
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[test]
fn file_mode_files_are_0400_in_a_0700_tmpfs_dir_and_disk_is_refused() {
    let s = Store::new();
    let o = s
        .run_sh(
            &["--inject", "file", "--mask", "never"],
            "d=$MLFLOW_SECRETS_DIR; stat -c %a \"$d\"; stat -c %a \"$d/AZURE_API_KEY\"; stat -f -c %T \"$d\"; \
             cat \"$d/AZURE_API_BASE\"; echo; env | grep -c '^OPENAI_API_KEY=' || true; echo \"$d\"",
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..5],
        ["700", "400", "tmpfs", "https://a.example", "0"],
        "{out}"
    );
    assert!(!Path::new(lines[5]).exists());
    // A directory on disk is refused before anything is written.
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let target = disk.path().join("secrets");
    let o = s.cli(&[
        "run",
        "--resource-id",
        JOB,
        "--inject",
        "file",
        "--secrets-dir",
        target.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("not on a memory-backed"),
        "{}",
        text(&o.stderr)
    );
    assert!(!target.exists());
}

#[test]
fn masking_catches_forms_split_writes_and_streams_promptly() {
    let s = Store::new();
    let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
    let (head, tail) = KEY.split_at(9);
    let script = format!(
        "echo \"plain $OPENAI_API_KEY\"; echo \"b64 {b64}\"; printf '{{\"k\":\"%s\"}}\\n' \"$OPENAI_API_KEY\"; \
         printf 'split {head}'; sleep 0.2; printf '{tail} end\\n'; printf '\\377\\376 bytes\\n' >&2; \
         echo \"err $AZURE_API_KEY\" >&2"
    );
    let o = s.run_sh(&[], &script).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_no_value(&o);
    assert_eq!(
        text(&o.stdout),
        "plain [MASKED:OPENAI_API_KEY]\nb64 [MASKED:OPENAI_API_KEY]\n{\"k\":\"[MASKED:OPENAI_API_KEY]\"}\nsplit [MASKED:OPENAI_API_KEY] end\n"
    );
    assert!(
        o.stderr
            .ends_with(b"\xff\xfe bytes\nerr [MASKED:AZURE_API_KEY]\n"),
        "{:?}",
        o.stderr
    );
    // --mask never passes the value through.
    let o = s
        .run_sh(&["--mask", "never"], "echo $OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout), format!("{KEY}\n"));

    // A progress line without a newline appears while the command runs.
    let mut child = s
        .run_sh(&[], "printf 'progress 42%%'; sleep 10")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 {
                break;
            }
            g.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
    let end = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().as_slice() != b"progress 42%" {
        assert!(Instant::now() < end, "progress line held back");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigterm(child.id());
    assert_eq!(wait(&mut child, 20).code(), Some(143));
}

#[test]
fn credentials_are_scrubbed_pristine_and_replaced_variables_warned() {
    let s = Store::new();
    let env_of = |extra: &[&str], envs: &[(&str, &str)]| -> (BTreeMap<String, String>, String) {
        let mut c = s.cmd();
        c.args(["run", "--resource-id", JOB, "--mask", "never"])
            .args(extra)
            .args(["--", "env"]);
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let vars = text(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (vars, text(&o.stderr))
    };
    let creds = [
        ("MLFLOW_SECRETS_KEK_PASSPHRASE_FILE", "/nonexistent/pass"),
        ("MLFLOW_CRYPTO_KEK_PASSPHRASE", "mlflow-passphrase"),
        ("OPENAI_API_KEY", "the-old-one"),
        ("UNRELATED", "kept"),
    ];
    let (vars, err) = env_of(&[], &creds);
    assert!(!vars.contains_key("MLFLOW_SECRETS_KEK_PASSPHRASE_FILE"));
    assert!(!vars.contains_key("MLFLOW_CRYPTO_KEK_PASSPHRASE"));
    assert_eq!(vars["OPENAI_API_KEY"], KEY);
    assert_eq!(vars["AZURE_API_VERSION"], "2024-06-01");
    assert_eq!(vars["UNRELATED"], "kept");
    assert!(
        err.contains("warning: OPENAI_API_KEY is already set") && !err.contains("the-old-one"),
        "{err}"
    );
    let injected = &vars["MLFLOW_SECRETS_INJECTED"];
    let names: Vec<&str> = injected
        .split(',')
        .map(|e| e.split_once('@').unwrap().0)
        .collect();
    assert_eq!(
        names,
        [
            "AZURE_API_BASE",
            "AZURE_API_KEY",
            "AZURE_API_VERSION",
            "OPENAI_API_KEY"
        ]
    );
    assert!(
        injected.contains(&format!("AZURE_API_KEY@{}:", s.azure_id)),
        "{injected}"
    );

    let (vars, _) = env_of(&["--pristine", "--only", "OPENAI_API_KEY"], &creds);
    let mut names: Vec<&str> = vars.keys().map(String::as_str).collect();
    names.retain(|n| {
        !["PATH", "HOME", "USER", "LANG", "TERM", "TZ", "TMPDIR"].contains(n)
            && !n.starts_with("LC_")
    });
    assert_eq!(names, ["MLFLOW_SECRETS_INJECTED", "OPENAI_API_KEY"]);
    assert!(vars.contains_key("PATH"));
}

#[test]
fn dry_run_shows_names_ids_and_versions_only() {
    let s = Store::new();
    let o = s.cli(&["run", "--resource-id", JOB, "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_no_value(&o);
    assert!(!text(&o.stdout).contains("az-key-0123456789"));
    let out = text(&o.stdout);
    assert!(
        out.contains("OPENAI_API_KEY") && out.contains(&s.azure_id),
        "{out}"
    );
    let o = s.cli(&["-o", "json", "run", "--resource-id", JOB, "--dry-run"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["injected"].as_array().unwrap().len(), 4);
    assert_eq!(v["injected"][0]["binding_name"], "AZURE_API_BASE");
}

#[test]
fn a_dropped_field_fails_the_run_naming_the_binding() {
    let s = Store::new();
    let f = s.json_file(r#"{"api_base":"https://b.example","api_version":"1"}"#);
    s.ok(&["update", "azure", "--json-file", &f]);
    let o = s.cli(&["run", "--resource-id", JOB, "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let err = text(&o.stderr);
    assert!(
        err.contains("AZURE_API_KEY") && err.contains("api_key"),
        "{err}"
    );
    // --only leaves the broken binding out.
    let o = s.cli(&[
        "run",
        "--resource-id",
        JOB,
        "--only",
        "AZURE_API_BASE",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// Parity: the names and bytes `run` injects equal the data of the per-Job
/// Secret the webhook builds for the same bindings (same consent rule,
/// same conversion), called in-process on the same database.
#[test]
fn run_injects_what_the_webhook_secret_holds() {
    use mlflow_secrets::inject::offered_from_meta;
    use mlflow_secrets::k8s::webhook::{consent::consent, secret::secret_data};
    use mlflow_secrets::keystore::{Keystore, KeystoreHandle};
    use mlflow_secrets::store::SqlStore;
    let s = Store::new();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {}, "spec": {"containers": [{"name": "c"}]}
    }))
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = rt.block_on(async {
        let store =
            SqlStore::connect_existing(&s.uri(), KeystoreHandle::new(Keystore::test_mode()))
                .await
                .unwrap();
        let bound = store
            .get_chosen_bound_values(
                ResourceRef::new("default", "SCORER_JOB", JOB),
                "test",
                |meta| consent(&pod, &offered_from_meta(meta)).map(|(c, _)| c),
            )
            .await
            .unwrap()
            .unwrap();
        let values = bound.into_iter().map(|(k, b)| (k, b.value)).collect();
        secret_data(&values)
    });
    let o = s
        .cmd()
        .args([
            "run",
            "--resource-id",
            JOB,
            "--mask",
            "never",
            "--pristine",
            "--",
            "env",
            "-0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let env: BTreeMap<Vec<u8>, Vec<u8>> = o
        .stdout
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let i = kv.iter().position(|b| *b == b'=')?;
            Some((kv[..i].to_vec(), kv[i + 1..].to_vec()))
        })
        .collect();
    assert_eq!(data.len(), 4);
    for (k, v) in &data {
        assert_eq!(env.get(k.as_bytes()), Some(&v.0), "{k}");
    }
    let injected = text(&env[b"MLFLOW_SECRETS_INJECTED".as_slice()]);
    let names: Vec<&str> = injected
        .split(',')
        .map(|e| e.split_once('@').unwrap().0)
        .collect();
    assert_eq!(names, data.keys().map(String::as_str).collect::<Vec<_>>());
}

/// A live `serve` over https (test mode, loopback) with a runner token for
/// [`JOB`].
struct Server {
    child: Child,
    url: String,
    ca: PathBuf,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(s: &Store) -> Server {
    let d = s.dir.path();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(d.join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(d.join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    let (token, line) =
        testkit::runner::minted(&s.cli(&testkit::runner::token_create_args("runner", JOB)));
    std::fs::write(d.join("tokens"), format!("{line}\n")).unwrap();
    let port = free_port();
    let mut child = s
        .cmd()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--auth-tokens-file")
        .arg(d.join("tokens"))
        .arg("--tls-cert")
        .arg(d.join("tls.crt"))
        .arg("--tls-key")
        .arg(d.join("tls.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        assert!(Instant::now() < end, "serve did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Server {
        child,
        url: format!("https://localhost:{port}"),
        ca: d.join("tls.crt"),
        token,
    }
}

/// `run` against the server: no keystore, no test mode, the runner token.
fn remote(srv: &Server, s: &Store) -> Command {
    let mut c = Command::new(BIN);
    clean(&mut c);
    c.current_dir(s.dir.path())
        .env("MLFLOW_SECRETS_STORE_URI", &srv.url)
        .env("MLFLOW_SECRETS_CA_CERT", &srv.ca)
        .stdin(Stdio::null());
    c
}

#[test]
fn against_a_live_server_over_https_with_a_runner_token() {
    let s = Store::new();
    let srv = serve(&s);
    let o = remote(&srv, &s)
        .env("MLFLOW_SECRETS_TOKEN", &srv.token)
        .args(["run", "--resource-id", JOB, "--mask", "never", "--", "env"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains(&format!("OPENAI_API_KEY={KEY}\n")), "{out}");
    assert!(out.contains("AZURE_API_BASE=https://a.example\n"));
    assert!(
        !out.contains(&srv.token),
        "the runner token reached the command"
    );
    assert!(!out.contains("MLFLOW_SECRETS_TOKEN="));
    // --token-file, --only, and a dry run.
    std::fs::write(
        s.dir.path().join("runner.token"),
        format!("{}\n", srv.token),
    )
    .unwrap();
    let o = remote(&srv, &s)
        .args([
            "--token-file",
            "runner.token",
            "run",
            "--resource-id",
            JOB,
            "--only",
            "AZURE_API_KEY",
        ])
        .args([
            "--mask",
            "never",
            "--",
            "sh",
            "-c",
            "echo $AZURE_API_KEY; echo ${OPENAI_API_KEY:-none}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        text(&o.stdout),
        "az-key-0123456789\nnone\n",
        "{}",
        text(&o.stderr)
    );
    let o = remote(&srv, &s)
        .env("MLFLOW_SECRETS_TOKEN", &srv.token)
        .args(["run", "--resource-id", JOB, "--dry-run"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_no_value(&o);
    // A wrong resource for the token, and no token: 125, one line.
    for (tok, rid) in [(Some(srv.token.as_str()), "other-job"), (None, JOB)] {
        let mut c = remote(&srv, &s);
        if let Some(t) = tok {
            c.env("MLFLOW_SECRETS_TOKEN", t);
        }
        let o = c
            .args(["run", "--resource-id", rid, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(125), "{rid}: {}", text(&o.stderr));
    }
    // A field the value no longer has fails resolve, naming the binding.
    let f = s.json_file(r#"{"api_base":"https://b.example"}"#);
    s.ok(&["update", "azure", "--json-file", &f]);
    let o = remote(&srv, &s)
        .env("MLFLOW_SECRETS_TOKEN", &srv.token)
        .args(["run", "--resource-id", JOB, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("AZURE_API_KEY"),
        "{}",
        text(&o.stderr)
    );
}

/// A one-connection-at-a-time HTTP stub for OpenAI's chat completions:
/// records each request's Authorization header, answers a judge verdict.
fn openai_stub() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/v1", l.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    rec.lock().unwrap().push(line[14..].trim().to_string());
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let content = r#"{"result": "yes", "rationale": "stub"}"#;
            let resp = serde_json::json!({
                "id": "chatcmpl-stub", "object": "chat.completion", "created": 0,
                "model": "gpt-4.1-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            })
            .to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
                resp.len()
            );
        }
    });
    (url, seen)
}

/// MLflow's direct OpenAI judge, run under `run`, sends our value as its
/// bearer token (no network: the provider is a local stub).
#[test]
fn mlflow_openai_judge_gets_the_injected_key() {
    if std::env::var("MLFLOW_SECRETS_MLFLOW").as_deref() == Ok("off") {
        eprintln!("skipped: MLFLOW_SECRETS_MLFLOW=off");
        return;
    }
    let py = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/mlflow-env.sh"
    ))
    .arg("python")
    .output()
    .unwrap();
    assert!(py.status.success(), "{}", text(&py.stderr));
    let python = text(&py.stdout).trim().to_string();
    let s = Store::new();
    let (url, seen) = openai_stub();
    let script = r#"
from mlflow.genai.judges import make_judge
judge = make_judge(name="quality", instructions="Is {{ outputs }} good?", model="openai:/gpt-4.1-mini", feedback_value_type=str)
fb = judge(outputs="fine")
print("verdict", fb.value)
"#;
    let o = s
        .cmd()
        .env("OPENAI_API_BASE", &url)
        .env(
            "MLFLOW_TRACKING_URI",
            format!("sqlite:///{}", s.dir.path().join("mlflow.db").display()),
        )
        .args([
            "run",
            "--resource-id",
            JOB,
            "--only",
            "OPENAI_API_KEY",
            "--",
            &python,
            "-c",
            script,
        ])
        .output()
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|h| h == &format!("Bearer {KEY}")),
        "the stub saw {} requests; stderr: {}",
        seen.len(),
        text(&o.stderr)
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_no_value(&o);
}
