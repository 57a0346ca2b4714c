//! `mlflow-secrets operator`: flags, then [`crate::k8s::operator::run`].
//! (Being written.)

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;

/// Arguments of `mlflow-secrets operator`.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {}

pub(super) async fn run(_ctx: &Ctx, _args: OperatorArgs) -> Result<ExitCode> {
    anyhow::bail!("operator is not built yet")
}
