//! The web UI tree: every page and refusal in process (`router`, tower
//! `oneshot`), and the real pages in Debian's headless Chromium over the
//! DevTools protocol (`browser`; skipped with one line when no browser is
//! found, unless `MLFLOW_SECRETS_UI_BROWSER=require`). See docs/testing.md.

mod browser;
mod router;
mod support;
