//! Maintenance commands: `verify`, `rewrap`, `migrate`, `audit verify`,
//! `completion`. They report counts and ids, never values.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::keystore::Keystore;
use crate::store::audit::ExportedHead;
use crate::store::{RewrapTarget, VerifyFailure};

use super::args::{Cli, RewrapArgs};
use super::output::{emit, emit_json, emit_table, table};
use super::{Ctx, actor};

/// A progress bar on stderr, for people only: hidden without a terminal,
/// with `-q` and with `-o json`.
pub(super) fn progress_bar(ctx: &Ctx, total: u64, what: &str) -> ProgressBar {
    if !ctx.chatty() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn failures_table(failed: &[VerifyFailure]) -> comfy_table::Table {
    let mut t = table(&["ID", "WORKSPACE", "NAME", "KEK", "REASON"]);
    for f in failed {
        t.add_row(vec![
            f.secret_id.clone(),
            f.workspace.clone(),
            f.secret_name.clone(),
            f.kek_version.to_string(),
            f.reason.clone(),
        ]);
    }
    t
}

pub(super) async fn verify(ctx: &Ctx) -> Result<ExitCode> {
    let store = ctx.open_store().await?;
    let pb = progress_bar(ctx, store.count_secrets().await?, "verifying");
    let report = store
        .verify(&actor(), &|n| {
            pb.set_position(n);
            tracing::info!(checked = n, "verify progress");
        })
        .await?;
    pb.finish_and_clear();
    if ctx.json() {
        emit_json(&report)?;
    } else {
        emit(&format!(
            "Verified {} secret(s): {} ok, {} revoked (value shredded, not checked), {} failed",
            report.total,
            report.ok,
            report.revoked,
            report.failed.len()
        ))?;
        if !report.by_kek_version.is_empty() {
            let mut t = table(&["KEK VERSION", "SECRETS"]);
            for (v, n) in &report.by_kek_version {
                t.add_row(vec![v.to_string(), n.to_string()]);
            }
            emit("")?;
            emit_table(&t)?;
        }
        if !report.failed.is_empty() {
            emit("\nFailed:")?;
            emit_table(&failures_table(&report.failed))?;
        }
    }
    if report.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {} secret(s) failed to decrypt", report.failed.len());
        Ok(ExitCode::FAILURE)
    }
}

pub(super) async fn rewrap(ctx: &Ctx, a: RewrapArgs) -> Result<ExitCode> {
    let store = ctx.open_store().await?;
    let active = store.keys().current().active_version();
    let target = match a.kek_version {
        Some(v) => RewrapTarget::Version(v),
        None => RewrapTarget::All,
    };
    let counts = store.kek_version_counts().await?;
    let total: u64 = counts
        .iter()
        .filter(|(v, _)| match target {
            RewrapTarget::All => **v != active,
            RewrapTarget::Version(t) => **v == t,
        })
        .map(|(_, n)| n)
        .sum();
    let pb = progress_bar(ctx, total, &format!("rewrapping to KEK v{active}"));
    let report = store
        .rewrap(target, a.batch_size, &actor(), &|n| {
            pb.set_position(n);
            tracing::info!(rewrapped = n, "rewrap progress");
        })
        .await?;
    pb.finish_and_clear();
    if ctx.json() {
        emit_json(&report)?;
    } else if !ctx.g.quiet || !report.failed.is_empty() {
        emit(&format!(
            "Rewrapped {} secret(s) to KEK version {} in {} batch(es); {} failed",
            report.rewrapped,
            report.to_version,
            report.batches,
            report.failed.len()
        ))?;
        if !report.failed.is_empty() {
            emit("\nFailed (left on their old version):")?;
            emit_table(&failures_table(&report.failed))?;
        }
    }
    if report.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} secret(s) could not be rewrapped",
            report.failed.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

pub(super) async fn migrate(ctx: &Ctx) -> Result<ExitCode> {
    ctx.check_store_uri()?;
    let store = ctx.connect(Keystore::metadata_only()).await?;
    let applied = store.migrate().await?;
    if ctx.json() {
        emit_json(&json!({ "applied": applied }))?;
    } else if ctx.chatty() {
        emit(&match applied {
            0 => "The schema is up to date: no migration applied.".to_string(),
            n => format!("Applied {n} migration(s)."),
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn audit_verify(ctx: &Ctx, head: Option<ExportedHead>) -> Result<ExitCode> {
    let store = ctx.open_store_metadata().await?;
    let report = match &head {
        Some(h) => store.audit_verify_head(h.clone()).await?,
        None => store.audit_verify().await?,
    };
    if ctx.json() {
        emit_json(&report)?;
    } else if report.ok {
        emit(&match &head {
            Some(h) => format!(
                "Audit log intact: {} row(s) checked; it still reaches the exported head at row {}.",
                report.rows, h.seq
            ),
            None => format!("Audit log intact: {} row(s) checked.", report.rows),
        })?;
    } else {
        emit(&format!(
            "Audit log BROKEN at row {}: {}",
            report
                .first_broken_seq
                .map_or_else(|| "?".to_string(), |s| s.to_string()),
            report.reason.as_deref().unwrap_or("unknown reason")
        ))?;
    }
    if report.ok {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: the audit log hash chain is broken at row {}",
            report
                .first_broken_seq
                .map_or_else(|| "?".to_string(), |s| s.to_string())
        );
        Ok(ExitCode::FAILURE)
    }
}

pub(super) fn completion(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mlflow-secrets", &mut buf);
    emit(String::from_utf8_lossy(&buf).trim_end())?;
    Ok(ExitCode::SUCCESS)
}
