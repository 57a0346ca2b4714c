//! Middleware: who is calling (401), how often (429), and whether their
//! role allows the route (403), in that order; the `Host` check of
//! anonymous mode; and the request metrics.
//!
//! Refusals of a known principal are audited (`AUTH_DENIED`, outcome
//! `DENIED`) with the principal, the route template and the reason; never
//! the token, a header or the body. Requests without a valid token are
//! first rate limited by peer address, with no audit write at all past the
//! limit, and their rows are aggregated, one per peer and minute with a
//! count (`limits::DenialAggregator`), so a flood cannot grow the log
//! without bound. Logs name the principal only.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{Principal, Role, bearer};
use super::error::ApiError;
use super::limits::{now_minute, peer_key};
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
    let route = format!("{} {}", method_label(req.method()), route_of(&req));
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
                        "the bearer token is not valid (unknown, expired, or the server's tokens file is invalid)"
                    };
                    let peer = req
                        .extensions()
                        .get::<ConnectInfo<SocketAddr>>()
                        .map(|c| c.0.ip());
                    return unauthenticated(&g.state, peer, &route, why).await;
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
    if !principal.role.permits(g.role) {
        let err = StoreError::PermissionDenied(if g.role == Role::Runner {
            format!(
                "principal '{}' has role {}; {route} is for runner tokens only",
                principal.name, principal.role
            )
        } else if principal.role == Role::Runner {
            format!(
                "principal '{}' has role runner, which may call resolve only",
                principal.name
            )
        } else {
            format!(
                "principal '{}' has role {}; {route} needs role {} or above",
                principal.name, principal.role, g.role
            )
        });
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

/// Answer a request without a valid token: 429 past the peer's limit,
/// with nothing audited; otherwise 401, audited once per peer and minute.
async fn unauthenticated(
    state: &AppState,
    peer: Option<std::net::IpAddr>,
    route: &str,
    why: &str,
) -> Response {
    let key = peer_key(peer);
    let minute = now_minute();
    if let Err(wait) = state.peer_limiter.check(&key) {
        state.metrics.rate_limited.inc();
        state.metrics.auth_denied.with_label_values(&["429"]).inc();
        // Counted in the peer's aggregated row; no write of its own.
        state.denials.count_only(&key, route, minute);
        return ApiError::from(StoreError::RateLimited {
            message: "too many requests without a valid token from this address: retry after the Retry-After delay".into(),
            retry_after: wait,
        })
        .into_response();
    }
    state.metrics.auth_denied.with_label_values(&["401"]).inc();
    // Logged like it is audited: once per peer and minute at INFO, so a
    // flood cannot flood the log either.
    match state.denials.record(&key, route, minute) {
        Some(rec) => {
            tracing::info!(route, peer = %key, status = 401, "request refused (repeats from this peer this minute are counted, not logged)");
            state.audit_best_effort(rec).await;
        }
        None => tracing::debug!(route, status = 401, "request refused"),
    }
    ApiError::from(StoreError::Unauthenticated(why.into())).into_response()
}

/// The Host values anonymous loopback mode answers (docs/design.md §7): a page on
/// another origin that rebinds its DNS name to 127.0.0.1 still sends its
/// own name, and is refused.
pub fn is_loopback_host(host: &str) -> bool {
    let (name, port, bracketed) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((h, tail)) => (h, tail, true),
            None => return false,
        },
        None => match host.find(':') {
            Some(i) => (&host[..i], &host[i..], false),
            None => (host, "", false),
        },
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        });
    port_ok
        && if bracketed {
            name == "::1"
        } else {
            name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1"
        }
}

/// In anonymous mode, refuse every request whose `Host` is not loopback.
pub async fn host_check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(state.auth, AuthMode::LocalAnonymous) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        if !host.is_some_and(is_loopback_host) {
            return ApiError::from(StoreError::PermissionDenied(
                "anonymous loopback access answers only Host localhost, 127.0.0.1 or [::1]".into(),
            ))
            .into_response();
        }
    }
    next.run(req).await
}

/// The method as a metric label: only the methods the API knows, anything
/// else `other` (hyper accepts any token as a method; `-X M123` must not
/// make a new series).
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
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
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .with_label_values(&[route.as_str(), method])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[route.as_str(), method, resp.status().as_str()])
        .inc();
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_only() {
        for ok in [
            "localhost",
            "localhost:5005",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:5005",
            "[::1]",
            "[::1]:5005",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:5005",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "localhost:",
            "localhost:99999",
            "localhost:50a",
            "localhost:5005:1",
            "[::1]x",
            "[::2]:1",
            "::1",
            "127.0.0.2",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_methods_are_other() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"M123").unwrap()), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }
}
