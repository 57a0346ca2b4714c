//! `mlflow-secrets mlflow import` and `mlflow-secrets mlflow push`
//! (docs/design.md §13): MLflow's AI Gateway secrets into our store, and
//! ours out to a running MLflow server. The logic is in [`crate::mlflow`];
//! this is flags, progress and printing (names, ids and versions only).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;

use crate::mlflow::client::{CA_ENV, GatewayClient, MlflowAuth};
use crate::mlflow::crypto::{MlflowKeys, MlflowPassphrase};
use crate::mlflow::import::{ImportEntry, ImportOptions, ImportReport, apply, decrypt_all};
use crate::mlflow::push::{PushResult, sync_all, sync_secret};
use crate::mlflow::source::{SourceUri, read_gateway_secrets};

use super::admin::progress_bar;
use super::output::{emit, emit_json, emit_table, or_dash, table};
use super::{Ctx, actor};

#[derive(Subcommand)]
pub enum MlflowCommand {
    /// Import the AI Gateway secrets of an MLflow 3.8+ tracking database (read-only on MLflow's side)
    #[command(after_help = "\
Each gateway secret becomes a shared secret of ours with the same workspace,
name and provider. A secret that already holds the same value is skipped; a
different value is replaced only with --update. Nothing is written unless
every wrapped key opens under MLflow's passphrase. Values are never printed.

EXAMPLES:
  export MLFLOW_CRYPTO_KEK_PASSPHRASE=...          # the MLflow server's passphrase
  mlflow-secrets mlflow import --from sqlite:////srv/mlflow/mlflow.db --dry-run
  mlflow-secrets mlflow import --from postgresql://mlflow@db/mlflow --update -o json
  mlflow-secrets mlflow import --from mysql://mlflow@db/mlflow \\
      --mlflow-passphrase-file /run/secrets/mlflow-kek")]
    Import(ImportArgs),
    /// Create or update a gateway secret of a running MLflow server from one of ours
    #[command(after_help = "\
The value goes through MLflow's REST API (/api/3.0/mlflow/gateway/secrets/...)
as its object, or {\"api_key\": VALUE} for a string, with the secret's provider.
Authentication is MLflow's: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME
and MLFLOW_TRACKING_PASSWORD. The link is recorded as an MLFLOW_GATEWAY binding
(see `list-bindings --resource-type MLFLOW_GATEWAY`). A gateway secret of that
name that mlflow-secrets did not create is a conflict and is never overwritten.

EXAMPLES:
  mlflow-secrets mlflow push openai-key --tracking-uri https://mlflow.example.com
  mlflow-secrets mlflow push openai-key --mlflow-secret-name openai --tracking-uri http://127.0.0.1:5000
  # after `update`: re-push every linked secret whose value changed
  mlflow-secrets mlflow push --all --tracking-uri https://mlflow.example.com -o json")]
    Push(PushArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// MLflow's tracking database: sqlite:///PATH, postgresql://..., mysql://...
    #[arg(long = "from", value_name = "URI")]
    from: String,
    /// File holding MLflow's KEK passphrase [default: MLFLOW_CRYPTO_KEK_PASSPHRASE]
    #[arg(long, value_name = "FILE")]
    mlflow_passphrase_file: Option<PathBuf>,
    /// The MLflow server runs without a passphrase: use MLflow's public development default
    #[arg(long, conflicts_with = "mlflow_passphrase_file")]
    mlflow_default_passphrase: bool,
    /// Replace the value of a secret of ours that holds a different one
    #[arg(long)]
    update: bool,
    /// Decide and report everything, write nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
#[command(group(ArgGroup::new("what").required(true).args(["name", "all"])))]
pub struct PushArgs {
    /// Our secret to push (in --workspace)
    name: Option<String>,
    /// Re-push every linked secret whose value changed since its last push
    #[arg(long)]
    all: bool,
    /// The MLflow server
    #[arg(
        long,
        env = "MLFLOW_TRACKING_URI",
        hide_env_values = true,
        value_name = "URL"
    )]
    tracking_uri: String,
    /// Name of the gateway secret in MLflow [default: the secret's name]
    #[arg(long, value_name = "N", conflicts_with = "all")]
    mlflow_secret_name: Option<String>,
    /// Allow plain http:// to a non-loopback MLflow server (the value crosses the network in clear)
    #[arg(long)]
    insecure_http: bool,
}

pub(super) async fn run(ctx: &Ctx, cmd: MlflowCommand) -> Result<ExitCode> {
    match cmd {
        MlflowCommand::Import(a) => import(ctx, a).await,
        MlflowCommand::Push(a) => push(ctx, a).await,
    }
}

async fn import(ctx: &Ctx, a: ImportArgs) -> Result<ExitCode> {
    let pass = MlflowPassphrase::load(
        a.mlflow_passphrase_file.as_deref(),
        a.mlflow_default_passphrase,
    )?;
    if a.mlflow_default_passphrase && ctx.chatty() {
        eprintln!(
            "warning: MLflow's default passphrase is public: its gateway secrets were only obfuscated; \
             rotate the imported keys at their provider"
        );
    }
    let src = SourceUri::parse(&a.from)?;
    let snap = read_gateway_secrets(&src).await?;
    let keys = MlflowKeys::derive(&pass, &snap.versions).await;
    drop(pass);
    let rows = decrypt_all(snap, &keys)?;
    drop(keys);
    let store = ctx.open_api(true).await?;
    let pb = progress_bar(ctx, rows.len() as u64, "importing");
    let opts = ImportOptions {
        update: a.update,
        dry_run: a.dry_run,
    };
    let report = apply(&*store, rows, opts, &actor(), &|| pb.inc(1)).await?;
    pb.finish_and_clear();
    print_import(ctx, &report)?;
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_import(ctx: &Ctx, r: &ImportReport) -> Result<()> {
    if ctx.json() {
        return emit_json(r);
    }
    let groups: [(&str, &[ImportEntry]); 4] = [
        (
            if r.dry_run {
                "would import"
            } else {
                "imported"
            },
            &r.imported,
        ),
        (
            if r.dry_run { "would update" } else { "updated" },
            &r.updated,
        ),
        ("skipped", &r.skipped),
        ("failed", &r.failed),
    ];
    if ctx.chatty() && groups.iter().any(|(_, g)| !g.is_empty()) {
        let mut t = table(&[
            "RESULT",
            "WORKSPACE",
            "NAME",
            "MLFLOW ID",
            "SECRET ID",
            "PROVIDER",
            "REASON",
        ]);
        for (what, group) in groups {
            for e in group {
                t.add_row(vec![
                    what,
                    &e.workspace,
                    &e.secret_name,
                    &e.mlflow_secret_id,
                    or_dash(e.secret_id.as_deref()),
                    or_dash(e.provider.as_deref()),
                    or_dash(e.reason.as_deref()),
                ]);
            }
        }
        emit_table(&t)?;
    }
    let line = format!(
        "{} {}, {} {}, skipped {}, failed {}{}",
        groups[0].0,
        r.imported.len(),
        groups[1].0,
        r.updated.len(),
        r.skipped.len(),
        r.failed.len(),
        if r.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    if r.failed.is_empty() {
        if !ctx.g.quiet {
            emit(&line)?;
        }
    } else {
        eprintln!("{line}");
    }
    Ok(())
}

async fn push(ctx: &Ctx, a: PushArgs) -> Result<ExitCode> {
    let store = ctx.open_api(true).await?;
    let ca = std::env::var_os(CA_ENV).map(PathBuf::from);
    let client = GatewayClient::new(
        &a.tracking_uri,
        MlflowAuth::from_env(),
        ctx.workspace(),
        ca.as_deref(),
        a.insecure_http,
    )?;
    let actor = actor();
    if a.all {
        let (done, failed) = sync_all(&*store, &client, ctx.workspace(), &actor).await?;
        if ctx.json() {
            emit_json(&json!({"pushed": done, "failed": failed}))?;
        } else {
            if ctx.chatty() && !(done.is_empty() && failed.is_empty()) {
                let mut t = table(&[
                    "RESULT",
                    "NAME",
                    "SECRET ID",
                    "MLFLOW NAME",
                    "MLFLOW ID",
                    "VERSION / ERROR",
                ]);
                for r in &done {
                    t.add_row(vec![
                        json!(r.action).as_str().unwrap_or("").to_string(),
                        r.secret_name.clone(),
                        r.secret_id.clone(),
                        r.mlflow_secret_name.clone(),
                        r.mlflow_secret_id.clone(),
                        r.version.to_string(),
                    ]);
                }
                for f in &failed {
                    t.add_row(vec![
                        "failed".into(),
                        f.secret_name.clone(),
                        f.secret_id.clone(),
                        "-".into(),
                        or_dash(f.mlflow_secret_id.as_deref()).to_string(),
                        f.error.clone(),
                    ]);
                }
                emit_table(&t)?;
            }
            for f in &failed {
                eprintln!(
                    "error: secret '{}' ({}): {}",
                    f.secret_name, f.secret_id, f.error
                );
            }
            if ctx.chatty() && done.is_empty() && failed.is_empty() {
                emit(&format!(
                    "no secret of workspace '{}' is linked to a gateway secret of {}",
                    ctx.workspace(),
                    client.base()
                ))?;
            }
        }
        return Ok(if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let Some(name) = a.name else {
        bail!("name a secret to push, or pass --all");
    };
    let secret = store.get_secret_by_name(ctx.workspace(), &name).await?;
    let remote = client.list().await?;
    let mlflow_name = a.mlflow_secret_name.as_deref().unwrap_or(&name);
    let r = sync_secret(
        &*store,
        &client,
        &remote,
        &secret,
        mlflow_name,
        true,
        &actor,
    )
    .await?;
    report_push(ctx, &r, client.base())?;
    Ok(ExitCode::SUCCESS)
}

fn report_push(ctx: &Ctx, r: &PushResult, base: &str) -> Result<()> {
    if ctx.json() {
        return emit_json(r);
    }
    if ctx.chatty() {
        emit(&format!(
            "{} MLflow gateway secret '{}' ({}) on {base} from secret '{}' (id {}, version {})",
            json!(r.action).as_str().map(capitalize).unwrap_or_default(),
            r.mlflow_secret_name,
            r.mlflow_secret_id,
            r.secret_name,
            r.secret_id,
            r.version
        ))?;
    }
    Ok(())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
