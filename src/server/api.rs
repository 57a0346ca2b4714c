//! Handlers of `/api/2.0/mlflow/secrets/*` (docs/design.md §7).
//!
//! Authentication, rate limits and roles are checked before a handler runs
//! (see `guard`); a handler gets the [`Principal`] and records it as the
//! actor. Writes and value reads are audited by the store inside their
//! transactions; the handlers here audit what the store does not see as an
//! operation of its own: metadata reads, listings and scope refusals.
//!
//! **Scope** (docs/design.md §7, §10 rule 9): every handler checks the workspace of
//! the *row* it acts on (the secret's or the binding's, looked up by id),
//! never only the one a request names; outside the token's workspaces the
//! answer is `PERMISSION_DENIED`, audited as DENIED. Listings without a
//! workspace are limited to the token's workspaces in the query itself.
//! A row's workspace never changes, so checking it before the operation
//! cannot be raced. Only `resolve` returns values, to a runner token whose
//! scope is exactly the resource asked for.

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::auth::Principal;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, HeaderWorkspace};
use super::requests::{
    BindRequest, CreateRequest, GetBindingQuery, GetQuery, ListAuditQuery, ListBindingsQuery,
    ListQuery, ResolveRequest, SecretIdRequest, UnbindRequest, UpdateRequest,
};
use super::state::AppState;
use crate::model::{BindingFilter, NewBinding, NewSecret, ResourceRef, SecretFilter};
use crate::store::audit::{AuditAction, AuditRecord};
use crate::store::{AuditFilter, SecretsStore, StoreError, validate};
use crate::wire::{
    AuditPage, BindingResponse, BindingsPage, ResolveResponse, SecretResponse, SecretsPage,
};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Record a failed request against `rec`, then hand the error back.
async fn fail(state: &AppState, rec: AuditRecord, e: StoreError) -> ApiError {
    state.audit_best_effort(rec.failed(&e)).await;
    e.into()
}

/// What a read handler makes of its audit record once the read succeeded:
/// the record to write, and a refusal (audited as such) of what was read,
/// if it is refused.
type Audited = (AuditRecord, Option<StoreError>);

/// The one shape of an audited read (docs/design.md §10): a failed read is
/// recorded as failed; a successful one passes through `record`, which
/// describes what was read or refuses it (a row outside the token's
/// scope), and the answer goes out only once its audit row is written.
async fn audited<T>(
    st: &AppState,
    rec: AuditRecord,
    read: Result<T, StoreError>,
    record: impl FnOnce(AuditRecord, &T) -> Audited,
) -> Result<T, ApiError> {
    let value = match read {
        Ok(v) => v,
        Err(e) => return Err(fail(st, rec, e).await),
    };
    match record(rec, &value) {
        (rec, None) => {
            st.audit_required(rec).await?;
            Ok(value)
        }
        (rec, Some(e)) => Err(fail(st, rec, e).await),
    }
}

/// The refusal of a workspace outside the token's scope. `what` names the
/// object as the request named it, so an id never reveals its workspace.
fn out_of_scope(p: &Principal, what: &str) -> StoreError {
    StoreError::PermissionDenied(format!(
        "principal '{}' may not act on {what}: it is outside the workspaces of its token",
        p.name
    ))
}

/// Refuse (and audit against `rec`) a workspace the request names.
async fn check_named(
    st: &AppState,
    p: &Principal,
    rec: &AuditRecord,
    ws: &str,
) -> Result<(), ApiError> {
    if p.may_workspace(ws) {
        return Ok(());
    }
    let e = out_of_scope(p, &format!("workspace '{}'", printable(ws)));
    Err(fail(st, rec.clone().workspace(ws), e).await)
}

