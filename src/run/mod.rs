//! `mlflow-secrets run`: start a command with exactly the secrets the
//! webhook would inject for a resource (docs/design.md §13, docs/run.md).
//!
//! The CLI (`src/cli/run.rs`) resolves the bindings, through the selection
//! the webhook uses ([`crate::inject::select`]), into a
//! [`ResolvedResource`]; [`launch`] hands it to the command:
//!
//! - [`env`]: the command's environment (bindings, `MLFLOW_SECRETS_INJECTED`,
//!   `run`'s own credentials removed, `--pristine`);
//! - [`files`]: `--inject file`, a private directory on tmpfs;
//! - [`mask`]: streaming masking of values in the command's output;
//! - [`supervise`]: the child, its signals and its exit status, when `run`
//!   must stay; otherwise `run` replaces itself with the command (exec).

pub(crate) mod env;
pub(crate) mod files;
pub mod mask;
pub(crate) mod supervise;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use secrecy::ExposeSecret;

use crate::store::ResolvedResource;

/// Exit code when `run` itself fails (no binding, a revoked secret, a
/// decrypt failure, the store down, ...).
pub const EXIT_FAILED: u8 = 125;
/// Exit code when the command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit code when the command is not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Errors of `run` after the values are resolved. Each names the path,
/// binding or command; none holds a value.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("secrets directory {path}: {why}", path = path.display())]
    SecretsDir { path: PathBuf, why: String },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("{program}: cannot execute: {source}")]
    CannotExecute {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// The error of starting (or exec'ing) `program`.
    pub fn spawn(program: &str, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound {
                program: program.to_string(),
            }
        } else {
            Self::CannotExecute {
                program: program.to_string(),
                source: e,
            }
        }
    }

    /// The exit code of `run` for this error (docs/design.md §13).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotFound { .. } => EXIT_NOT_FOUND,
            Self::CannotExecute { .. } => EXIT_CANNOT_EXECUTE,
            _ => EXIT_FAILED,
        }
    }
}

/// How the values reach the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InjectMode {
    /// One environment variable per binding name.
    Env,
    /// One 0400 file per binding name in a 0700 directory on tmpfs.
    File,
}

/// When the command's output is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MaskMode {
    /// stdout and stderr each when it is not a terminal.
    Auto,
    Always,
    Never,
}

impl MaskMode {
    fn applies(self, is_terminal: bool) -> bool {
        match self {
            Self::Auto => !is_terminal,
            Self::Always => true,
            Self::Never => false,
        }
    }
}

/// What `launch` does besides the values and the command.
#[derive(Debug, Clone)]
pub struct Options {
    pub inject: InjectMode,
    /// `--secrets-dir`: the directory file mode creates.
    pub secrets_dir: Option<PathBuf>,
    pub mask: MaskMode,
    pub pristine: bool,
}

/// Start `command` with `resolved`: exec it when nothing must stay,
/// otherwise supervise it. Returns the exit code for `run` (the command's,
/// or 128 + the signal that killed it); an exec that succeeds never
/// returns. Warnings (a variable replaced, a value too short to mask) go
/// to stderr, naming variables only.
pub fn launch(
    resolved: ResolvedResource,
    opts: &Options,
    command: &[OsString],
) -> Result<i32, RunError> {
    let (program, args) = command.split_first().ok_or_else(|| RunError::NotFound {
        program: String::new(),
    })?;
    let program_name = program.to_string_lossy().into_owned();
    let values = || {
        resolved
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
    };
    let mask_out = opts.mask.applies(std::io::stdout().is_terminal());
    let mask_err = opts.mask.applies(std::io::stderr().is_terminal());
    let patterns = if mask_out || mask_err {
        let (p, short) = mask::Patterns::new(values());
        for name in short {
            eprintln!(
                "warning: the value of {name} is shorter than {} bytes and is not masked in the output",
                mask::MIN_MASKED_LEN
            );
        }
        p
    } else {
        None
    };
    let file_mode = opts.inject == InjectMode::File;
    // Signals are caught from before the secrets directory exists, so none
    // can end `run` before it removes it.
    let supervisor = if file_mode || patterns.is_some() {
        Some(supervise::Supervisor::new()?)
    } else {
        None
    };
    let dir = if file_mode {
        let d = files::SecretsDir::create(opts.secrets_dir.as_deref())?;
        for (name, v) in &resolved.values {
            d.write(name, v)?;
        }
        Some(d)
    } else {
        None
    };
    let bindings: Vec<(&str, &secrecy::SecretString)> = if file_mode {
        Vec::new()
    } else {
        resolved
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    };
    let child_env = env::child_env(
        std::env::vars_os(),
        opts.pristine,
        &bindings,
        &resolved.injected,
        dir.as_ref().map(|d| d.path()),
    );
    for name in &child_env.replaced {
        eprintln!(
            "warning: {name} is already set in the environment; run replaces it with the binding of that name"
        );
    }
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(child_env.vars);
    drop(bindings);
    let Some(supervisor) = supervisor else {
        drop(resolved);
        let e = cmd.exec();
        return Err(RunError::spawn(&program_name, e));
    };
    let masking = supervise::Masking {
        stdout: patterns.clone().filter(|_| mask_out),
        stderr: patterns.filter(|_| mask_err),
    };
    drop(resolved);
    let code = supervisor.run(cmd, &program_name, masking);
    if let Some(d) = dir {
        d.remove()?;
    }
    code
}
