//! Fixtures shared by the integration test trees and the benches
//! (docs/testing.md): a keystore with two passphrase versions, a fresh
//! migrated database per test on SQLite, PostgreSQL and MariaDB, the
//! `contract!` macro that runs one case on each backend, a log capture, and
//! the once-per-binary skip line.
//!
//! It is a crate of its own (a dev-dependency of `mlflow-secrets`) rather
//! than a module each test binary includes, so there is one copy, included
//! without `#[path]`, and an unused helper shows up as dead code here.

mod db;
mod keystore;
mod logs;
pub mod mlflow;
pub mod notice;
pub mod ops;
mod resp;
pub mod runner;
pub mod tokens;
mod values;

pub use db::{Backend, TestDb, drop_audit_triggers, empty_database, init, run_case};
pub use keystore::{PASSPHRASE_V1, PASSPHRASE_V2, TestKeystore};
pub use logs::CapturedLogs;
pub use resp::Resp;
pub use values::{as_string, val};

/// The `mlflow-secrets` binary of this build. Only an integration test of
/// the main crate can name `CARGO_BIN_EXE_mlflow-secrets` at compile time;
/// the binary sits beside the test binaries' `deps/` directory, which is
/// where cargo builds it before running any test.
pub fn bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_mlflow-secrets") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    dir.join("mlflow-secrets")
}

/// Run `cmd` to its end with `stdin` written to it (or no stdin at all),
/// capturing stdout and stderr: how a value reaches `--value-stdin`.
pub fn output_with_stdin(
    mut cmd: std::process::Command,
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let input = if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the command");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("a stdin pipe");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for the command")
}
