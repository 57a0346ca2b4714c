//! The server tree: the REST API in process through the router (every
//! endpoint and error code, roles and workspace scopes, request hygiene,
//! resolve for runners, no plaintext in any answer or log, property tests
//! and the fuzz corpus replay), over TLS, the keystore hot reload, and the
//! `serve` binary itself. `support` holds the fixtures most of them share.
//! See docs/testing.md for what each tree covers and how to add a test.

mod api;
mod auth;
mod cli;
mod fuzz;
mod hygiene;
mod keywatch;
mod plaintext;
mod resolve;
mod scope;
mod support;
mod tls;
