//! `/keys` (admin of every workspace): the KEK versions the server has
//! loaded, their states, how many rows each wraps, and what a rewrap would
//! move (the rows not under the active version). Counts cover every
//! workspace, so a workspace-scoped admin is refused.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use crate::server::AppState;
use crate::server::auth::Role;
use crate::ui::guard::{Ctx, UiError};
use crate::ui::layout::{self, time};

/// `GET /keys`.
pub async fn page(State(st): State<AppState>, ctx: Ctx) -> Result<Response, UiError> {
    ctx.require(Role::Admin)?;
    if ctx.principal.workspace_filter().is_some() {
        return Err(UiError::forbidden(format!(
            "principal '{}' is scoped to some workspaces; the key page counts rows of every workspace and needs a token for all (workspaces=*)",
            ctx.principal.name
        )));
    }
    let ks = st.store.keys.current();
    let active = ks.active_version();
    let counts = st.store.kek_version_counts().await?;
    let loaded: Vec<_> = ks.versions().cloned().collect();
    let mut all: BTreeSet<u32> = counts.keys().copied().collect();
    all.extend(loaded.iter().map(|k| k.version));
    let backlog: u64 = counts
        .iter()
        .filter(|(v, _)| **v != active)
        .map(|(_, n)| *n)
        .sum();
    let body = html! {
        p { "Active version: " strong { (active) } ". New values are wrapped under it." }
        table {
            caption { "Key-encryption key versions" }
            thead { tr {
                th scope="col" { "Version" }
                th scope="col" { "State" }
                th scope="col" { "Created" }
                th scope="col" { "PBKDF2 iterations" }
                th scope="col" { "Salt" }
                th scope="col" { "Rows wrapped" }
            } }
            tbody {
                @for v in &all {
                    @let info = loaded.iter().find(|k| k.version == *v);
                    tr {
                        th scope="row" { (v) }
                        td { @match info {
                            Some(k) => (k.state.as_str()),
                            None => "not loaded (retired or missing)",
                        } }
                        td { @match info { Some(k) if k.created_at > 0 => (time(k.created_at)), _ => "—" } }
                        td { @match info { Some(k) => (k.iterations), None => "—" } }
                        td { @match info {
                            Some(k) if k.default_salt => "default (MLflow-compatible)",
                            Some(_) => "random",
                            None => "—",
                        } }
                        td { (counts.get(v).copied().unwrap_or(0)) }
                    }
                }
            }
        }
        h2 { "Rewrap backlog" }
        @if backlog == 0 {
            p { "Every row is wrapped under the active version: nothing to rewrap." }
        } @else {
            p {
                (backlog) " row(s) are wrapped under older versions. Move them with "
                code { "mlflow-secrets rewrap --all" } "; a version with no rows left can then be retired ("
                code { "mlflow-secrets kek retire --version N" } ")."
            }
        }
    };
    Ok(layout::page(&ctx, "Keys", body))
}
