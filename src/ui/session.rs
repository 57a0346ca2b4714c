//! Server-side sessions of the web UI (docs/design.md §12).
//!
//! Signing in with a bearer token creates a session held in this process's
//! memory; the browser gets only a random id in an `HttpOnly;
//! SameSite=Strict; Path=/` cookie (plus `Secure` and the `__Host-` prefix
//! on TLS). The map is keyed by the SHA-256 of the id, so the ids
//! themselves are not kept. A session keeps its token (zeroized on drop)
//! and authenticates it again on every request, so a token removed from
//! the tokens file, or one that expires, ends its sessions at once.
//!
//! Lifetimes: [`IDLE_TIMEOUT`] without a request, [`ABSOLUTE_TIMEOUT`]
//! after sign-in, whichever comes first; signing out removes the session.
//! Sessions live in one process: several replicas need sticky sessions or
//! a new sign-in after a failover (docs/ui.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::server::auth::Principal;

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A session ends this long after sign-in, however active.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(8 * 60 * 60);
/// Pages warn that the session ends soon when less than this is left of
/// its absolute lifetime.
pub const ENDS_SOON: Duration = Duration::from_secs(10 * 60);
/// Most sessions held at once; a sign-in past it drops the oldest.
pub const MAX_SESSIONS: usize = 10_000;

/// The cookie's name on plain HTTP (loopback).
pub const COOKIE_PLAIN: &str = "mlss_session";
/// The cookie's name on TLS: `__Host-` makes the browser insist on
/// `Secure`, `Path=/` and no `Domain`, so no sibling host can set it.
pub const COOKIE_TLS: &str = "__Host-mlss_session";

/// One signed-in browser.
pub struct Session {
    /// The token it signed in with, checked again on every request;
    /// `None` in anonymous loopback mode.
    token: Option<Zeroizing<String>>,
    /// The principal as of sign-in (anonymous mode: `local`).
    pub principal: Principal,
    /// The per-session form token every POST must carry.
    pub csrf: String,
    pub created: Instant,
    pub last_seen: Instant,
    /// A one-time notice for the next page (POST-redirect-GET).
    pub flash: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("principal", &self.principal.name)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The token it signed in with (for re-authentication).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().map(|s| s.as_str())
    }

    /// When the session ends at the latest.
    pub fn ends_in(&self, now: Instant) -> Duration {
        let idle = IDLE_TIMEOUT.saturating_sub(now.saturating_duration_since(self.last_seen));
        let abs = ABSOLUTE_TIMEOUT.saturating_sub(now.saturating_duration_since(self.created));
        idle.min(abs)
    }

    /// What is left of the absolute lifetime.
    pub fn absolute_left(&self, now: Instant) -> Duration {
        ABSOLUTE_TIMEOUT.saturating_sub(now.saturating_duration_since(self.created))
    }

    /// Is this the session's form token? Constant time.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// What a request's session looks like after a lookup.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub principal: Principal,
    pub csrf: String,
    pub ends_in: Duration,
    pub absolute_left: Duration,
    pub flash: Option<String>,
    /// The token, to re-authenticate (never rendered).
    pub token: Option<Zeroizing<String>>,
}

/// The sessions of this process.
#[derive(Debug, Default)]
pub struct SessionStore {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_b64(n: usize) -> String {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    // The OS CSPRNG failing is not something a web page can recover from.
    getrandom::fill(&mut bytes[..]).expect("OS random number generator");
    B64URL.encode(&bytes[..])
}

impl SessionStore {
    /// Start a session; returns its id (the cookie's value).
    pub fn create(&self, principal: Principal, token: Option<Zeroizing<String>>) -> String {
        let id = random_b64(32);
        let now = Instant::now();
        let s = Session {
            token,
            principal,
            csrf: random_b64(32),
            created: now,
            last_seen: now,
            flash: None,
        };
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.ends_in(now) > Duration::ZERO);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key(&id), s);
        id
    }

    /// The live session of `id`, touched (its idle clock restarts) and its
    /// flash taken. An expired session is removed and `None` returned.
    pub fn touch(&self, id: &str) -> Option<SessionView> {
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        let k = key(id);
        let s = map.get_mut(&k)?;
        if s.ends_in(now) == Duration::ZERO {
            map.remove(&k);
            return None;
        }
        s.last_seen = now;
        Some(SessionView {
            principal: s.principal.clone(),
            csrf: s.csrf.clone(),
            ends_in: s.ends_in(now),
            absolute_left: s.absolute_left(now),
            flash: s.flash.take(),
            token: s.token.clone(),
        })
    }

    /// Does `presented` match the form token of session `id`?
    pub fn csrf_ok(&self, id: &str, presented: &str) -> bool {
        let map = self.map.lock().expect("sessions lock");
        map.get(&key(id)).is_some_and(|s| s.csrf_matches(presented))
    }

    /// Leave a notice for the session's next page.
    pub fn set_flash(&self, id: &str, msg: impl Into<String>) {
        if let Some(s) = self.map.lock().expect("sessions lock").get_mut(&key(id)) {
            s.flash = Some(msg.into());
        }
    }

    /// End a session (sign-out, or its token stopped authenticating).
    pub fn end(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(&key(id));
    }

    /// Number of live sessions (tests, metrics).
    pub fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Age a session (tests of the timeouts).
    #[doc(hidden)]
    pub fn age_for_tests(&self, id: &str, idle: Duration, since_created: Duration) {
        if let Some(s) = self.map.lock().expect("sessions lock").get_mut(&key(id)) {
            let now = Instant::now();
            s.last_seen = now.checked_sub(idle).unwrap_or(s.last_seen);
            s.created = now.checked_sub(since_created).unwrap_or(s.created);
        }
    }
}

/// The cookie name for this listener.
pub fn cookie_name(tls: bool) -> &'static str {
    if tls { COOKIE_TLS } else { COOKIE_PLAIN }
}

/// The `Set-Cookie` value of a new session.
pub fn set_cookie(tls: bool, id: &str) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict{secure}",
        cookie_name(tls)
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        cookie_name(tls)
    )
}

/// The session id in a request's `Cookie` headers, if any.
pub fn session_id(headers: &axum::http::HeaderMap, tls: bool) -> Option<String> {
    let name = cookie_name(tls);
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::{Role, Scope};

    fn alice() -> Principal {
        Principal {
            name: "alice".into(),
            role: Role::Admin,
            scope: Scope::everything(),
        }
    }

    #[test]
    fn idle_and_absolute_timeouts_end_a_session() {
        let store = SessionStore::default();
        let id = store.create(alice(), None);
        assert!(store.touch(&id).is_some());
        store.age_for_tests(&id, IDLE_TIMEOUT + Duration::from_secs(1), Duration::ZERO);
        assert!(store.touch(&id).is_none(), "idle session must end");
        let id = store.create(alice(), None);
        store.age_for_tests(&id, Duration::ZERO, ABSOLUTE_TIMEOUT);
        assert!(store.touch(&id).is_none(), "absolute lifetime must end it");
        assert!(store.is_empty());
    }

    #[test]
    fn cookie_flags() {
        assert_eq!(
            set_cookie(true, "x"),
            "__Host-mlss_session=x; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            set_cookie(false, "x"),
            "mlss_session=x; Path=/; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn csrf_token_is_per_session() {
        let store = SessionStore::default();
        let a = store.create(alice(), None);
        let b = store.create(alice(), None);
        let ta = store.touch(&a).unwrap().csrf;
        assert!(store.csrf_ok(&a, &ta));
        assert!(!store.csrf_ok(&b, &ta));
        assert!(!store.csrf_ok(&a, ""));
    }
}
