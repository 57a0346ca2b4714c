//! The pages of docs/design.md §12, one module each.

pub(crate) mod audit;
pub(crate) mod keys;
pub(crate) mod login;
pub(crate) mod resources;
pub(crate) mod secrets;
pub(crate) mod secrets_actions;