/// Refuse (and audit as `action`) a secret, looked up by id, whose row is
/// outside the token's workspaces. A token for `*` skips the lookup. An id
/// that does not resolve is left to the operation, which reports and
/// audits it as it always has.
async fn check_secret(
    st: &AppState,
    p: &Principal,
    action: AuditAction,
    secret_id: &str,
) -> Result<(), ApiError> {
    if p.workspace_filter().is_none() {
        return Ok(());
    }
    match st.store.get_secret(secret_id).await {
        Ok(s) if !p.may_workspace(&s.workspace) => {
            let rec = AuditRecord::new(action, &p.name)
                .secret(&s.secret_id, &s.secret_name)
                .workspace(&s.workspace);
            let e = out_of_scope(p, &format!("secret '{secret_id}'"));
            Err(fail(st, rec, e).await)
        }
        _ => Ok(()),
    }
}

/// [`check_secret`] for a binding, by the binding row's workspace.
async fn check_binding(
    st: &AppState,
    p: &Principal,
    action: AuditAction,
    binding_id: &str,
) -> Result<(), ApiError> {
    if p.workspace_filter().is_none() {
        return Ok(());
    }
    match st.store.get_binding(binding_id).await {
        Ok(b) if !p.may_workspace(&b.workspace) => {
            let rec = AuditRecord::new(action, &p.name)
                .secret_id(&b.secret_id)
                .workspace(&b.workspace)
                .resource(&b.resource_type, &b.resource_id)
                .detail(format!("binding_id={}", printable(binding_id)));
            let e = out_of_scope(p, &format!("binding '{binding_id}'"));
            Err(fail(st, rec, e).await)
        }
        _ => Ok(()),
    }
}

pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    header: HeaderWorkspace,
    ApiJson(req): ApiJson<CreateRequest>,
) -> ApiResult<SecretResponse> {
    let ws = header.or_default(req.workspace);
    let mut rec = AuditRecord::new(AuditAction::Create, &p.name).workspace(&ws);
    rec.secret_name = Some(req.secret_name.clone());
    check_named(&st, &p, &rec, &ws).await?;
    let value = match req.value.into_value() {
        Ok(v) => v,
        Err(e) => {
            return Err(fail(
                &st,
                rec,
                StoreError::InvalidParameter(format!("value is invalid: {e}")),
            )
            .await);
        }
    };
    let new = NewSecret {
        workspace: &ws,
        secret_name: &req.secret_name,
        is_shared: req.is_shared,
        provider: req.provider.as_deref(),
    };
    let secret = st.store.create_secret_with(&new, &value, &p.name).await?;
    st.metrics.encrypts.inc();
    Ok(Json(SecretResponse { secret }))
}

pub async fn update(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<UpdateRequest>,
) -> ApiResult<SecretResponse> {
    check_secret(&st, &p, AuditAction::Update, &req.secret_id).await?;
    let value = match req.value.into_value() {
        Ok(v) => v,
        Err(e) => {
            let rec = AuditRecord::new(AuditAction::Update, &p.name).secret_id(&req.secret_id);
            return Err(fail(
                &st,
                rec,
                StoreError::InvalidParameter(format!("value is invalid: {e}")),
            )
            .await);
        }
    };
    let secret = st
        .store
        .update_secret(&req.secret_id, &value, &p.name)
        .await?;
    st.metrics.encrypts.inc();
    Ok(Json(SecretResponse { secret }))
}

pub async fn revoke(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<SecretIdRequest>,
) -> ApiResult<SecretResponse> {
    check_secret(&st, &p, AuditAction::Revoke, &req.secret_id).await?;
    let secret = st.store.revoke_secret(&req.secret_id, &p.name).await?;
    Ok(Json(SecretResponse { secret }))
}

pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<SecretIdRequest>,
) -> ApiResult<Value> {
    check_secret(&st, &p, AuditAction::Delete, &req.secret_id).await?;
    st.store.delete_secret(&req.secret_id, &p.name).await?;
    Ok(Json(json!({})))
}

pub async fn bind(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<BindRequest>,
) -> ApiResult<BindingResponse> {
    check_secret(&st, &p, AuditAction::Bind, &req.secret_id).await?;
    let new = NewBinding {
        secret_id: &req.secret_id,
        resource_type: &req.resource_type,
        resource_id: &req.resource_id,
        binding_name: &req.binding_name,
        value_field: req.value_field.as_deref(),
        service_accounts: &req.service_accounts,
    };
    let binding = st.store.bind_secret_with(&new, &p.name).await?;
    Ok(Json(BindingResponse { binding }))
}

