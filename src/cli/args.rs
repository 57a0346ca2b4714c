//! The command line (docs/design.md §9), as clap derive types.
//!
//! Only parsing lives here; [`super::run`] dispatches. None of these types
//! derives `Debug`: `--value` holds a secret, and a stray `{:?}` must not be
//! able to print it.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::model::{DEFAULT_RESOURCE_TYPE, SecretState};

use super::output::OutputFormat;

/// Environment variable naming the store.
pub const STORE_URI_ENV: &str = "MLFLOW_SECRETS_STORE_URI";
/// Environment variable naming the workspace.
pub const WORKSPACE_ENV: &str = "MLFLOW_SECRETS_WORKSPACE";
/// The default store: an embedded SQLite file in the current directory.
pub const DEFAULT_STORE_URI: &str = "sqlite://mlflow-secrets.db";

const TOP_EXAMPLES: &str = "\
EXAMPLES:
  # Create a keystore (the passphrase file must exist first)
  mlflow-secrets kek generate
  # Store an API key from stdin and bind it to a scorer job
  printf '%s' \"$OPENAI_API_KEY\" | mlflow-secrets create openai-key --value-stdin
  mlflow-secrets bind openai-key --resource-type SCORER_JOB --resource-id job-42 --name OPENAI_API_KEY
  # Check that every secret still decrypts
  mlflow-secrets verify";

/// Encrypted secrets store for MLflow.
#[derive(Parser)]
#[command(
    name = "mlflow-secrets",
    version,
    about,
    arg_required_else_help = true,
    after_help = TOP_EXAMPLES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Store: sqlite://PATH, postgres://..., mysql://..., or http(s)://HOST of a running server
    /// [default: the local home ./.mlflow-secrets/ if there is one, else sqlite://mlflow-secrets.db]
    #[arg(
        long,
        global = true,
        env = STORE_URI_ENV,
        hide_env_values = true,
        value_name = "URI"
    )]
    pub store_uri: Option<String>,
    /// Workspace (the Kubernetes namespace) that names resolve in [default: default]; `token create` takes it more than once
    // A list because `token create --workspace W...` repeats it; a
    // subcommand cannot define its own `--workspace` next to this global.
    #[arg(long, global = true, env = WORKSPACE_ENV, hide_env_values = true, value_name = "NAME", action = clap::ArgAction::Append)]
    pub workspace: Vec<String>,
    /// Keystore directory [default: /etc/mlflow/keystore]
    #[arg(
        long,
        global = true,
        env = crate::keystore::KEYSTORE_PATH_ENV,
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub keystore: Option<PathBuf>,
    /// Output format: tables for people, JSON for scripts
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Log line format (logs go to stderr)
    #[arg(long, global = true, env = "MLFLOW_SECRETS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `mlflow_secrets=debug` [default: RUST_LOG, else warn]
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// No confirmations or progress bars; only errors, warnings and requested data
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// File holding the bearer token for an http(s):// store [default: MLFLOW_SECRETS_TOKEN]
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for an https:// store, besides the system roots
    #[arg(
        long,
        global = true,
        env = "MLFLOW_SECRETS_CA_CERT",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub ca_cert: Option<PathBuf>,
    /// Tokio worker threads [default: one per CPU for serve and operator, 2 for other commands]
    #[arg(
        long,
        global = true,
        env = "MLFLOW_SECRETS_WORKER_THREADS",
        value_name = "N"
    )]
    pub worker_threads: Option<std::num::NonZeroUsize>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a secret (the value is encrypted with the active KEK)
    #[command(after_help = "\
EXAMPLES:
  printf '%s' \"$KEY\" | mlflow-secrets create openai-key --value-stdin
  mlflow-secrets create judge-creds --shared --json-file creds.json
  mlflow-secrets create openai-key            # prompts, echo off")]
    Create(CreateArgs),
    /// List secrets (metadata only)
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets list
  mlflow-secrets list --shared --state ACTIVE -o json
  mlflow-secrets list --all-workspaces")]
    List(ListArgs),
    /// Show a secret's metadata (never its value)
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets get openai-key
  mlflow-secrets get openai-key --workspace team-a -o json")]
    Get(NameArgs),
    /// Replace a secret's value (a fresh DEK is generated)
    #[command(after_help = "\
