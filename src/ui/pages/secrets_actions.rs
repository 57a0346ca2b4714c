//! The write forms of a secret's page and their handlers: rotate (a new
//! value), revoke (one-way; warns how many bindings will then be denied),
//! delete (type the name; lists the bindings that go with it). Each is a
//! POST with the session's form token, answered with a redirect.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::secrets::{api_to_ui, value_inputs, value_of, visible_secret};
use crate::model::{Secret, SecretBinding, SecretState};
use crate::server::AppState;
use crate::server::auth::Role;
use crate::store::SecretsStore;
use crate::store::StoreError;
use crate::store::audit::AuditAction;
use crate::ui::form::UiForm;
use crate::ui::guard::{Ctx, Posted, UiError, see_other};
use crate::ui::layout::{self, csrf_field};

/// The rotate, revoke and delete forms.
pub fn forms(ctx: &Ctx, s: &Secret, bindings: &[SecretBinding], total: u64) -> Markup {
    let active = s.state == SecretState::Active;
    html! {
        @if active {
            section aria-labelledby="rotate" {
                h2 #rotate { "Rotate" }
                form.card method="post" action={"/secrets/" (s.secret_id) "/rotate"} {
                    (csrf_field(ctx))
                    p { "Store a new value. Bindings inject the new value from their next run on." }
                    (value_inputs(false, &[]))
                    p { button type="submit" { "Rotate: store the new value" } }
                }
            }
            section aria-labelledby="revoke" {
                h2 #revoke { "Revoke" }
                form.card method="post" action={"/secrets/" (s.secret_id) "/revoke"} {
                    (csrf_field(ctx))
                    p.warning role="note" {
                        strong { "Warning: " }
                        "revoking is one-way and shreds the value. "
                        @if total == 1 { "1 binding" } @else { (total) " bindings" }
                        " will then be denied: every pod or run of those resources fails until it is bound to another secret."
                    }
                    p {
                        input #revoke-confirm type="checkbox" name="confirm" value="yes" required;
                        label for="revoke-confirm" { "I understand that " (total) " binding(s) will be denied" }
                    }
                    p { button.danger type="submit" data-confirm="Revoke this secret? This cannot be undone." { "Revoke secret" } }
                }
            }
        }
        section aria-labelledby="delete" {
            h2 #delete { "Delete" }
            form.card method="post" action={"/secrets/" (s.secret_id) "/delete"} {
                (csrf_field(ctx))
                p.warning role="note" {
                    strong { "Warning: " }
                    "deleting removes the secret and its " (total) " binding(s):"
                }
                @if !bindings.is_empty() {
                    ul {
                        @for b in bindings {
                            li { code { (b.binding_name) } " of " (b.resource_type) "/" (b.resource_id) }
                        }
                    }
                }
                p {
                    label for="confirm_name" { "Type the secret's name (" (s.secret_name) ") to delete it" }
                    input #confirm_name type="text" name="confirm_name" autocomplete="off" required;
                }
                p { button.danger type="submit" { "Delete secret" } }
            }
        }
    }
}

/// What every write form starts with: a writer, and a secret the
/// session may see.
async fn target(
    st: &AppState,
    p: Posted,
    id: &str,
    action: AuditAction,
) -> Result<(Ctx, UiForm, Secret), UiError> {
    let Posted { ctx, form } = p;
    ctx.require(Role::Writer)?;
    let s = visible_secret(st, &ctx, id, action).await?;
    Ok((ctx, form, s))
}

/// `POST /secrets/{secret_id}/rotate`.
pub async fn rotate(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Posted,
) -> Result<Response, UiError> {
    let (ctx, form, s) = target(&st, p, &id, AuditAction::Update).await?;
    let value = match value_of(&form) {
        Ok(v) => v,
        Err(m) => return Ok(redo(&ctx, &s, &m)),
    };
    match st
        .store
        .update_secret(&s.secret_id, &value, &ctx.principal.name)
        .await
    {
        Ok(_) => {}
        Err(e @ (StoreError::InvalidParameter(_) | StoreError::Conflict(_))) => {
            return Ok(redo(&ctx, &s, &e.to_string()));
        }
        Err(e) => return Err(e.into()),
    }
    st.metrics.encrypts.inc();
    ctx.flash(
        &st,
        format!("Secret '{}' rotated: a new value is stored.", s.secret_name),
    );
    Ok(see_other(&format!("/secrets/{}", s.secret_id)))
}

/// A refused change: the message and a way back, never the value.
fn redo(ctx: &Ctx, s: &Secret, msg: &str) -> Response {
    let body = html! {
        p.error role="alert" { (msg) }
        p { a href={"/secrets/" (s.secret_id)} { "Back to secret " (s.secret_name) } }
    };
    layout::page_with_status(ctx, StatusCode::BAD_REQUEST, "Not changed", body)
}

/// `POST /secrets/{secret_id}/revoke`.
pub async fn revoke(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Posted,
) -> Result<Response, UiError> {
    let (ctx, form, s) = target(&st, p, &id, AuditAction::Revoke).await?;
    if form.get("confirm") != Some("yes") {
        return Ok(redo(&ctx, &s, "tick the box that confirms the revocation"));
    }
    let n = st.store.count_bindings_of(&s.secret_id).await?;
    match st
        .store
        .revoke_secret(&s.secret_id, &ctx.principal.name)
        .await
    {
        Ok(_) => {}
        Err(e @ StoreError::Conflict(_)) => return Ok(redo(&ctx, &s, &e.to_string())),
        Err(e) => return Err(e.into()),
    }
    ctx.flash(
        &st,
        format!(
            "Secret '{}' revoked; {n} binding(s) are now denied.",
            s.secret_name
        ),
    );
    Ok(see_other(&format!("/secrets/{}", s.secret_id)))
}

/// `POST /secrets/{secret_id}/delete`.
pub async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Posted,
) -> Result<Response, UiError> {
    let (ctx, form, s) = target(&st, p, &id, AuditAction::Delete).await?;
    if form.get("confirm_name") != Some(s.secret_name.as_str()) {
        return Ok(redo(
            &ctx,
            &s,
            "the name typed does not match the secret's name: nothing was deleted",
        ));
    }
    st.store
        .delete_secret(&s.secret_id, &ctx.principal.name)
        .await
        .map_err(|e| api_to_ui(e.into()))?;
    ctx.flash(
        &st,
        format!("Secret '{}' deleted, with its bindings.", s.secret_name),
    );
    Ok(see_other("/secrets"))
}
