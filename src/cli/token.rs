//! `mlflow-secrets token create`: a new API token for `serve`.
//!
//! The token is printed once, on stdout, and never stored: the server's
//! tokens file holds only its SHA-256 and its scope. The line to add to
//! that file goes to stderr (or, with `-o json`, both go to stdout as one
//! JSON object). The line is checked with the server's own parser before
//! anything is printed, so `token create` can never print a line the
//! server would refuse (a runner without exactly one workspace and one
//! resource, for example).

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use super::output::{emit, emit_json};
use crate::server::auth::{
    Role, Scope, Workspaces, generate_token, tokens_file_line, validate_principal,
};
use crate::server::tokens_file::{format_rfc3339, now_secs, parse_line, parse_ttl};
use crate::store::validate;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a new random token for a principal, role and scope (printed once)
    #[command(after_help = "\
The token goes to stdout, the line for the tokens file to stderr. Store the
token where the client reads it; it cannot be shown again.

EXAMPLES:
  mlflow-secrets token create --principal ci --role writer --workspace team-a > ci.token
  mlflow-secrets token create --principal alice --role admin --all-workspaces -o json
  mlflow-secrets token create --principal nightly --role runner --workspace team-a \\
      --resource-type SCORER_JOB --resource-id nightly-eval --ttl 30d")]
    Create(TokenCreateArgs),
}

#[derive(Args)]
pub struct TokenCreateArgs {
    /// Who the token identifies (recorded as created_by and in the audit log)
    #[arg(long, value_name = "P")]
    pub principal: String,
    /// What the token may do: reader (read metadata), writer (+ changes), admin (+ audit log), runner (resolve one resource's values)
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: Role,
    /// Every workspace (`workspaces=*`), instead of naming them with --workspace W (repeatable)
    #[arg(long)]
    pub all_workspaces: bool,
    /// Resource type of a runner token's one resource
    #[arg(long, value_name = "T", requires = "resource_id")]
    pub resource_type: Option<String>,
    /// Resource id of a runner token's one resource
    #[arg(long, value_name = "ID", requires = "resource_type")]
    pub resource_id: Option<String>,
    /// Lifetime, a whole number and a unit: 3600s, 90m, 12h, 30d, 2w (default: no expiry)
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// The workspaces of the new token, from `--workspace` (repeatable) or
/// `--all-workspaces`: exactly one of the two.
fn workspaces(given: &[String], all: bool) -> Result<Workspaces> {
    match (given.is_empty(), all) {
        (false, true) => bail!("give --workspace W (repeatable) or --all-workspaces, not both"),
        (true, false) => {
            bail!("name the token's workspaces: --workspace W (repeatable) or --all-workspaces")
        }
        (true, true) => Ok(Workspaces::All),
        (false, false) => {
            let mut set = BTreeSet::new();
            for w in given {
                validate::workspace(w)?;
                set.insert(w.clone());
            }
            Ok(Workspaces::Only(set))
        }
    }
}

pub(super) fn run(ctx: &Ctx, cmd: TokenCommand) -> Result<ExitCode> {
    let TokenCommand::Create(a) = cmd;
    validate_principal(&a.principal)?;
    let expires = match &a.ttl {
        None => None,
        Some(t) => Some(
            now_secs()
                + parse_ttl(t).ok_or_else(|| {
                    anyhow!("--ttl must be a whole number and a unit (s, m, h, d, w), such as 30d, at most ten years")
                })?,
        ),
    };
    let scope = Scope {
        workspaces: workspaces(&ctx.g.workspace, a.all_workspaces)?,
        resource: a.resource_type.clone().zip(a.resource_id.clone()),
        expires,
    };
    let token = generate_token()?;
    let line = tokens_file_line(&a.principal, a.role, &scope, &token);
    parse_line(&line).map_err(|e| anyhow!("token create: {e}"))?;
    if ctx.json() {
        emit_json(&json!({
            "principal": a.principal,
            "role": a.role.as_str(),
            "workspaces": scope.workspaces.to_string(),
            "resource": scope.resource.as_ref().map(|(t, id)| format!("{t}/{id}")),
            "expires": scope.expires.map(format_rfc3339),
            "token": token.as_str(),
            "tokens_file_line": line,
        }))?;
    } else {
        emit(&token)?;
        eprintln!("Add this line to the server's tokens file (--auth-tokens-file):");
        eprintln!("{line}");
        eprintln!("The token above is shown only this once.");
    }
    Ok(ExitCode::SUCCESS)
}