EXAMPLES:
  printf '%s' \"$NEW_KEY\" | mlflow-secrets update openai-key --value-stdin
  mlflow-secrets update judge-creds --json-file creds.json")]
    Update(UpdateArgs),
    /// Revoke a secret: its value can no longer be read (one-way)
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets revoke openai-key")]
    Revoke(NameArgs),
    /// Delete a secret and its bindings
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets delete openai-key            # asks for confirmation
  mlflow-secrets delete openai-key --yes")]
    Delete(DeleteArgs),
    /// Bind a secret to a resource under an environment-variable name
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets bind openai-key --resource-type SCORER_JOB --resource-id job-42 --name OPENAI_API_KEY
  mlflow-secrets bind azure --resource-id job-42 --name AZURE_API_KEY --field api_key --service-account scorer")]
    Bind(BindArgs),
    /// Remove a binding
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets unbind 0b5e6c1a-7f1d-4c8e-9a55-2f0c3d4e5f60")]
    Unbind(UnbindArgs),
    /// List bindings
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets list-bindings
  mlflow-secrets list-bindings --resource-type SCORER_JOB --resource-id job-42
  mlflow-secrets list-bindings --secret openai-key -o json")]
    ListBindings(ListBindingsArgs),
    /// Decrypt every secret and report failures (never values)
    #[command(after_help = "\
Exits 1 when any secret fails to decrypt.

EXAMPLES:
  mlflow-secrets verify
  mlflow-secrets verify -o json")]
    Verify,
    /// Manage the KEK keystore
    #[command(subcommand)]
    Kek(KekCommand),
    /// Re-wrap DEKs under the active KEK, in batches (safe to rerun after a crash)
    #[command(after_help = "\
Exits 1 when any row could not be rewrapped (it is left untouched and listed).

EXAMPLES:
  mlflow-secrets kek rotate && mlflow-secrets rewrap --all
  mlflow-secrets rewrap --kek-version 1 --batch-size 200")]
    Rewrap(RewrapArgs),
    /// Audit log checks
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Apply pending database migrations
    #[command(after_help = "\
SQLite is migrated automatically; PostgreSQL and MySQL only by this command.

EXAMPLES:
  MLFLOW_SECRETS_STORE_URI=postgres://secrets@db/secrets mlflow-secrets migrate")]
    Migrate,
    /// Back up the store and the keystore (never a passphrase) into one archive
    Backup(super::ops::BackupArgs),
    /// Restore a backup into an empty store, then verify it
    Restore(super::ops::RestoreArgs),
    /// Check the installation and print a remedy for each problem
    Doctor(super::ops::DoctorArgs),
    /// Run the REST server (MLflow REST conventions, bearer tokens, TLS)
    Serve(super::serve::ServeArgs),
    /// API tokens for `serve`
    #[command(subcommand)]
    Token(super::token::TokenCommand),
    /// MLflow AI Gateway secrets: import them from MLflow's database, push ours to an MLflow server
    #[command(subcommand)]
    Mlflow(super::mlflow::MlflowCommand),
    /// Run the Kubernetes operator: CRD controllers (leader only) and the injecting webhook
    #[command(after_help = "\
EXAMPLES:
  # in a cluster (the Helm chart sets these)
  mlflow-secrets operator --store-uri postgres://... --webhook-listen 0.0.0.0:8443
  # outside a cluster, against a control plane that can reach this machine
  mlflow-secrets operator --webhook-listen 127.0.0.1:8443 --webhook-url https://127.0.0.1:8443/mutate")]
    Operator(Box<super::operator::OperatorArgs>),
    /// Run a command with the secrets bound to a resource, as the webhook would inject them
    Run(super::run::RunArgs),
    /// Print the CustomResourceDefinitions (or write them to a directory)
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets crdgen > crds.yaml
  mlflow-secrets crdgen --output-dir crds/")]
    Crdgen(crate::k8s::crdgen::CrdgenArgs),
    /// Print a shell completion script
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets completion bash > /etc/bash_completion.d/mlflow-secrets
  mlflow-secrets completion zsh > \"${fpath[1]}/_mlflow-secrets\"")]
    Completion(CompletionArgs),
}

