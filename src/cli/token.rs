//! `mlflow-secrets token create`: a new API token for `serve`.
//!
//! The token is printed once, on stdout, and never stored: the server's
//! tokens file holds only its SHA-256. The line to add to that file goes to
//! stderr (or, with `-o json`, both go to stdout as one JSON object).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use super::output::{emit, emit_json};
use crate::server::auth::{Role, generate_token, tokens_file_line, validate_principal};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a new random token for a principal and role (printed once)
    #[command(after_help = "\
The token goes to stdout, the line for the tokens file to stderr. Store the
token where the client reads it; it cannot be shown again.

EXAMPLES:
  mlflow-secrets token create --principal ci --role writer > ci.token
  mlflow-secrets token create --principal alice --role admin -o json")]
    Create(TokenCreateArgs),
}

#[derive(Args)]
pub struct TokenCreateArgs {
    /// Who the token identifies (recorded as created_by and in the audit log)
    #[arg(long, value_name = "P")]
    pub principal: String,
    /// What the token may do: reader (read metadata), writer (+ changes), admin (+ audit log)
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: Role,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

pub(super) fn run(ctx: &Ctx, cmd: TokenCommand) -> Result<ExitCode> {
    let TokenCommand::Create(a) = cmd;
    validate_principal(&a.principal)?;
    let token = generate_token()?;
    let line = tokens_file_line(&a.principal, a.role, &token);
    if ctx.json() {
        emit_json(&json!({
            "principal": a.principal,
            "role": a.role.as_str(),
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
