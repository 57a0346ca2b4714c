//! The k8s tree: everything that needs a Kubernetes control plane — the
//! test control plane itself, the controllers in process, the webhook in
//! process, the operator as a real process (failover, faults, RBAC) and the
//! Helm chart. Opt-in through `MLFLOW_SECRETS_K8S` (default off: every test
//! returns at once and the binary prints one skip line; see
//! `support::skip_if_off!`). See docs/testing.md for what each module covers
//! and how to add a test.

mod binding_controller;
mod controller;
mod controller_columns;
mod controller_copies;
mod controller_import;
mod helm;
mod mlflow_sync;
mod operator;
mod operator_faults;
mod ops_doctor;
mod rbac;
mod support;
mod testenv;
mod webhook;
mod webhook_edges;
mod webhook_trust;
