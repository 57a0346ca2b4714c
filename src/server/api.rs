//! Handlers of `/api/2.0/mlflow/secrets/*` (DESIGN §7).
//!
//! Authentication, rate limits and roles are checked before a handler runs
//! (see `guard`); a handler gets the [`Principal`] and records it as the
//! actor. Writes and value reads are audited by the store inside their
//! transactions; the handlers here audit what the store does not see as an
//! operation of its own: metadata reads and listings. No handler ever
//! returns a value, and values only arrive in JSON bodies.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{Value, json};

use super::auth::Principal;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use super::requests::{
    BindRequest, CreateRequest, GetBindingQuery, GetQuery, ListAuditQuery, ListBindingsQuery,
    ListQuery, SecretIdRequest, UnbindRequest, UpdateRequest,
};
use super::state::AppState;
use crate::model::{
    AuditEntry, BindingFilter, DEFAULT_WORKSPACE, NewBinding, NewSecret, Secret, SecretBinding,
    SecretFilter,
};
use crate::store::audit::{AuditAction, AuditRecord};
use crate::store::{AuditFilter, SecretsStore, StoreError, validate};

type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(Serialize)]
pub struct SecretResponse {
    pub secret: Secret,
}

#[derive(Serialize)]
pub struct BindingResponse {
    pub binding: SecretBinding,
}

#[derive(Serialize)]
pub struct SecretsPage {
    pub secrets: Vec<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Serialize)]
pub struct BindingsPage {
    pub bindings: Vec<SecretBinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
}

/// Record a failed request against `rec`, then hand the error back.
async fn fail(state: &AppState, rec: AuditRecord, e: StoreError) -> ApiError {
    state.audit_best_effort(rec.failed(&e)).await;
    e.into()
}

pub async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<CreateRequest>,
) -> ApiResult<SecretResponse> {
    let value = match req.value.into_value() {
        Ok(v) => v,
        Err(e) => {
            let mut rec = AuditRecord::new(AuditAction::Create, &p.name).workspace(&req.workspace);
            rec.secret_name = Some(req.secret_name.clone());
            return Err(fail(
                &st,
                rec,
                StoreError::InvalidParameter(format!("value is invalid: {e}")),
            )
            .await);
        }
    };
    let new = NewSecret {
        workspace: &req.workspace,
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
    let secret = st.store.revoke_secret(&req.secret_id, &p.name).await?;
    Ok(Json(SecretResponse { secret }))
}

pub async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<SecretIdRequest>,
) -> ApiResult<Value> {
    st.store.delete_secret(&req.secret_id, &p.name).await?;
    Ok(Json(json!({})))
}

pub async fn bind(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<BindRequest>,
) -> ApiResult<BindingResponse> {
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
    st.store.unbind_secret(&req.binding_id, &p.name).await?;
    Ok(Json(json!({})))
}

pub async fn get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> ApiResult<SecretResponse> {
    let mut rec = AuditRecord::new(AuditAction::GetSecret, &p.name);
    let r = match (&q.secret_id, &q.secret_name) {
        (Some(id), None) if q.workspace.is_none() => {
            rec = rec.secret_id(id);
            st.store.get_secret(id).await
        }
        (None, Some(name)) => {
            let ws = q.workspace.as_deref().unwrap_or(DEFAULT_WORKSPACE);
            rec = rec.workspace(ws);
            rec.secret_name = Some(name.clone());
            st.store.get_secret_by_name(ws, name).await
        }
        (Some(_), _) => Err(StoreError::InvalidParameter(
            "give either secret_id alone, or secret_name (with an optional workspace), not both"
                .into(),
        )),
        (None, None) => Err(StoreError::InvalidParameter(
            "secret_id or secret_name is required".into(),
        )),
    };
    match r {
        Ok(secret) => {
            let rec = rec
                .secret(&secret.secret_id, &secret.secret_name)
                .workspace(&secret.workspace);
            st.audit_required(rec).await?;
            Ok(Json(SecretResponse { secret }))
        }
        Err(e) => Err(fail(&st, rec, e).await),
    }
}