pub async fn unbind(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<UnbindRequest>,
) -> ApiResult<Value> {
    check_binding(&st, &p, AuditAction::Unbind, &req.binding_id).await?;
    st.store.unbind_secret(&req.binding_id, &p.name).await?;
    Ok(Json(json!({})))
}

pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    header: HeaderWorkspace,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> ApiResult<SecretResponse> {
    let mut rec = AuditRecord::new(AuditAction::GetSecret, &p.name);
    let r = match (&q.secret_id, &q.secret_name) {
        (Some(id), None) if q.workspace.is_none() => {
            rec = rec.secret_id(id);
            st.store.get_secret(id).await
        }
        (None, Some(name)) => {
            let ws = header.or_default(q.workspace.clone());
            rec = rec.workspace(&ws);
            rec.secret_name = Some(name.clone());
            check_named(&st, &p, &rec, &ws).await?;
            st.store.get_secret_by_name(&ws, name).await
        }
        (Some(_), _) => Err(StoreError::InvalidParameter(
            "give either secret_id alone, or secret_name (with an optional workspace), not both"
                .into(),
        )),
        (None, None) => Err(StoreError::InvalidParameter(
            "secret_id or secret_name is required".into(),
        )),
    };
    let secret = audited(&st, rec, r, |rec, secret| {
        let rec = rec
            .secret(&secret.secret_id, &secret.secret_name)
            .workspace(&secret.workspace);
        if p.may_workspace(&secret.workspace) {
            (rec, None)
        } else {
            let what = format!("secret '{}'", secret.secret_id);
            (rec, Some(out_of_scope(&p, &what)))
        }
    })
    .await?;
    Ok(Json(SecretResponse { secret }))
}

pub async fn get_binding(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<GetBindingQuery>,
) -> ApiResult<BindingResponse> {
    let rec = AuditRecord::new(AuditAction::GetBinding, &p.name)
        .detail(format!("binding_id={}", printable(&q.binding_id)));
    let read = st.store.get_binding(&q.binding_id).await;
    let binding = audited(&st, rec, read, |rec, binding| {
        let rec = rec
            .secret_id(&binding.secret_id)
            .workspace(&binding.workspace)
            .resource(&binding.resource_type, &binding.resource_id);
        if p.may_workspace(&binding.workspace) {
            (rec, None)
        } else {
            let what = format!("binding '{}'", printable(&q.binding_id));
            (rec, Some(out_of_scope(&p, &what)))
        }
    })
    .await?;
    Ok(Json(BindingResponse { binding }))
}

pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    header: HeaderWorkspace,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<SecretsPage> {
    let mut rec = AuditRecord::new(AuditAction::ListSecrets, &p.name);
    let workspace = header.or_header(q.workspace);
    if let Some(ws) = &workspace {
        rec = rec.workspace(ws);
        check_named(&st, &p, &rec, ws).await?;
    }
    let filter = SecretFilter {
        workspaces: p.workspace_filter(),
        workspace,
        is_shared: q.is_shared,
        state: q.state,
        page_token: q.page_token,
        max_results: q.max_results,
    };
    let read = st.store.list_secrets(&filter).await;
    let page = audited(&st, rec, read, |rec, page| {
        (rec.detail(format!("returned={}", page.items.len())), None)
    })
    .await?;
    Ok(Json(SecretsPage {
        secrets: page.items,
        next_page_token: page.next_page_token,
    }))
}

