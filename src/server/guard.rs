//! Middleware: who is calling (401), how often (429), and whether their
//! role allows the route (403), in that order; and the request metrics.
//!
//! Every refusal is audited (`AUTH_DENIED`, outcome `DENIED`) with the
//! principal when known, the route template and the reason; never the
//! token, a header or the body. Logs name the principal only.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{Principal, Role, bearer};
use super::error::ApiError;
use super::state::{AppState, AuthMode};
use crate::store::StoreError;
use crate::store::audit::{AuditAction, AuditRecord};

/// The state of one guarded route: the shared state and the least role
/// that may call it.
#[derive(Clone)]
pub struct Guard {
    pub state: AppState,
    pub role: Role,
}

fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string())
}

/// Authenticate, rate-limit and authorize, then run the route with the
/// [`Principal`] in the request's extensions.
pub async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    let route = format!("{} {}", req.method(), route_of(&req));
    let principal = match &g.state.auth {
        AuthMode::LocalAnonymous => AuthMode::local_principal(),
        AuthMode::Tokens(tokens) => {
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok());
            let found = header.and_then(bearer).and_then(|t| tokens.authenticate(t));
            match found {
                Some(p) => p,
                None => {
                    let why = if header.is_none() {
                        "a bearer token is required (Authorization: Bearer <token>)"
                    } else {
                        "the bearer token is not valid"
                    };
                    return deny(
                        &g.state,
                        None,
                        &route,
                        StoreError::Unauthenticated(why.into()),
                    )
                    .await;
                }
            }
        }
    };
    if let Err(wait) = g.state.limiter.check(&principal.name) {
        g.state.metrics.rate_limited.inc();
        let err = StoreError::RateLimited {
            message: format!(
                "rate limit exceeded for principal '{}': retry after the Retry-After delay",
                principal.name
            ),
            retry_after: wait,
        };
        return deny(&g.state, Some(&principal), &route, err).await;
    }
    if principal.role < g.role {
        let err = StoreError::PermissionDenied(format!(
            "principal '{}' has role {}; {route} needs role {} or above",
            principal.name, principal.role, g.role
        ));
        return deny(&g.state, Some(&principal), &route, err).await;
    }
    let name = principal.name.clone();
    req.extensions_mut().insert(principal);
    let start = Instant::now();
    let resp = next.run(req).await;
    // The access log: principal, route template and outcome only.
    tracing::info!(
        principal = %name,
        route = %route,
        status = resp.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// Audit and answer a refusal.
async fn deny(
    state: &AppState,
    principal: Option<&Principal>,
    route: &str,
    err: StoreError,
) -> Response {
    let api: ApiError = err_clone(&err).into();
    state
        .metrics
        .auth_denied
        .with_label_values(&[api.status.as_str()])
        .inc();
    tracing::info!(
        principal = principal.map(|p| p.name.as_str()).unwrap_or("-"),
        route,
        status = api.status.as_u16(),
        "request refused"
    );
    let mut rec = AuditRecord::new(AuditAction::AuthDenied, "").detail(format!("route={route}"));
    rec.principal = principal.map(|p| p.name.clone());
    state.audit_best_effort(rec.failed(&err)).await;
    api.into_response()
}

/// The errors `deny` handles, duplicated (StoreError is not `Clone`).
fn err_clone(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unauthenticated(m) => StoreError::Unauthenticated(m.clone()),
        StoreError::PermissionDenied(m) => StoreError::PermissionDenied(m.clone()),
        StoreError::RateLimited {
            message,
            retry_after,
        } => StoreError::RateLimited {
            message: message.clone(),
            retry_after: *retry_after,
        },
        other => StoreError::InvalidParameter(other.to_string()),
    }
}

/// Count every request by route template, method and status, and time it.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = route_of(&req);
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[route.as_str(), method.as_str(), resp.status().as_str()])
        .inc();
    resp
}
