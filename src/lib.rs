//! mlflow-secrets: an encrypted secrets store for MLflow.
//!
//! Layers, bottom up: [`crypto`] (envelope encryption), [`keystore`]
//! (versioned KEKs from passphrases), [`value`] and [`model`]
//! (what is stored and returned), [`store`] (the `SecretsStore` trait, its
//! SQL implementation and the REST client, the audit log), then the front
//! ends: [`server`] (the REST API of `serve`), [`k8s`] (CRDs, controllers,
//! the injecting webhook and the `operator` process) and [`cli`] (the
//! `mlflow-secrets` command, which starts the other two); [`net`] holds the
//! TLS listener and shutdown signal both servers use. [`wire`] is the
//! REST contract both the server and the REST client store use.
//!
//! docs/architecture.md maps each concern to its module and traces the
//! main request paths; docs/design.md is the contract.

// The one `unsafe` is the `mallopt` call in `cli/alloc.rs`, allowed
// there with its SAFETY note; anything else must argue its case the same way.
#![deny(unsafe_code)]

pub mod cli;
pub mod crypto;
pub mod inject;
pub mod k8s;
pub mod keystore;
pub(crate) mod mlflow;
pub mod model;
pub(crate) mod net;
pub mod ops;
pub mod run;
pub mod server;
pub mod store;
pub mod ui;
pub mod value;
pub(crate) mod wire;
