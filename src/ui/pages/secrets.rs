//! `/secrets` (search and list), `/secrets/new` (create, optionally bind)
//! and `/secrets/{secret_id}` (overview, used by, how to use it, history,
//! and the rotate, revoke and delete forms of `secrets_actions`).
//!
//! Scope: a secret outside the session's workspaces answers exactly as a
//! secret that does not exist (404, same message), so a URL reveals
//! nothing; the refusal is audited as DENIED. Page views are audited as
//! the API audits the same reads (`LIST_SECRETS`, `GET_SECRET`).

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use secrecy::SecretString;

use super::secrets_actions;
use crate::model::{BindingFilter, BindingSpec, NewSecret, Secret, SecretState};
use crate::server::AppState;
use crate::server::auth::Role;
use crate::store::audit::{AuditAction, AuditRecord};
use crate::store::ui_queries::{AuditSearch, SecretSearch};
use crate::store::{SecretsStore, StoreError, validate};
use crate::ui::form::UiForm;
use crate::ui::guard::{Ctx, Posted, UiError, see_other};
use crate::ui::layout::{self, csrf_field, or_dash, time};
use crate::ui::snippets;
use crate::value::SecretValue;

/// Rows per page of the list.
pub const PAGE_SIZE: u32 = 20;

/// The actions a secret's history shows (metadata reads are left out).
pub const HISTORY_ACTIONS: &[&str] = &[
    AuditAction::Create.as_str(),
    AuditAction::Update.as_str(),
    AuditAction::Revoke.as_str(),
    AuditAction::Delete.as_str(),
    AuditAction::Bind.as_str(),
    AuditAction::Unbind.as_str(),
    AuditAction::ReadValue.as_str(),
    AuditAction::Rewrap.as_str(),
];

/// The secret `secret_id`, if the session may see it; otherwise the 404 of
/// a secret that does not exist (a refusal of scope is audited as
/// `action`, DENIED).
pub async fn visible_secret(
    st: &AppState,
    ctx: &Ctx,
    secret_id: &str,
    action: AuditAction,
) -> Result<Secret, UiError> {
    let missing = || {
        UiError::from(StoreError::NotFound(format!(
            "secret with id '{}' does not exist",
            secret_id.chars().take(80).collect::<String>()
        )))
    };
    let s = match st.store.get_secret(secret_id).await {
        Ok(s) => s,
        Err(StoreError::NotFound(_) | StoreError::InvalidParameter(_)) => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    if !ctx.principal.may_workspace(&s.workspace) {
        let rec = AuditRecord::new(action, &ctx.principal.name)
            .secret(&s.secret_id, &s.secret_name)
            .workspace(&s.workspace);
        let e = StoreError::PermissionDenied(format!(
            "principal '{}' may not act on secret '{}' (UI): outside its workspaces",
            ctx.principal.name, s.secret_id
        ));
        st.audit_best_effort(rec.failed(&e)).await;
        return Err(missing());
    }
    Ok(s)
}

/// State in words (never by colour alone).
pub fn state_words(s: SecretState) -> &'static str {
    match s {
        SecretState::Active => "Active",
        SecretState::Revoked => "Revoked",
    }
}

fn query_of(raw: &Option<String>) -> UiForm {
    UiForm::parse(raw.as_deref().unwrap_or("").as_bytes())
}

