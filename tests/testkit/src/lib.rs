//! Fixtures shared by the integration test trees and the benches
//! (docs/testing.md): a keystore with two passphrase versions, a fresh
//! migrated database per test on SQLite, PostgreSQL and MariaDB, the
//! `contract!` macro that runs one case on each backend, a log capture, and
//! the once-per-binary skip line.
//!
//! It is a crate of its own (a dev-dependency of `mlflow-secrets`) rather
//! than a module each test binary includes, so there is one copy, included
//! without `#[path]`, and an unused helper shows up as dead code here.

mod db;
mod keystore;
mod logs;
pub mod mlflow;
pub mod notice;
pub mod ops;
mod values;

pub use db::{Backend, TestDb, drop_audit_triggers, empty_database, init, run_case};
pub use keystore::{PASSPHRASE_V1, PASSPHRASE_V2, TestKeystore};
pub use logs::CapturedLogs;
pub use values::{as_string, val};
