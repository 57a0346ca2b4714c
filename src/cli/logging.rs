//! Logging for the CLI: tracing to stderr, so stdout stays clean for the
//! data a script asked for. The default level is `warn`: a command line tool
//! should be silent unless something needs attention.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use super::args::LogFormat;

/// Install the global subscriber. `--log-level` wins over `RUST_LOG`; with
/// neither, `warn` (`error` with `-q`). A bad filter falls back to the
/// default with a note, rather than failing the command.
pub fn init(format: LogFormat, level: Option<&str>, quiet: bool) {
    let default = if quiet { "error" } else { "warn" };
    let spec = level
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| default.to_string());
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("warning: ignoring log filter {spec:?}: {e}");
        EnvFilter::new(default)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // Already installed (tests calling `run` twice): keep the first one.
    let _ = result;
}