/// `GET /secrets`.
pub async fn list(
    State(st): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let q = query_of(&raw);
    let text = q.get("q").map(str::to_string);
    let shared = match q.get("shared") {
        Some("shared") => Some(true),
        Some("private") => Some(false),
        _ => None,
    };
    let state = q.get("state").and_then(|s| s.parse::<SecretState>().ok());
    let provider = q.get("provider").map(str::to_string);
    let filter = SecretSearch {
        workspaces: ctx.principal.workspace_filter(),
        name_contains: text.clone(),
        is_shared: shared,
        state,
        provider: provider.clone(),
        page_token: q.get("page_token").map(str::to_string),
        max_results: Some(PAGE_SIZE),
        ..Default::default()
    };
    let page = st.store.search_secrets(&filter).await?;
    let rec = AuditRecord::new(AuditAction::ListSecrets, &ctx.principal.name)
        .detail(format!("returned={} via=ui", page.items.len()));
    st.audit_required(rec).await.map_err(api_to_ui)?;
    let next = page.next_page_token.as_ref().map(|t| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", text.as_deref()),
            ("shared", q.get("shared")),
            ("state", q.get("state")),
            ("provider", provider.as_deref()),
            ("page_token", Some(t.as_str())),
        ] {
            if let Some(v) = v {
                ser.append_pair(k, v);
            }
        }
        format!("/secrets?{}", ser.finish())
    });
    let sel = |field: &str, v: &str| q.get(field) == Some(v);
    let body = html! {
        form.filters method="get" action="/secrets" role="search" {
            p {
                label for="q" { "Name contains" }
                input #q type="search" name="q" value=(text.as_deref().unwrap_or(""));
            }
            p {
                label for="shared" { "Sharing" }
                select #shared name="shared" {
                    option value="" { "Any" }
                    option value="shared" selected[sel("shared", "shared")] { "Shared" }
                    option value="private" selected[sel("shared", "private")] { "Private" }
                }
            }
            p {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" { "Any" }
                    option value="ACTIVE" selected[sel("state", "ACTIVE")] { "Active" }
                    option value="REVOKED" selected[sel("state", "REVOKED")] { "Revoked" }
                }
            }
            p {
                label for="provider" { "Provider" }
                input #provider type="text" name="provider" value=(provider.as_deref().unwrap_or(""));
            }
            p { button type="submit" { "Search" } }
        }
        @if page.items.is_empty() {
            p { "No secrets match." }
        } @else {
            table {
                caption { "Secrets (" (page.items.len()) " on this page)" }
                thead { tr {
                    th scope="col" { "Name" }
                    th scope="col" { "Workspace" }
                    th scope="col" { "Masked value" }
                    th scope="col" { "State" }
                    th scope="col" { "Shared" }
                    th scope="col" { "Provider" }
                    th scope="col" { "Used by" }
                    th scope="col" { "KEK version" }
                    th scope="col" { "Updated" }
                } }
                tbody {
                    @for row in &page.items {
                        @let s = &row.secret;
                        tr {
                            th scope="row" { a href={"/secrets/" (s.secret_id)} { (s.secret_name) } }
                            td { (s.workspace) }
                            td { code { (s.masked_value) } }
                            td { span class={"state " (s.state.as_str().to_lowercase())} { (state_words(s.state)) } }
                            td { @if s.is_shared { "Shared" } @else { "Private" } }
                            td { (or_dash(s.provider.as_deref())) }
                            td { (row.used_by) @if row.used_by == 1 { " binding" } @else { " bindings" } }
                            td { (row.kek_version) }
                            td { (time(s.last_updated_at)) " by " (or_dash(s.last_updated_by.as_deref())) }
                        }
                    }
                }
            }
        }
        @if let Some(n) = &next { p { a rel="next" href=(n) { "Next page" } } }
    };
    Ok(layout::page(&ctx, "Secrets", body))
}

/// An `ApiError` from the audit helpers, as a page error.
pub fn api_to_ui(e: crate::server::error::ApiError) -> UiError {
    UiError::new(e.status, e.message)
}

/// What the create form keeps after a validation error: every field but
/// the value.
#[derive(Default)]
struct Entered {
    name: String,
    workspace: String,
    provider: String,
    shared: bool,
    kv: bool,
    keys: Vec<String>,
    resource_type: String,
    resource_id: String,
    binding_name: String,
}

impl Entered {
    fn from(form: &UiForm) -> Self {
        Self {
            name: form.get("secret_name").unwrap_or("").into(),
            workspace: form.get("workspace").unwrap_or("").into(),
            provider: form.get("provider").unwrap_or("").into(),
            shared: form.checked("is_shared"),
            kv: form.get("value_kind") == Some("object"),
            keys: form
                .all("field_key")
                .into_iter()
                .map(String::from)
                .collect(),
            resource_type: form
                .get("resource_type")
                .unwrap_or(crate::model::DEFAULT_RESOURCE_TYPE)
                .into(),
            resource_id: form.get("resource_id").unwrap_or("").into(),
            binding_name: form.get("binding_name").unwrap_or("").into(),
        }
    }
}

