//! The `serve` and `token` commands through the real binary: a fresh
//! machine's defaults (data directory, random passphrase file, embedded
//! SQLite), graceful shutdown on SIGTERM, JSON logs, start-up refusals, and
//! `token create`'s output.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_mlflow-secrets");

/// The binary with none of the caller's configuration.
fn cmd(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("MLFLOW_SECRETS_") || k == "XDG_DATA_HOME" || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange over a plain socket: (status, body).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// [`http`] that must answer 200; the body.
fn http_ok(port: u16, method: &str, path: &str, body: Option<&str>) -> String {
    let (status, body) = http(port, method, path, body).unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn wait_healthy(child: &mut Child, port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok((200, _)) = http(port, "GET", "/health", None) {
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            let err = take_stderr(child);
            panic!("serve exited with {st}: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("serve did not become healthy");
}

/// Everything the (exited) child wrote to its piped stderr.
fn take_stderr(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// SIGTERM, then the exit status and stderr.
fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let err = take_stderr(&mut child);
            return (st, err);
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "serve ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fresh_machine_defaults_and_graceful_shutdown() {
    let default_keystore_in_use = Path::new("/etc/mlflow/keystore/kek-v1.json").exists();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let spawn = || {
        cmd(tmp.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Started and answering /health.
    let start = || {
        let mut child = spawn();
        wait_healthy(&mut child, port);
        child
    };
    let child = start();
    let body = http_ok(
        port,
        "POST",
        "/api/2.0/mlflow/secrets/create",
        Some(r#"{"secret_name":"first","value":"sk-abcdefghijklmnopqrstuvwxyz"}"#),
    );
    assert!(body.contains("\"created_by\":\"local\""), "{body}");
    let (st, err) = terminate(child);
    assert!(st.success(), "exit {st}: {err}");
    assert!(err.contains("principal 'local'"), "{err}");
    assert!(!err.contains("sk-abcdefghijklmnopqrstuvwxyz"));

    let data = tmp.path().join(".mlflow-secrets");
    assert!(data.join("mlflow-secrets.db").exists(), "{err}");
    if !default_keystore_in_use {
        assert!(err.contains("Created a keystore"), "{err}");
        assert!(err.contains("kek-passphrase"), "{err}");
        let pass = data.join("kek-passphrase");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&pass).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(std::fs::read_to_string(&pass).unwrap().len() >= 40);
        assert!(data.join("keystore/kek-v1.json").exists());
    }

    // A second start reuses all of it: no new keystore, the secret is there.
    let child = start();
    http_ok(
        port,
        "GET",
        "/api/2.0/mlflow/secrets/get?secret_name=first",
        None,
    );
    let (st, err) = terminate(child);
    assert!(st.success(), "exit {st}: {err}");
    assert!(!err.contains("Created a keystore"), "{err}");
}

#[test]
fn json_logs_and_test_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = cmd(tmp.path())
        .env("MLFLOW_SECRETS_TEST_MODE", "1")
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(&mut child, port);
    let (_, health) = http(port, "GET", "/health", None).unwrap();
    assert!(health.contains("\"test_mode\":true"), "{health}");
    let (st, err) = terminate(child);
    assert!(st.success(), "{err}");
    // Test mode never creates a keystore.
    assert!(!tmp.path().join(".mlflow-secrets/keystore").exists());
    let json_lines: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        json_lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("serving on"))),
        "{err}"
    );
    assert!(json_lines.iter().any(|l| l["level"] == "WARN"), "{err}");
}

#[test]
fn serve_refuses_unsafe_binds() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, "").unwrap();
    let tokens = tokens.to_str().unwrap();
    // (listen address, further flags, test mode, what the refusal names)
    let cases: [(&str, &[&str], bool, &str); 4] = [
        ("0.0.0.0:0", &[], false, "--auth-tokens-file"),
        ("0.0.0.0:0", &["--auth-tokens-file", tokens], false, "TLS"),
        ("127.0.0.1:0", &["--tls-cert", "/x"], false, "--tls-key"),
        (
            "0.0.0.0:0",
            &["--auth-tokens-file", tokens, "--insecure-http"],
            true,
            "test mode",
        ),
    ];
    for (listen, extra, test_mode, needle) in cases {
        let mut args = vec!["serve", "--listen", listen];
        args.extend_from_slice(extra);
        let mut c = cmd(tmp.path());
        if test_mode {
            c.env("MLFLOW_SECRETS_TEST_MODE", "1");
        }
        let out = c.args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Nothing was created for a refused start.
    assert!(!tmp.path().join(".mlflow-secrets").exists());
}

#[test]
fn token_create_prints_the_token_once_and_the_file_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cmd(tmp.path())
        .args([
            "token",
            "create",
            "--principal",
            "ci-bot",
            "--role",
            "writer",
            "--workspace",
            "team-a",
            "--workspace",
            "team-b",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        token.starts_with("mlss_") && token.len() == 5 + 43,
        "{token}"
    );
    let line = format!(
        "ci-bot writer sha256:{} workspaces=team-a,team-b",
        hex::encode(Sha256::digest(token.as_bytes()))
    );
    assert!(err.lines().any(|l| l == line), "{err}");
    assert!(!err.contains(&token));

    let out = cmd(tmp.path())
        .args([
            "token",
            "create",
            "--principal",
            "alice",
            "--role",
            "admin",
            "--all-workspaces",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = v["token"].as_str().unwrap();
    assert_ne!(t, token);
    assert_eq!(
        v["tokens_file_line"],
        format!(
            "alice admin sha256:{} workspaces=*",
            hex::encode(Sha256::digest(t.as_bytes()))
        )
    );
    assert_eq!(v["role"], "admin");

    // A runner with its one resource and a lifetime.
    let out = cmd(tmp.path())
        .args([
            "token",
            "create",
            "--principal",
            "nightly",
            "--role",
            "runner",
            "--workspace",
            "team-a",
            "--resource-type",
            "SCORER_JOB",
            "--resource-id",
            "nightly-eval",
            "--ttl",
            "30d",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = v["tokens_file_line"].as_str().unwrap();
    assert!(
        line.contains(" workspaces=team-a resource=SCORER_JOB/nightly-eval expires=20"),
        "{line}"
    );
    // Refused: no scope, both scopes, a runner without its resource or
    // with two workspaces, a bad ttl. Exit 1 or 2, naming the problem.
    for (args, needle) in [
        (vec!["--role", "reader"], "--workspace"),
        (
            vec!["--role", "reader", "--workspace", "a", "--all-workspaces"],
            "not both",
        ),
        (vec!["--role", "runner", "--workspace", "a"], "runner"),
        (
            vec![
                "--role",
                "runner",
                "--workspace",
                "a",
                "--workspace",
                "b",
                "--resource-type",
                "SCORER_JOB",
                "--resource-id",
                "x",
            ],
            "runner",
        ),
        (
            vec!["--role", "reader", "--all-workspaces", "--ttl", "1y"],
            "--ttl",
        ),
        (
            vec![
                "--role",
                "reader",
                "--all-workspaces",
                "--resource-type",
                "X",
            ],
            "resource-id",
        ),
    ] {
        let out = cmd(tmp.path())
            .args(["token", "create", "--principal", "p"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: a token was printed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    let bad_role = cmd(tmp.path())
        .args(["token", "create", "--principal", "a", "--role", "root"])
        .output()
        .unwrap();
    assert_eq!(bad_role.status.code(), Some(2));
    let bad_principal = cmd(tmp.path())
        .args(["token", "create", "--principal", "a b", "--role", "reader"])
        .output()
        .unwrap();
    assert_eq!(bad_principal.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_principal.stderr).contains("principal"));
}
