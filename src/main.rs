//! The `mlflow-secrets` binary: parse the command line, run it, map the
//! outcome to an exit code (0 ok, 1 error, 2 bad usage — clap's own).
//! All logic lives in the library (`mlflow_secrets::cli`).

use std::process::ExitCode;

use clap::Parser;
use mlflow_secrets::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            cli::print_error(&err);
            ExitCode::FAILURE
        }
    }
}