/// The value of a form: `value` as one string, or the `field_key` /
/// `field_value` rows as an object. Named fields only in errors.
pub fn value_of(form: &UiForm) -> Result<SecretValue, String> {
    let v = if form.get("value_kind") == Some("object") {
        let keys = form.all("field_key");
        let vals = form.all("field_value");
        let mut m = BTreeMap::new();
        for (k, v) in keys.iter().zip(vals.iter()) {
            let k = k.trim();
            if k.is_empty() && v.is_empty() {
                continue;
            }
            if k.is_empty() {
                return Err("every key/value row with a value needs a key".into());
            }
            if m.insert(k.to_string(), SecretString::from(v.to_string()))
                .is_some()
            {
                return Err(format!("the key '{k}' is given twice"));
            }
        }
        SecretValue::Object(m)
    } else {
        SecretValue::String(SecretString::from(
            form.raw("value").unwrap_or("").to_string(),
        ))
    };
    v.validate().map_err(|e| format!("value is invalid: {e}"))?;
    Ok(v)
}

/// The value inputs: never pre-filled.
pub fn value_inputs(kv: bool, keys: &[String]) -> Markup {
    let rows = 3.max(keys.len());
    html! {
        fieldset {
            legend { "Value (write-only: it is never shown again)" }
            p {
                input #kind-string type="radio" name="value_kind" value="string" checked[!kv];
                label for="kind-string" { "One string" }
                input #kind-object type="radio" name="value_kind" value="object" checked[kv];
                label for="kind-object" { "Key/value rows (for example api_key, api_base)" }
            }
            p {
                label for="value" { "Value" }
                input #value type="password" name="value" autocomplete="off" spellcheck="false";
            }
            @for i in 0..rows {
                p.kv {
                    label for={"field-key-" (i)} { "Key " (i + 1) }
                    input id={"field-key-" (i)} type="text" name="field_key" autocomplete="off"
                        value=(keys.get(i).map(String::as_str).unwrap_or(""));
                    label for={"field-value-" (i)} { "Value " (i + 1) }
                    input id={"field-value-" (i)} type="password" name="field_value" autocomplete="off";
                }
            }
        }
    }
}

fn new_page(ctx: &Ctx, e: &Entered, status: StatusCode, error: Option<&str>) -> Response {
    let default_ws = ctx
        .principal
        .workspace_filter()
        .and_then(|w| w.into_iter().next())
        .unwrap_or_else(|| crate::model::DEFAULT_WORKSPACE.into());
    let ws = if e.workspace.is_empty() {
        &default_ws
    } else {
        &e.workspace
    };
    let rtype = if e.resource_type.is_empty() {
        crate::model::DEFAULT_RESOURCE_TYPE
    } else {
        &e.resource_type
    };
    let body = html! {
        @if let Some(m) = error { p.error role="alert" { (m) } }
        form.card method="post" action="/secrets/new" {
            (csrf_field(ctx))
            p {
                label for="secret_name" { "Name" }
                input #secret_name type="text" name="secret_name" required value=(e.name);
            }
            p {
                label for="workspace" { "Workspace" }
                input #workspace type="text" name="workspace" required value=(ws);
            }
            p {
                input #is_shared type="checkbox" name="is_shared" value="on" checked[e.shared];
                label for="is_shared" { "Shared (any resource of the workspace may bind it)" }
            }
            p {
                label for="provider" { "Provider (optional)" }
                input #provider type="text" name="provider" list="providers" value=(e.provider);
                datalist #providers {
                    @for p in ["openai", "anthropic", "azure", "gemini", "bedrock", "mistral"] { option value=(p) {} }
                }
            }
            (value_inputs(e.kv, &e.keys))
            fieldset {
                legend { "Bind it now (optional)" }
                p {
                    label for="resource_type" { "Resource type" }
                    input #resource_type type="text" name="resource_type" value=(rtype);
                }
                p {
                    label for="resource_id" { "Resource id" }
                    input #resource_id type="text" name="resource_id" value=(e.resource_id);
                }
                p {
                    label for="binding_name" { "Environment variable name" }
                    input #binding_name type="text" name="binding_name" value=(e.binding_name);
                }
            }
            p { button type="submit" { "Create secret" } }
        }
    };
    layout::page_with_status(ctx, status, "New secret", body)
}