/// Where a value comes from. At most one; with none, a terminal prompts.
#[derive(Args)]
#[group(id = "value_source", multiple = false)]
#[command(next_help_heading = "Value (at most one; none prompts on a terminal)")]
pub struct ValueArgs {
    /// Read the value from standard input (one trailing newline is stripped)
    #[arg(long)]
    pub value_stdin: bool,
    /// Read the value from a file (one trailing newline is stripped)
    #[arg(long, value_name = "FILE")]
    pub value_file: Option<PathBuf>,
    /// Read a JSON string, or an object of strings, from a file
    #[arg(long, value_name = "FILE")]
    pub json_file: Option<PathBuf>,
    /// The value itself (discouraged: it lands in shell history and process listings)
    #[arg(long, value_name = "VALUE")]
    pub value: Option<String>,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Secret name (unique in the workspace)
    pub name: String,
    /// Allow any resource in the workspace to bind it (default: one resource)
    #[arg(long)]
    pub shared: bool,
    /// The LLM provider of the credential (openai, anthropic, azure, ...)
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    #[command(flatten)]
    pub value: ValueArgs,
}

#[derive(Args)]
pub struct UpdateArgs {
    pub name: String,
    #[command(flatten)]
    pub value: ValueArgs,
}

#[derive(Args)]
pub struct NameArgs {
    /// Secret name
    pub name: String,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Secret name
    pub name: String,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only shared secrets
    #[arg(long)]
    pub shared: bool,
    /// Only secrets in this state
    #[arg(long, value_name = "ACTIVE|REVOKED", value_parser = parse_state)]
    pub state: Option<SecretState>,
    /// List every workspace, not only --workspace
    #[arg(long, short = 'A')]
    pub all_workspaces: bool,
    /// Return one page of at most N secrets (default: every page)
    #[arg(long, value_name = "N")]
    pub max_results: Option<u32>,
    /// Continue a paged listing (implies one page)
    #[arg(long, value_name = "TOKEN")]
    pub page_token: Option<String>,
}

#[derive(Args)]
pub struct BindArgs {
    /// Secret name
    pub name: String,
    /// Resource type
    #[arg(long, value_name = "T", default_value = DEFAULT_RESOURCE_TYPE)]
    pub resource_type: String,
    /// Resource id (for a scorer job, its id)
    #[arg(long, value_name = "ID")]
    pub resource_id: String,
    /// Binding name: the environment variable the value is injected as
    #[arg(long = "name", value_name = "BINDING")]
    pub binding_name: String,
    /// Inject only this field of an object value (e.g. api_key of an Azure credential)
    #[arg(long = "field", value_name = "KEY")]
    pub field: Option<String>,
    /// Only pods running as this Kubernetes ServiceAccount receive the binding (repeatable)
    #[arg(long = "service-account", value_name = "SA")]
    pub service_accounts: Vec<String>,
}

#[derive(Args)]
pub struct UnbindArgs {
    /// Binding id (from `list-bindings`)
    pub binding_id: String,
}

#[derive(Args)]
pub struct ListBindingsArgs {
    #[arg(long, value_name = "T")]
    pub resource_type: Option<String>,
    #[arg(long, value_name = "ID")]
    pub resource_id: Option<String>,
    /// Only bindings of this secret (a name in --workspace)
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,
    /// List every workspace, not only --workspace
    #[arg(long, short = 'A', conflicts_with = "secret")]
    pub all_workspaces: bool,
}

