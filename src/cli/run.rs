//! `mlflow-secrets run`: the flags, resolving the bindings (locally with
//! the keystore, or through a server's `resolve` with a runner token), and
//! the exit codes of docs/design.md §13. What happens to the command is
//! `crate::run`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Args;

use super::output::{emit_json, emit_table, table};
use super::{Ctx, actor, is_server_uri, print_error, read_token};
use crate::inject::{Offered, SelectError, Wanted, offered_from_meta, select};
use crate::model::{DEFAULT_RESOURCE_TYPE, ResourceRef};
use crate::run::{EXIT_FAILED, InjectMode, MaskMode, Options};
use crate::store::{HttpStore, ResolvedResource, SecretsStore};

const EXAMPLES: &str = "\
EXAMPLES:
  # A direct judge: OPENAI_API_KEY from the store, for this process only
  mlflow-secrets run --resource-id judge-eval -- python3 eval.py
  # Through a server, with a runner token minted for this one resource
  MLFLOW_SECRETS_TOKEN=\"$(cat runner.token)\" mlflow-secrets run \\
      --store-uri https://secrets.example:8443 --workspace team-a --resource-id job-42 -- python3 score.py
  # Only some of the resource's bindings, as files on tmpfs
  mlflow-secrets run --resource-id job-42 --only AZURE_API_KEY,AZURE_API_BASE --inject file -- ./score.sh
  # MLflow's job runner: every job it starts inherits every key
  mlflow-secrets run --resource-id mlflow-server --pristine -- mlflow server --port 5000
  # What would be injected (names, ids, versions; never a value)
  mlflow-secrets run --resource-id job-42 --dry-run

EXIT CODES:
  the command's own; 128+N if signal N killed it; 125 if run itself failed
  (no binding, a revoked secret, a decrypt failure, the store down);
  126 if the command cannot be executed; 127 if it is not found.";

/// Run a command with the secrets bound to a resource, exactly as the webhook would inject them
#[derive(Args)]
#[command(after_help = EXAMPLES)]
pub struct RunArgs {
    /// Resource type of the bindings
    #[arg(long, default_value = DEFAULT_RESOURCE_TYPE, value_name = "TYPE")]
    pub resource_type: String,
    /// Resource id of the bindings (the scorer job)
    #[arg(long, value_name = "ID")]
    pub resource_id: String,
    /// Inject only these binding names (comma-separated or repeated); each must be bound
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub only: Vec<String>,
    /// How values reach the command: environment variables, or files on tmpfs (MLFLOW_SECRETS_DIR)
    #[arg(long, value_enum, default_value_t = InjectMode::Env)]
    pub inject: InjectMode,
    /// Directory to create for --inject file; its parent must be tmpfs or ramfs
    /// [default: a new directory under $XDG_RUNTIME_DIR, else /dev/shm]
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Replace values in the command's stdout and stderr with [MASKED:<name>]
    /// (auto: each stream that is not a terminal)
    #[arg(long, value_enum, default_value_t = MaskMode::Auto)]
    pub mask: MaskMode,
    /// Pass only PATH HOME USER LANG LC_* TERM TZ TMPDIR of this environment, besides the bindings
    #[arg(long)]
    pub pristine: bool,
    /// Print the binding names, secret ids and versions that would be injected, and run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The command and its arguments (after `--`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND",
        required_unless_present = "dry_run"
    )]
    pub command: Vec<OsString>,
}

/// `run`: every failure of `run` itself is one `error:` line and exit 125.
pub async fn run(ctx: &Ctx, a: RunArgs) -> Result<ExitCode> {
    let resolved = match resolve(ctx, &a).await {
        Ok(r) => r,
        Err(e) => return Ok(failed(&e)),
    };
    if a.dry_run {
        return match dry_run(ctx, &resolved) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => Ok(failed(&e)),
        };
    }
    let opts = Options {
        inject: a.inject,
        secrets_dir: a.secrets_dir,
        mask: a.mask,
        pristine: a.pristine,
    };
    match crate::run::launch(resolved, &opts, &a.command) {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(EXIT_FAILED))),
        Err(e) => {
            print_error(&anyhow!(e.to_string()));
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

/// Print `e` as `run`'s own failure and give its exit code, 125.
pub fn failed(e: &anyhow::Error) -> ExitCode {
    print_error(e);
    ExitCode::from(EXIT_FAILED)
}

/// The bindings `--only` asks for, as the webhook's selection takes them.
fn wanted_names(a: &RunArgs) -> Option<BTreeSet<String>> {
    (!a.only.is_empty()).then(|| {
        a.only
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    })
}

fn wanted<'a>(names: Option<&'a BTreeSet<String>>) -> Wanted<'a> {
    Wanted {
        names,
        origin: "--only",
        place: "workspace",
        service_account: None,
    }
}

/// Resolve what the webhook would inject for the resource, narrowed by
/// `--only`. One audited read either way: the server's `resolve`, or the
/// local store's chosen-bindings read (which decrypts only the chosen
/// rows).
async fn resolve(ctx: &Ctx, a: &RunArgs) -> Result<ResolvedResource> {
    let names = wanted_names(a);
    let ws = ctx.workspace();
    let no_binding = || {
        anyhow!(
            "no secrets are bound to {}/{} in workspace '{ws}'",
            a.resource_type,
            a.resource_id
        )
    };
    let resource = ResourceRef::new(ws, &a.resource_type, &a.resource_id);
    if is_server_uri(&ctx.store_uri) {
        let token = read_token(ctx.g.token_file.as_deref())?;
        let store = HttpStore::new(&ctx.store_uri, token, ctx.g.ca_cert.as_deref())?;
        let mut r = store.resolve_resource(resource, "").await?;
        if r.injected.is_empty() {
            return Err(no_binding());
        }
        // The server returns every binding of the resource (what the
        // webhook offers); the same rule narrows it here.
        let offered = r
            .injected
            .iter()
            .map(|i| (i.binding_name.clone(), Offered::default()))
            .collect();
        let chosen = select(&offered, &wanted(names.as_ref()))?;
        r.values.retain(|k, _| chosen.contains(k));
        r.injected.retain(|i| chosen.contains(&i.binding_name));
        return Ok(r);
    }
    let store = ctx.open_store().await?;
    let bound = store
        .get_chosen_bound_values(
            resource,
            &actor(),
            |meta| -> Result<BTreeSet<String>, SelectError> {
                select(&offered_from_meta(meta), &wanted(names.as_ref()))
            },
        )
        .await??;
    if bound.is_empty() {
        return Err(no_binding());
    }
    Ok(ResolvedResource::from_bound(bound))
}

/// `--dry-run`: names, secret ids and versions; never a value.
fn dry_run(ctx: &Ctx, r: &ResolvedResource) -> Result<()> {
    if ctx.json() {
        return emit_json(&serde_json::json!({ "injected": r.injected }));
    }
    let mut t = table(&["BINDING", "SECRET ID", "VERSION"]);
    for i in &r.injected {
        t.add_row(vec![
            i.binding_name.clone(),
            i.secret_id.clone(),
            i.version.to_string(),
        ]);
    }
    if r.injected.is_empty() {
        bail!("nothing to inject");
    }
    emit_table(&t)
}