/// `GET /secrets/new`.
pub async fn new_form(ctx: Ctx) -> Result<Response, UiError> {
    ctx.require(Role::Writer)?;
    Ok(new_page(&ctx, &Entered::default(), StatusCode::OK, None))
}

/// `POST /secrets/new`: create, and bind when a resource id or variable
/// name is given. The bind inputs are checked before anything is written;
/// a create with a bind is one store transaction
/// (`SecretsStore::create_and_bind_secret`), so a bind that still fails
/// leaves no secret behind.
pub async fn create(State(st): State<AppState>, p: Posted) -> Result<Response, UiError> {
    let Posted { ctx, form } = p;
    ctx.require(Role::Writer)?;
    let e = Entered::from(&form);
    let again = |msg: String| Ok(new_page(&ctx, &e, StatusCode::BAD_REQUEST, Some(&msg)));
    if !ctx.principal.may_workspace(&e.workspace) {
        return again(format!(
            "workspace '{}' is outside the workspaces of your token",
            e.workspace
        ));
    }
    let bind = !e.resource_id.is_empty() || !e.binding_name.is_empty();
    if bind {
        let checked = validate::resource_type(&e.resource_type)
            .and_then(|_| validate::resource_id(&e.resource_id))
            .and_then(|_| validate::binding_name(&e.binding_name));
        if let Err(err) = checked {
            return again(err.to_string());
        }
    }
    let value = match value_of(&form) {
        Ok(v) => v,
        Err(m) => return again(m),
    };
    let new = NewSecret {
        workspace: &e.workspace,
        secret_name: &e.name,
        is_shared: e.shared,
        provider: (!e.provider.is_empty()).then_some(e.provider.as_str()),
    };
    let actor = &ctx.principal.name;
    let made = if bind {
        let spec = BindingSpec {
            resource_type: &e.resource_type,
            resource_id: &e.resource_id,
            binding_name: &e.binding_name,
            value_field: None,
            service_accounts: &[],
        };
        st.store
            .create_and_bind_secret(&new, &value, &spec, actor)
            .await
            .map(|(s, _)| s)
    } else {
        st.store.create_secret_with(&new, &value, actor).await
    };
    drop(value);
    let secret = match made {
        Ok(s) => s,
        Err(
            err @ (StoreError::InvalidParameter(_)
            | StoreError::AlreadyExists(_)
            | StoreError::Conflict(_)),
        ) => {
            let note = if bind {
                " (the secret was not created)"
            } else {
                ""
            };
            return again(format!("{err}{note}"));
        }
        Err(err) => return Err(err.into()),
    };
    st.metrics.encrypts.inc();
    ctx.flash(&st, format!("Secret '{}' created.", secret.secret_name));
    Ok(see_other(&format!("/secrets/{}", secret.secret_id)))
}