pub async fn get_binding(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<GetBindingQuery>,
) -> ApiResult<BindingResponse> {
    let rec = AuditRecord::new(AuditAction::GetBinding, &p.name)
        .detail(format!("binding_id={}", printable(&q.binding_id)));
    match st.store.get_binding(&q.binding_id).await {
        Ok(binding) => {
            let rec = rec
                .secret_id(&binding.secret_id)
                .workspace(&binding.workspace)
                .resource(&binding.resource_type, &binding.resource_id);
            st.audit_required(rec).await?;
            Ok(Json(BindingResponse { binding }))
        }
        Err(e) => Err(fail(&st, rec, e).await),
    }
}

pub async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<SecretsPage> {
    let mut rec = AuditRecord::new(AuditAction::ListSecrets, &p.name);
    if let Some(ws) = &q.workspace {
        rec = rec.workspace(ws);
    }
    let filter = SecretFilter {
        workspace: q.workspace,
        is_shared: q.is_shared,
        state: q.state,
        page_token: q.page_token,
        max_results: q.max_results,
    };
    match st.store.list_secrets(&filter).await {
        Ok(page) => {
            let rec = rec.detail(format!("returned={}", page.items.len()));
            st.audit_required(rec).await?;
            Ok(Json(SecretsPage {
                secrets: page.items,
                next_page_token: page.next_page_token,
            }))
        }
        Err(e) => Err(fail(&st, rec, e).await),
    }
}

pub async fn list_bindings(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ListBindingsQuery>,
) -> ApiResult<BindingsPage> {
    let mut rec = AuditRecord::new(AuditAction::ListBindings, &p.name);
    if let Some(ws) = &q.workspace {
        rec = rec.workspace(ws);
    }
    if let Some(id) = &q.secret_id {
        rec = rec.secret_id(id);
    }
    let checked = (|| {
        q.workspace
            .as_deref()
            .map(validate::workspace)
            .transpose()?;
        q.resource_type
            .as_deref()
            .map(validate::resource_type)
            .transpose()?;
        q.resource_id
            .as_deref()
            .map(validate::resource_id)
            .transpose()?;
        q.secret_id
            .as_deref()
            .map(|id| validate::uuid("secret_id", id))
            .transpose()?;
        Ok::<(), StoreError>(())
    })();
    if let Err(e) = checked {
        return Err(fail(&st, rec, e).await);
    }
    if let (Some(t), Some(id)) = (&q.resource_type, &q.resource_id) {
        rec = rec.resource(t, id);
    }
    let filter = BindingFilter {
        workspace: q.workspace,
        resource_type: q.resource_type,
        resource_id: q.resource_id,
        secret_id: q.secret_id,
        page_token: q.page_token,
        max_results: q.max_results,
    };
    match st.store.list_bindings(&filter).await {
        Ok(page) => {
            let rec = rec.detail(format!("returned={}", page.items.len()));
            st.audit_required(rec).await?;
            Ok(Json(BindingsPage {
                bindings: page.items,
                next_page_token: page.next_page_token,
            }))
        }
        Err(e) => Err(fail(&st, rec, e).await),
    }
}

pub async fn list_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ListAuditQuery>,
) -> ApiResult<AuditPage> {
    let rec = AuditRecord::new(AuditAction::ListAudit, &p.name);
    let checked = (|| {
        q.workspace
            .as_deref()
            .map(validate::workspace)
            .transpose()?;
        q.secret_id
            .as_deref()
            .map(|id| validate::uuid("secret_id", id))
            .transpose()?;
        if q.after_seq.is_some_and(|s| s < 0) {
            return Err(StoreError::InvalidParameter(
                "after_seq must be 0 or more".into(),
            ));
        }
        Ok(())
    })();
    if let Err(e) = checked {
        return Err(fail(&st, rec, e).await);
    }
    let filter = AuditFilter {
        secret_id: q.secret_id,
        workspace: q.workspace,
        after_seq: q.after_seq,
        max_results: q.max_results,
    };
    match st.store.list_audit(&filter).await {
        Ok(entries) => {
            // Recorded after the read, so a caller paging with after_seq
            // is not handed its own listing rows forever.
            st.audit_required(rec.detail(format!("returned={}", entries.len())))
                .await?;
            Ok(Json(AuditPage { entries }))
        }
        Err(e) => Err(fail(&st, rec, e).await),
    }
}

/// An identifier as it may be quoted in an audit detail: bounded, one line.
fn printable(s: &str) -> String {
    s.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
