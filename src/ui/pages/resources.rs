//! `/resources/{resource_type}/{resource_id}`: what a scorer gets (its
//! bindings, variable names, the secrets' versions, when it last had them
//! injected, the Job and `run` snippets) and the "scorer form" that binds
//! a secret to it. Also the unbind button's handler.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::secrets::{api_to_ui, state_words, visible_secret};
use crate::model::{BindingFilter, NewBinding, SecretState};
use crate::server::AppState;
use crate::server::auth::Role;
use crate::store::audit::{AuditAction, AuditRecord};
use crate::store::ui_queries::SecretSearch;
use crate::store::{SecretsStore, StoreError, validate};
use crate::ui::form::UiForm;
use crate::ui::guard::{Ctx, Posted, UiError, see_other};
use crate::ui::layout::{self, csrf_field, or_dash, time};
use crate::ui::snippets;

/// The workspace a resource page is about: `?workspace=`, else the
/// token's first workspace, else `default`.
fn workspace_of(ctx: &Ctx, asked: Option<&str>) -> String {
    asked.map(str::to_string).unwrap_or_else(|| {
        ctx.principal
            .workspace_filter()
            .and_then(|w| w.into_iter().next())
            .unwrap_or_else(|| crate::model::DEFAULT_WORKSPACE.into())
    })
}

fn check(ctx: &Ctx, ws: &str, rtype: &str, rid: &str) -> Result<(), UiError> {
    validate::workspace(ws)?;
    validate::resource_type(rtype)?;
    validate::resource_id(rid)?;
    if !ctx.principal.may_workspace(ws) {
        return Err(UiError::not_found(format!(
            "no resource {rtype}/{rid} in workspace '{ws}' is visible to you"
        )));
    }
    Ok(())
}

/// The page of a resource: its type and id percent-encoded as path
/// segments, so an id holding `/`, `?` or `#` (resource ids may) links to
/// that resource's page and not to another path or another workspace.
pub(crate) fn resource_url(rtype: &str, rid: &str, ws: &str) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    ser.append_pair("workspace", ws);
    let seg = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("/resources/{}/{}?{}", seg(rtype), seg(rid), ser.finish())
}