pub async fn list_bindings(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    header: HeaderWorkspace,
    ApiQuery(mut q): ApiQuery<ListBindingsQuery>,
) -> ApiResult<BindingsPage> {
    let mut rec = AuditRecord::new(AuditAction::ListBindings, &p.name);
    q.workspace = header.or_header(q.workspace);
    if let Some(ws) = &q.workspace {
        rec = rec.workspace(ws);
    }
    if let Some(id) = &q.secret_id {
        rec = rec.secret_id(id);
    }
    let mut filter = BindingFilter {
        workspaces: None,
        workspace: q.workspace,
        resource_type: q.resource_type,
        resource_id: q.resource_id,
        secret_id: q.secret_id,
        page_token: q.page_token,
        max_results: q.max_results,
    };
    // The store checks these too; here they come first so that a bad
    // name is an invalid parameter, not an out-of-scope refusal.
    if let Err(e) = validate::binding_filter(&filter) {
        return Err(fail(&st, rec, e).await);
    }
    if let (Some(t), Some(id)) = (&filter.resource_type, &filter.resource_id) {
        rec = rec.resource(t, id);
    }
    if let Some(ws) = &filter.workspace {
        check_named(&st, &p, &rec, ws).await?;
    }
    filter.workspaces = p.workspace_filter();
    let read = st.store.list_bindings(&filter).await;
    let page = audited(&st, rec, read, |rec, page| {
        (rec.detail(format!("returned={}", page.items.len())), None)
    })
    .await?;
    Ok(Json(BindingsPage {
        bindings: page.items,
        next_page_token: page.next_page_token,
    }))
}

pub async fn list_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ListAuditQuery>,
) -> ApiResult<AuditPage> {
    let rec = AuditRecord::new(AuditAction::ListAudit, &p.name);
    let mut filter = AuditFilter {
        workspaces: None,
        secret_id: q.secret_id,
        workspace: q.workspace,
        after_seq: q.after_seq,
        max_results: q.max_results,
    };
    if let Err(e) = validate::audit_filter(&filter) {
        return Err(fail(&st, rec, e).await);
    }
    if let Some(ws) = &filter.workspace {
        check_named(&st, &p, &rec, ws).await?;
    }
    // A scoped admin sees its workspaces' rows only (not the rows without
    // a workspace, such as refused logins).
    filter.workspaces = p.workspace_filter();
    // Recorded after the read, so a caller paging with after_seq is not
    // handed its own listing rows forever.
    let read = st.store.list_audit(&filter).await;
    let entries = audited(&st, rec, read, |rec, entries| {
        (rec.detail(format!("returned={}", entries.len())), None)
    })
    .await?;
    Ok(Json(AuditPage { entries }))
}

/// `POST resolve`: the values the webhook would inject for one resource.
///
/// The guard lets only runner tokens in; here the scope must equal the
/// request (its one workspace and one resource), and the transport must be
/// TLS or loopback. The store audits the read (binding names, secret ids,
/// versions), applies the per-principal decrypt limit and fails the whole
/// call on a revoked or undecryptable binding.
pub async fn resolve(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    header: HeaderWorkspace,
    ApiJson(req): ApiJson<ResolveRequest>,
) -> ApiResult<ResolveResponse> {
    let ws = header.or_default(req.workspace);
    let rec = AuditRecord::new(AuditAction::ReadResourceValues, &p.name)
        .workspace(&ws)
        .resource(&req.resource_type, &req.resource_id);
    if !st.resolve_transport_ok {
        let e = StoreError::PermissionDenied(
            "resolve returns plaintext and needs TLS: this server serves plain HTTP outside loopback (--insecure-http)".into(),
        );
        return Err(fail(&st, rec, e).await);
    }
    let asked = (req.resource_type.clone(), req.resource_id.clone());
    if !p.may_workspace(&ws) || p.scope.resource.as_ref() != Some(&asked) {
        let e = StoreError::PermissionDenied(format!(
            "principal '{}' may resolve only the workspace and resource of its token",
            p.name
        ));
        return Err(fail(&st, rec, e).await);
    }
    let r = st
        .store
        .resolve_resource(
            ResourceRef::new(&ws, &req.resource_type, &req.resource_id),
            &p.name,
        )
        .await?;
    st.metrics.decrypts.inc_by(r.values.len() as u64);
    Ok(Json(ResolveResponse {
        values: r.values,
        injected: r.injected,
    }))
}

/// An identifier as it may be quoted in an audit detail: bounded, one line.
fn printable(s: &str) -> String {
    s.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
