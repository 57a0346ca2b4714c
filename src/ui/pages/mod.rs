//! The pages of docs/design.md §12, one module each.

pub mod audit;
pub mod keys;
pub mod login;
pub mod resources;
pub mod secrets;
pub mod secrets_actions;
