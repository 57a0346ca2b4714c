//! The store tree: the `SecretsStore` contract on SQLite, PostgreSQL and
//! MariaDB (each case once per backend, through `testkit::contract!`), the
//! trust-model rules, and the same scenario over REST through `HttpStore`.
//! See docs/testing.md for what each tree covers and how to add a test.

mod batch_create;
mod contract;
mod create_and_bind;
mod http;
mod rules;
mod support;
