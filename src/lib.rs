//! mlflow-secrets: an encrypted secrets store for MLflow.
//!
//! Layers, bottom up: [`crypto`] (envelope encryption), [`keystore`]
//! (versioned KEKs from passphrases), [`value`] and [`model`] (what is
//! stored and returned), [`store`] (the `SecretsStore` trait and its SQL
//! implementation), and [`cli`] (the `mlflow-secrets` command).

pub mod cli;
pub mod crypto;
pub mod k8s;
pub mod keystore;
pub mod model;
pub mod server;
pub mod store;
pub mod value;
