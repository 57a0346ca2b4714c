//! `backup`, `restore` and `doctor`: the CLI side of [`crate::ops`]
//! (docs/operations.md). Reports show counts, versions, hashes and paths,
//! never a value or a passphrase.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ops::doctor::{self, DoctorConfig, Status};
use crate::ops::doctor_k8s::KubeTarget;
use crate::ops::restore::{self, RestoreTarget};

use super::output::{emit, emit_json, emit_table, table};
use super::{Ctx, actor};

#[derive(Args)]
#[command(after_help = "\
The archive holds the KEK files and, for SQLite, a consistent snapshot taken
while writers keep going. It never holds a passphrase: keep the passphrase
somewhere else than the archive. For PostgreSQL and MySQL the command writes
the keystore part and prints the native dump command to run right after it.

EXAMPLES:
  mlflow-secrets backup --out /backups/secrets-$(date +%F).tar
  MLFLOW_SECRETS_STORE_URI=postgres://secrets@db/secrets mlflow-secrets backup --out ks.tar
  mlflow-secrets backup --out b.tar -o json | jq .manifest.audit_head")]
pub struct BackupArgs {
    /// The archive to write (a new file, mode 0600)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args)]
#[command(after_help = "\
Restores into an empty store only, and checks every member's SHA-256 and the
manifest before writing anything. The passphrases of the archive's KEK
versions come from MLFLOW_SECRETS_KEK_PASSPHRASE_FILE, as for every command.
Then it runs the equivalent of `verify` and `audit verify --head` against the
manifest's head. Exits 1 when either fails.

EXAMPLES:
  mlflow-secrets restore b.tar --store-uri sqlite:///srv/new/mlflow-secrets.db --keystore /srv/new/keystore
  # PostgreSQL: restore the dump with pg_restore first, then
  mlflow-secrets restore ks.tar --store-uri \"$NEW_STORE_URI\" --keystore /etc/mlflow/keystore")]
pub struct RestoreArgs {
    /// The archive written by `mlflow-secrets backup`
    #[arg(value_name = "FILE")]
    pub archive: PathBuf,
}

#[derive(Args)]
#[command(after_help = "\
Exit 0 when no check fails (warnings included), 1 otherwise. Each failing
check names a remedy.

EXAMPLES:
  mlflow-secrets doctor
  mlflow-secrets doctor --tokens-file /etc/mlflow/tokens -o json
  mlflow-secrets doctor --kubeconfig ~/.kube/config --operator-namespace mlflow-secrets")]
pub struct DoctorArgs {
    /// The tokens file of `serve` to check
    #[arg(long, alias = "auth-tokens-file", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Check the cluster too: CRDs, webhook configuration, certificate, namespaces
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The operator's namespace (where its webhook certificate Secret lives)
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "default",
        value_name = "NS"
    )]
    pub operator_namespace: String,
    /// The operator's MutatingWebhookConfiguration
    #[arg(long, default_value = crate::k8s::WEBHOOK_CONFIGURATION_NAME, value_name = "NAME")]
    pub webhook_configuration: String,
    /// The Secret holding the webhook's CA and serving certificate
    #[arg(long, default_value = crate::k8s::webhook::certs::DEFAULT_SECRET_NAME, value_name = "NAME")]
    pub webhook_secret: String,
    /// Report an active KEK older than this for rotation
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    pub max_kek_age_days: u64,
}

/// A byte progress bar on stderr, for people only.
fn bytes_bar(ctx: &Ctx, what: &str) -> ProgressBar {
    if !ctx.chatty() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// The progress callback of a byte-counting operation, drawing `pb`.
fn bytes_progress(pb: &ProgressBar) -> impl Fn(u64, u64) + '_ {
    move |n, t| {
        pb.set_length(t);
        pb.set_position(n);
    }
}