#[derive(Subcommand)]
pub enum KekCommand {
    /// Create the keystore with KEK version 1
    #[command(after_help = "\
The passphrase comes from --passphrase-file / --passphrase-stdin, or else from
MLFLOW_SECRETS_KEK_PASSPHRASE_FILE (default /root/.mlflow_kek_pass: a file, or
a directory of v<N> files). It is never accepted as an argument.

EXAMPLES:
  mlflow-secrets kek generate
  mlflow-secrets kek generate --passphrase-file /run/secrets/kek-pass --random-salt")]
    Generate(KekNewArgs),
    /// Add the next KEK version and make it active
    #[command(after_help = "\
Existing rows stay readable with the old version until `rewrap` moves them.

EXAMPLES:
  echo 'new passphrase' > /etc/mlflow/kek-passphrase/v2 && mlflow-secrets kek rotate
  mlflow-secrets rewrap --all")]
    Rotate(KekNewArgs),
    /// List KEK versions and how many secrets use each
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets kek list
  mlflow-secrets kek list -o json")]
    List,
    /// Make a version the one new writes use
    #[command(after_help = "\
EXAMPLES:
  mlflow-secrets kek set-active --version 2")]
    SetActive(VersionArgs),
    /// Retire a version no secret uses any more (it is no longer loaded)
    #[command(after_help = "\
Refuses the active version, and any version a secret still uses. The store
must be named (--store-uri or MLFLOW_SECRETS_STORE_URI), and a store with no
secret at all is refused unless --empty-store-ok: a mistyped store must never
retire a key that the real one still needs.

EXAMPLES:
  mlflow-secrets --store-uri postgres://secrets@db/secrets rewrap --kek-version 1
  mlflow-secrets --store-uri postgres://secrets@db/secrets kek retire --version 1")]
    Retire(RetireArgs),
}

#[derive(Args)]
#[group(id = "passphrase_source", multiple = false)]
#[command(next_help_heading = "Passphrase (default: MLFLOW_SECRETS_KEK_PASSPHRASE_FILE)")]
pub struct PassphraseArgs {
    /// Read the passphrase from this file (one trailing newline is stripped)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase from standard input
    #[arg(long)]
    pub passphrase_stdin: bool,
}

#[derive(Args)]
pub struct KekNewArgs {
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
    /// Use a random 16-byte salt instead of the MLflow-compatible default
    #[arg(long)]
    pub random_salt: bool,
}

#[derive(Args)]
pub struct RetireArgs {
    /// KEK version
    #[arg(long, value_name = "N")]
    pub version: u32,
    /// Retire even though the store holds no secret at all
    #[arg(long)]
    pub empty_store_ok: bool,
}

#[derive(Args)]
pub struct VersionArgs {
    /// KEK version
    #[arg(long, value_name = "N")]
    pub version: u32,
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["kek_version", "all"])))]
pub struct RewrapArgs {
    /// Rewrap the rows on this version
    #[arg(long, value_name = "N")]
    pub kek_version: Option<u32>,
    /// Rewrap every row not on the active version
    #[arg(long)]
    pub all: bool,
    /// Rows per transaction (1 to 10000)
    #[arg(long, value_name = "B", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::store::MAX_REWRAP_BATCH)))]
    pub batch_size: u32,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain
    #[command(after_help = "\
Exits 1 and names the first broken row when a row was edited or deleted.
With --head, the chain must also still reach a head exported earlier (the
`audit head seq=N hash=H` lines that serve and the operator log): that
catches a chain rewritten and re-hashed by someone with database access.

EXAMPLES:
  mlflow-secrets audit verify
  mlflow-secrets audit verify --head 12000:3f0c...e1")]
    Verify(AuditVerifyArgs),
}

#[derive(Args)]
pub struct AuditVerifyArgs {
    /// An exported head, SEQ:HASH, that the chain must still reach unchanged
    #[arg(long, value_name = "SEQ:HASH", value_parser = parse_head)]
    pub head: Option<crate::store::audit::ExportedHead>,
}

fn parse_head(s: &str) -> Result<crate::store::audit::ExportedHead, String> {
    s.parse()
}

#[derive(Args)]
pub struct CompletionArgs {
    /// Shell to generate for
    pub shell: clap_complete::Shell,
}

fn parse_state(s: &str) -> Result<SecretState, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
