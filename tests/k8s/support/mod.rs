//! Fixtures of the k8s tree: the shared control plane and its namespaces
//! (`env`, re-exported here), the in-process controllers (`controller`),
//! the in-process webhook (`webhook`) and the operator as a process
//! (`operator`).

pub mod controller;
mod env;
pub mod operator;
pub mod webhook;

pub use env::*;