/// `GET /secrets/{secret_id}`.
pub async fn detail(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(secret_id): Path<String>,
) -> Result<Response, UiError> {
    let s = visible_secret(&st, &ctx, &secret_id, AuditAction::GetSecret).await?;
    let rec = AuditRecord::new(AuditAction::GetSecret, &ctx.principal.name)
        .secret(&s.secret_id, &s.secret_name)
        .workspace(&s.workspace)
        .detail("via=ui");
    st.audit_required(rec).await.map_err(api_to_ui)?;
    let bindings = st
        .store
        .list_bindings(&BindingFilter {
            secret_id: Some(s.secret_id.clone()),
            max_results: Some(validate::MAX_PAGE_SIZE),
            ..Default::default()
        })
        .await?;
    let total = st.store.count_bindings_of(&s.secret_id).await?;
    let resources: Vec<String> = bindings
        .items
        .iter()
        .map(|b| format!("{}/{}", b.resource_type, b.resource_id))
        .collect();
    let last = st.store.last_injections(&s.workspace, &resources).await?;
    let (history, _) = st
        .store
        .search_audit(&AuditSearch {
            secret_id: Some(s.secret_id.clone()),
            actions: Some(HISTORY_ACTIONS),
            max_results: Some(50),
            ..Default::default()
        })
        .await?;
    let snips = snippets::for_secret(&s, bindings.items.first(), &ctx.base_url());
    let body = html! {
        section aria-labelledby="overview" {
            h2 #overview { "Overview" }
            dl.facts {
                dt { "State" } dd { span class={"state " (s.state.as_str().to_lowercase())} { (state_words(s.state)) } }
                dt { "Workspace" } dd { (s.workspace) }
                dt { "Secret id" } dd { code { (s.secret_id) } }
                dt { "Masked value" } dd { code { (s.masked_value) } }
                dt { "Sharing" } dd { @if s.is_shared { "Shared" } @else { "Private (one resource)" } }
                dt { "Provider" } dd { (or_dash(s.provider.as_deref())) }
                dt { "Created" } dd { (time(s.created_at)) " by " (or_dash(s.created_by.as_deref())) }
                dt { "Updated" } dd { (time(s.last_updated_at)) " by " (or_dash(s.last_updated_by.as_deref())) }
                @if let Some(at) = s.revoked_at {
                    dt { "Revoked" } dd { (time(at)) " by " (or_dash(s.revoked_by.as_deref())) }
                }
            }
        }
        section aria-labelledby="used-by" {
            h2 #used-by { "Used by (" (total) ")" }
            @if bindings.items.is_empty() {
                p { "No resource uses this secret yet." }
            } @else {
                table {
                    caption { "Bindings of this secret" }
                    thead { tr {
                        th scope="col" { "Resource" }
                        th scope="col" { "Environment variable" }
                        th scope="col" { "Field" }
                        th scope="col" { "Service accounts" }
                        th scope="col" { "Bound" }
                        th scope="col" { "Last injected" }
                    } }
                    tbody {
                        @for (b, res) in bindings.items.iter().zip(&resources) {
                            tr {
                                th scope="row" {
                                    a href=(super::resources::resource_url(&b.resource_type, &b.resource_id, &b.workspace)) { (res) }
                                }
                                td { code { (b.binding_name) } }
                                td { (or_dash(b.value_field.as_deref())) }
                                td { @if b.service_accounts.is_empty() { "Any" } @else { (b.service_accounts.join(", ")) } }
                                td { (time(b.created_at)) }
                                td { @match last.get(res) { Some(at) => (time(*at)), None => "Never" } }
                            }
                        }
                    }
                }
                @if total > bindings.items.len() as u64 {
                    p { "Showing the first " (bindings.items.len()) " of " (total) " bindings." }
                }
            }
        }
        section aria-labelledby="how" {
            h2 #how { "How to use it" }
            p { "These never contain the value: each reads it at run time with its own credentials." }
            @for sn in &snips {
                figure.snippet {
                    figcaption #{(sn.id) "-label"} { (sn.label) }
                    pre { code id=(sn.id) { (sn.text) } }
                    button type="button" hidden data-copy=(sn.id) aria-label={"Copy: " (sn.label)} { "Copy" }
                }
            }
        }
        section aria-labelledby="history" {
            h2 #history { "History" }
            @if history.is_empty() { p { "No recorded changes." } } @else {
                table {
                    caption { "Changes and value reads, newest first" }
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                        th scope="col" { "Resource" } th scope="col" { "Outcome" }
                    } }
                    tbody {
                        @for h in &history {
                            tr {
                                td { (time(h.occurred_at)) }
                                td { (or_dash(h.principal.as_deref())) }
                                td { (h.action) }
                                td { (or_dash(h.resource.as_deref())) }
                                td { (h.outcome) }
                            }
                        }
                    }
                }
            }
        }
        @if ctx.can_write() {
            (secrets_actions::forms(&ctx, &s, &bindings.items, total))
        }
    };
    Ok(layout::page(
        &ctx,
        &format!("Secret {}", s.secret_name),
        body,
    ))
}