/// `GET /resources/{resource_type}/{resource_id}`.
pub async fn page(
    State(st): State<AppState>,
    ctx: Ctx,
    Path((rtype, rid)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let q = UiForm::parse(raw.as_deref().unwrap_or("").as_bytes());
    let ws = workspace_of(&ctx, q.get("workspace"));
    check(&ctx, &ws, &rtype, &rid)?;
    let bindings = st
        .store
        .list_bindings(&BindingFilter {
            workspace: Some(ws.clone()),
            resource_type: Some(rtype.clone()),
            resource_id: Some(rid.clone()),
            max_results: Some(validate::MAX_PAGE_SIZE),
            ..Default::default()
        })
        .await?;
    let rec = AuditRecord::new(AuditAction::ListBindings, &ctx.principal.name)
        .workspace(&ws)
        .resource(&rtype, &rid)
        .detail(format!("returned={} via=ui", bindings.items.len()));
    st.audit_required(rec).await.map_err(api_to_ui)?;
    let mut rows = Vec::with_capacity(bindings.items.len());
    for b in &bindings.items {
        rows.push((b, st.store.get_secret(&b.secret_id).await.ok()));
    }
    let res = format!("{rtype}/{rid}");
    let last = st
        .store
        .last_injections(&ws, std::slice::from_ref(&res))
        .await?;
    let choices = if ctx.can_write() {
        st.store
            .search_secrets(&SecretSearch {
                workspaces: Some(vec![ws.clone()]),
                state: Some(SecretState::Active),
                max_results: Some(200),
                ..Default::default()
            })
            .await?
            .items
    } else {
        Vec::new()
    };
    let snips = [
        snippets::job_yaml(&ws, &rtype, &rid),
        snippets::run(&ws, &rtype, &rid),
    ];
    let body = html! {
        p { "Workspace " strong { (ws) } ". Last injected: "
            @match last.get(&res) { Some(at) => (time(*at)), None => "never" } "." }
        section aria-labelledby="gets" {
            h2 #gets { "What it gets" }
            @if rows.is_empty() { p { "Nothing is bound to this resource yet." } } @else {
                table {
                    caption { "Bindings of " (res) }
                    thead { tr {
                        th scope="col" { "Environment variable" }
                        th scope="col" { "Secret" }
                        th scope="col" { "Field" }
                        th scope="col" { "State" }
                        th scope="col" { "Version (last updated)" }
                        th scope="col" { "Service accounts" }
                        @if ctx.can_write() { th scope="col" { "Action" } }
                    } }
                    tbody {
                        @for (b, s) in &rows {
                            tr {
                                th scope="row" { code { (b.binding_name) } }
                                td { a href={"/secrets/" (b.secret_id)} {
                                    (s.as_ref().map(|s| s.secret_name.as_str()).unwrap_or(b.secret_id.as_str())) } }
                                td { (or_dash(b.value_field.as_deref())) }
                                td { (s.as_ref().map(|s| state_words(s.state)).unwrap_or("Unknown")) }
                                td { @if let Some(s) = s { (s.last_updated_at) " (" (time(s.last_updated_at)) ")" } }
                                td { @if b.service_accounts.is_empty() { "Any" } @else { (b.service_accounts.join(", ")) } }
                                @if ctx.can_write() {
                                    td {
                                        form method="post" action={"/bindings/" (b.binding_id) "/unbind"} {
                                            (csrf_field(&ctx))
                                            button type="submit" aria-label={"Unbind " (b.binding_name)} { "Unbind" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="how" {
            h2 #how { "How it gets them" }
            @for sn in &snips {
                figure.snippet {
                    figcaption { (sn.label) }
                    pre { code id=(sn.id) { (sn.text) } }
                    button type="button" hidden data-copy=(sn.id) aria-label={"Copy: " (sn.label)} { "Copy" }
                }
            }
        }
        @if ctx.can_write() {
            section aria-labelledby="bind" {
                h2 #bind { "Bind a secret" }
                @if choices.is_empty() {
                    p { "No active secret in workspace " (ws) ". " a href="/secrets/new" { "Create one" } " first." }
                } @else {
                    form.card method="post" action=(resource_url(&rtype, &rid, &ws)) {
                        (csrf_field(&ctx))
                        input type="hidden" name="workspace" value=(ws);
                        p {
                            label for="secret_id" { "Secret" }
                            select #secret_id name="secret_id" required {
                                @for c in &choices {
                                    option value=(c.secret.secret_id) {
                                        (c.secret.secret_name) @if c.secret.is_shared { " (shared)" } @else { " (private)" }
                                    }
                                }
                            }
                        }
                        p {
                            label for="binding_name" { "Environment variable name" }
                            input #binding_name type="text" name="binding_name" required placeholder="OPENAI_API_KEY";
                        }
                        p {
                            label for="value_field" { "Field of an object value (optional)" }
                            input #value_field type="text" name="value_field";
                        }
                        p {
                            label for="service_accounts" { "Service accounts allowed (optional, comma-separated)" }
                            input #service_accounts type="text" name="service_accounts";
                        }
                        p { button type="submit" { "Bind secret" } }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, &format!("Resource {res}"), body))
}

/// `POST /resources/{resource_type}/{resource_id}`: the scorer form.
pub async fn bind(
    State(st): State<AppState>,
    Path((rtype, rid)): Path<(String, String)>,
    p: Posted,
) -> Result<Response, UiError> {
    let Posted { ctx, form } = p;
    ctx.require(Role::Writer)?;
    let ws = workspace_of(&ctx, form.get("workspace"));
    check(&ctx, &ws, &rtype, &rid)?;
    let back = resource_url(&rtype, &rid, &ws);
    let refuse = |msg: String| {
        let body = html! {
            p.error role="alert" { (msg) }
            p { a href=(back) { "Back to the resource" } }
        };
        Ok(layout::page_with_status(
            &ctx,
            StatusCode::BAD_REQUEST,
            "Not bound",
            body,
        ))
    };
    let s = visible_secret(
        &st,
        &ctx,
        form.get("secret_id").unwrap_or(""),
        AuditAction::Bind,
    )
    .await?;
    if s.workspace != ws {
        return refuse(format!(
            "secret '{}' is in workspace '{}': a binding never crosses workspaces",
            s.secret_name, s.workspace
        ));
    }
    let sas: Vec<String> = form
        .get("service_accounts")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let name = form.get("binding_name").unwrap_or("");
    let nb = NewBinding {
        secret_id: &s.secret_id,
        resource_type: &rtype,
        resource_id: &rid,
        binding_name: name,
        value_field: form.get("value_field"),
        service_accounts: &sas,
    };
    match st.store.bind_secret_with(&nb, &ctx.principal.name).await {
        Ok(_) => {}
        Err(
            e @ (StoreError::InvalidParameter(_)
            | StoreError::AlreadyExists(_)
            | StoreError::Conflict(_)),
        ) => {
            return refuse(e.to_string());
        }
        Err(e) => return Err(e.into()),
    }
    ctx.flash(&st, format!("Bound '{}' as {name}.", s.secret_name));
    Ok(see_other(&back))
}

/// `POST /bindings/{binding_id}/unbind`.
pub async fn unbind(
    State(st): State<AppState>,
    Path(binding_id): Path<String>,
    p: Posted,
) -> Result<Response, UiError> {
    let ctx = p.ctx;
    ctx.require(Role::Writer)?;
    let missing = || UiError::not_found("that binding does not exist");
    let b = st
        .store
        .get_binding(&binding_id)
        .await
        .map_err(|_| missing())?;
    if !ctx.principal.may_workspace(&b.workspace) {
        return Err(missing());
    }
    st.store
        .unbind_secret(&b.binding_id, &ctx.principal.name)
        .await?;
    ctx.flash(&st, format!("Unbound {}.", b.binding_name));
    Ok(see_other(&resource_url(
        &b.resource_type,
        &b.resource_id,
        &b.workspace,
    )))
}
