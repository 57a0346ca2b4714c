//! A runner token for `mlflow-secrets run` against `serve` (tests/cli/run.rs
//! and benches/run.rs): the `token create` line that mints it, and what
//! `serve --auth-tokens-file` needs from its output.

use std::process::Output;

/// `token create` arguments for a runner token of `SCORER_JOB/resource_id`
/// in workspace `default`, for `principal`.
pub fn token_create_args<'a>(principal: &'a str, resource_id: &'a str) -> [&'a str; 12] {
    [
        "token",
        "create",
        "--principal",
        principal,
        "--role",
        "runner",
        "--workspace",
        "default",
        "--resource-type",
        "SCORER_JOB",
        "--resource-id",
        resource_id,
    ]
}

/// The token (stdout) and the tokens-file line (the `sha256:` line on
/// stderr) of a successful `token create`.
pub fn minted(o: &Output) -> (String, String) {
    assert!(
        o.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let line = String::from_utf8_lossy(&o.stderr)
        .lines()
        .find(|l| l.contains("sha256:"))
        .expect("token create prints the tokens-file line")
        .trim()
        .to_string();
    (token, line)
}
