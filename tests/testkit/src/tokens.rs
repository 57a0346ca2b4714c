//! The tokens file the server and UI fixtures share: one `*` token per
//! role, team-a tokens (security review finding 1) and a runner.

use mlflow_secrets::server::auth::{Role, Scope, Workspaces, tokens_file_line};

pub const ADMIN: &str = "mlss_admin-token-for-tests";
pub const WRITER: &str = "mlss_writer-token-for-tests";
pub const READER: &str = "mlss_reader-token-for-tests";
/// Scoped to `team-a` only.
pub const TEAM_A_WRITER: &str = "mlss_team-a-writer-token-for-tests";
pub const TEAM_A_READER: &str = "mlss_team-a-reader-token-for-tests";
pub const TEAM_A_ADMIN: &str = "mlss_team-a-admin-token-for-tests";
/// A runner for `team-a`, resource `SCORER_JOB/nightly-eval`.
pub const RUNNER: &str = "mlss_runner-token-for-tests";
pub const RUNNER_RESOURCE: &str = "nightly-eval";

/// A scope of the named workspaces.
pub fn only(ws: &[&str]) -> Scope {
    Scope {
        workspaces: Workspaces::Only(ws.iter().map(|w| w.to_string()).collect()),
        resource: None,
        expires: None,
    }
}

/// The fixtures' tokens file.
pub fn tokens_text() -> String {
    let all = Scope::everything();
    let mut runner = only(&["team-a"]);
    runner.resource = Some(("SCORER_JOB".into(), RUNNER_RESOURCE.into()));
    [
        "# test tokens".to_string(),
        tokens_file_line("alice", Role::Admin, &all, ADMIN),
        tokens_file_line("wendy", Role::Writer, &all, WRITER),
        tokens_file_line("rita", Role::Reader, &all, READER),
        tokens_file_line("ada", Role::Writer, &only(&["team-a"]), TEAM_A_WRITER),
        tokens_file_line("rae", Role::Reader, &only(&["team-a"]), TEAM_A_READER),
        tokens_file_line("ann", Role::Admin, &only(&["team-a"]), TEAM_A_ADMIN),
        tokens_file_line("nightly", Role::Runner, &runner, RUNNER),
    ]
    .join("\n")
        + "\n"
}