pub(super) async fn backup(ctx: &Ctx, a: BackupArgs) -> Result<ExitCode> {
    let ks = ctx.keystore_config();
    if ks.test_mode {
        bail!("test mode has no keystore to back up: unset MLFLOW_SECRETS_TEST_MODE");
    }
    let store = ctx.open_store_metadata().await?;
    let pb = bytes_bar(ctx, "backing up");
    let report = crate::ops::backup::backup(
        &store,
        &ctx.store_uri,
        &ks.dir,
        &a.out,
        &bytes_progress(&pb),
    )
    .await?;
    pb.finish_and_clear();
    if ctx.json() {
        emit_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let m = &report.manifest;
    let rows = |t: &str| m.facts.rows.get(t).copied().unwrap_or(0);
    emit(&format!(
        "Backed up to {} ({} bytes, {:.1}s): {} secret(s), {} binding(s), {} audit row(s), audit head seq={} hash={}, KEK version(s) {:?} (active {}).",
        report.out.display(),
        report.archive_bytes,
        report.seconds,
        rows("secrets"),
        rows("secrets_bindings"),
        rows("secrets_audit_log"),
        m.facts.audit_head.seq,
        m.facts.audit_head.hash,
        m.kek_versions.iter().map(|k| k.version).collect::<Vec<_>>(),
        m.active_kek_version
    ))?;
    emit("The archive holds no passphrase: keep the passphrase(s) apart from it.")?;
    if let (Some(dump), Some(restore)) = (&report.native_dump, &report.native_restore) {
        emit(&format!(
            "\nThe {} database is not in the archive. Dump it now, with its native tool:\n  {dump}\nand restore it later with:\n  {restore}\nthen `mlflow-secrets restore {}` checks it against this archive (docs/operations.md).",
            m.dialect,
            report.out.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<ExitCode> {
    if !ctx.store_explicit {
        bail!("restore needs the target store: pass --store-uri URI (an empty store)");
    }
    let ks = ctx.keystore_config();
    if ks.test_mode {
        bail!("restore needs a real keystore: unset MLFLOW_SECRETS_TEST_MODE");
    }
    let target = RestoreTarget {
        store_uri: ctx.store_uri.clone(),
        keystore_dir: ks.dir.clone(),
        passphrase: ks.passphrase.clone(),
    };
    let pb = bytes_bar(ctx, "restoring");
    let report = restore::restore(&a.archive, &target, &actor(), &bytes_progress(&pb)).await?;
    pb.finish_and_clear();
    if ctx.json() {
        emit_json(&report)?;
    } else {
        let mut t = table(&["TABLE", "MANIFEST", "RESTORED"]);
        for (name, n) in &report.manifest_rows {
            let got = report.restored_rows.get(name).copied().unwrap_or(0);
            t.add_row(vec![name.clone(), n.to_string(), got.to_string()]);
        }
        emit(&format!(
            "Restored the {} backup: database {}, keystore {}.",
            report.dialect,
            if report.database_written {
                "written"
            } else {
                "checked (restored by the native tool)"
            },
            report.keystore
        ))?;
        emit_table(&t)?;
        emit(&format!(
            "verify: {} secret(s), {} ok, {} revoked, {} failed",
            report.verify.total,
            report.verify.ok,
            report.verify.revoked,
            report.verify.failed.len()
        ))?;
        emit(&format!(
            "audit verify --head {}: {}",
            report.audit_head_seq,
            if report.audit.ok {
                format!("intact, {} row(s) checked", report.audit.rows)
            } else {
                format!(
                    "BROKEN at row {}: {}",
                    report.audit.first_broken_seq.unwrap_or(0),
                    report.audit.reason.as_deref().unwrap_or("unknown")
                )
            }
        ))?;
    }
    if report.ok {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: the restored store failed verify or audit verify");
        Ok(ExitCode::FAILURE)
    }
}

pub(super) async fn doctor(ctx: &Ctx, a: DoctorArgs) -> Result<ExitCode> {
    let cfg = DoctorConfig {
        keystore: ctx.keystore_config(),
        store_uri: ctx.store_uri.clone(),
        tokens_file: a.tokens_file,
        max_kek_age_days: a.max_kek_age_days,
        kube: a.kubeconfig.map(|k| KubeTarget {
            kubeconfig: Some(k),
            namespace: a.operator_namespace,
            secret_name: a.webhook_secret,
            webhook_config_name: a.webhook_configuration,
        }),
    };
    let report = doctor::run(&cfg).await;
    if ctx.json() {
        emit_json(&report)?;
    } else {
        let mut t = table(&["CHECK", "STATUS", "DETAIL"]);
        for c in &report.checks {
            t.add_row(vec![
                c.name.clone(),
                c.status.as_str().to_string(),
                c.detail.clone(),
            ]);
        }
        emit_table(&t)?;
        let todo: Vec<_> = report
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::Fail | Status::Warn))
            .filter_map(|c| c.remedy.as_ref().map(|r| (c, r)))
            .collect();
        if !todo.is_empty() {
            emit("\nRemedies:")?;
            for (c, r) in todo {
                emit(&format!("  {} ({}): {r}", c.name, c.status.as_str()))?;
            }
        }
    }
    if report.ok {
        Ok(ExitCode::SUCCESS)
    } else {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect();
        eprintln!(
            "error: doctor found {} failing check(s): {}",
            failed.len(),
            failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}
