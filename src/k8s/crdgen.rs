//! `mlflow-secrets crdgen`: the CRDs as YAML, generated from the Rust types
//! in [`super::crd`]. (Being written.)

use std::path::PathBuf;

/// Arguments of `mlflow-secrets crdgen`.
#[derive(Debug, clap::Args)]
pub struct CrdgenArgs {
    /// Write one file per CRD into this directory instead of printing them
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// Print or write the CRDs.
pub fn run(_args: &CrdgenArgs) -> anyhow::Result<()> {
    anyhow::bail!("crdgen is not built yet")
}
