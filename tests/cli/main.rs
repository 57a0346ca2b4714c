//! The CLI tree: the `mlflow-secrets` binary end to end on a scratch
//! keystore and SQLite database, the committed CRDs against the Rust types,
//! and TRACE-level logs of every store operation searched for values.
//! See docs/testing.md for what each tree covers and how to add a test.

mod commands;
mod crds_committed;
mod mlflow_import;
mod mlflow_push;
mod no_plaintext_logs;
mod ops_backup;
mod ops_doctor;
mod run;
