//! Authentication: bearer tokens from a tokens file (docs/design.md §7).
//!
//! The file has one line per token (format: [`super::tokens_file`]),
//! holding the SHA-256 of the token and its scope; `#` starts a comment. The
//! server never sees or stores a token in clear at rest. A presented token
//! is hashed and compared with *every* entry in constant time
//! (`subtle::ConstantTimeEq`), with no early exit, so neither the timing of
//! a comparison nor the position of a match tells an attacker anything.
//!
//! The file is re-read (at most every [`RELOAD_CHECK`]), so tokens can be
//! added and revoked without a restart. It fails closed: a file that is
//! missing, unreadable or has a bad line admits no one until it is fixed
//! (docs/design.md §10 rule 13), `/health` says `auth: invalid`, and the log names
//! the line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

pub use super::tokens_file::{Scope, Workspaces};
use super::tokens_file::{format_line, now_secs, parse_line, principal_ok};

/// Prefix of every token `token create` makes, so a leaked one is easy to
/// recognise (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "mlss_";
/// How often, at most, the tokens file's metadata is checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// The principal of anonymous loopback access (no tokens file).
pub const LOCAL_PRINCIPAL: &str = "local";

/// What a principal may do. Reader < writer < admin, each including the
/// one below; `runner` stands apart: it may call `resolve` and nothing else,
/// and no other role may call `resolve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// resolve only, for the one workspace and resource of its scope.
    Runner,
    /// get, list, get-binding, list-bindings.
    Reader,
    /// Reader, plus create, update, revoke, delete, bind, unbind.
    Writer,
    /// Writer, plus list-audit.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Runner => "runner",
            Self::Reader => "reader",
            Self::Writer => "writer",
            Self::Admin => "admin",
        }
    }

    /// May a principal with this role call a route that needs `need`?
    /// The runner role is its own world in both directions.
    pub fn permits(self, need: Role) -> bool {
        match (self, need) {
            (Self::Runner, _) | (_, Self::Runner) => self == need,
            (have, need) => have >= need,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "writer" => Ok(Self::Writer),
            "reader" => Ok(Self::Reader),
            "runner" => Ok(Self::Runner),
            _ => Err("role must be admin, writer, reader or runner".to_string()),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller: who, with which role, reaching what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

impl Principal {
    /// May this principal act on a row (or request) of workspace `ws`?
    pub fn may_workspace(&self, ws: &str) -> bool {
        self.scope.workspaces.contains(ws)
    }

    /// The workspaces a listing must be limited to, or `None` for `*`.
    pub fn workspace_filter(&self) -> Option<Vec<String>> {
        self.scope.workspaces.list()
    }
}

/// Errors of the auth layer. They name the file and line, never a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("tokens file {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("tokens file {path}, line {line}: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "principal is invalid: use 1-255 printable characters without whitespace, not starting with #"
    )]
    BadPrincipal,
    #[error("could not generate a random token: {0}")]
    Random(String),
}

/// One line of the tokens file.
#[derive(Clone)]
struct Entry {
    principal: Principal,
    digest: [u8; 32],
}

/// Check a principal name: it is one field of a whitespace-separated line
/// and is recorded in audit rows.
pub fn validate_principal(p: &str) -> Result<(), AuthError> {
    if principal_ok(p) {
        Ok(())
    } else {
        Err(AuthError::BadPrincipal)
    }
}

/// Parse the tokens file's text. The first bad line fails the whole file.
fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, AuthError> {
    let mut out: Vec<Entry> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| AuthError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let t = parse_line(line).map_err(bad)?;
        // One token, one principal: a repeated hash would make the
        // principal depend on line order.
        if let Some(j) = out.iter().position(|e| e.digest == t.digest) {
            return Err(bad(&format!("the same token hash as line {}", lines[j])));
        }
        lines.push(i + 1);
        out.push(Entry {
            principal: Principal {
                name: t.principal,
                role: t.role,
                scope: t.scope,
            },
            digest: t.digest,
        });
    }
    Ok(out)
}

/// The SHA-256 of a token, as the tokens file records it.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The tokens-file line for a principal, role, scope and token.
pub fn tokens_file_line(principal: &str, role: Role, scope: &Scope, token: &str) -> String {
    format_line(principal, role, &token_digest(token), scope)
}

/// A new random token: 32 bytes from the OS CSPRNG, base64url, prefixed.
pub fn generate_token() -> Result<Zeroizing<String>, AuthError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut bytes[..]).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(Zeroizing::new(format!(
        "{TOKEN_PREFIX}{}",
        B64URL.encode(&bytes[..])
    )))
}

/// The tokens in force, or why there are none.
enum Loaded {
    Valid(Arc<Vec<Entry>>),
    /// Fail closed (docs/design.md §10 rule 13): the file is missing, unreadable or
    /// has a bad line, so no token is accepted until it is fixed.
    Invalid(AuthError),
}

/// What `/health` says about authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStatus {
    Ok,
    Invalid,
}

impl AuthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Invalid => "invalid",
        }
    }
}

/// The tokens in force, re-read when the file changes.
///
/// The file's *content* is read at most every `check_every` and compared
/// by hash with what was loaded, so an edit that keeps the size and mtime,
/// a deleted file and a `chmod 000` are all noticed. Anything that cannot
/// be read or parsed replaces the loaded tokens with none at all.
pub struct TokenStore {
    path: PathBuf,
    state: RwLock<Arc<Loaded>>,
    /// When the file was last checked, and the hash of what it held.
    last: Mutex<(Instant, Option<[u8; 32]>)>,
    check_every: Duration,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .field("entries", &self.len())
            .finish()
    }
}

impl TokenStore {
    /// Load the file. A missing or malformed file is an error here: the
    /// server must not start with an auth configuration it cannot read.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        Self::load_with_interval(path, RELOAD_CHECK)
    }

    /// [`TokenStore::load`] with a custom reload check interval (tests).
    pub fn load_with_interval(path: &Path, check_every: Duration) -> Result<Self, AuthError> {
        let text = read_text(path)?;
        let entries = parse(path, &text)?;
        if entries.is_empty() {
            tracing::warn!(path = %path.display(), "the tokens file has no tokens: every request will be refused");
        }
        Ok(Self {
            path: path.to_path_buf(),
            state: RwLock::new(Arc::new(Loaded::Valid(Arc::new(entries)))),
            last: Mutex::new((Instant::now(), Some(token_digest(&text)))),
            check_every,
        })
    }

    /// Tokens in force (0 while the file is invalid).
    pub fn len(&self) -> usize {
        match &**self.state.read().expect("tokens lock") {
            Loaded::Valid(e) => e.len(),
            Loaded::Invalid(_) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `ok`, or `invalid` while the file cannot be read or parsed.
    pub fn status(&self) -> AuthStatus {
        self.maybe_reload();
        match &**self.state.read().expect("tokens lock") {
            Loaded::Valid(_) => AuthStatus::Ok,
            Loaded::Invalid(_) => AuthStatus::Invalid,
        }
    }

    /// Re-read the file if the check interval has passed.
    fn maybe_reload(&self) {
        let mut last = self.last.lock().expect("tokens reload lock");
        if last.0.elapsed() < self.check_every {
            return;
        }
        last.0 = Instant::now();
        let was_valid = matches!(&**self.state.read().expect("tokens lock"), Loaded::Valid(_));
        let loaded = match read_text(&self.path) {
            Ok(text) => {
                let digest = token_digest(&text);
                if was_valid && last.1 == Some(digest) {
                    return;
                }
                last.1 = Some(digest);
                parse(&self.path, &text)
            }
            Err(e) => {
                last.1 = None;
                Err(e)
            }
        };
        let next = match loaded {
            Ok(entries) => {
                tracing::info!(path = %self.path.display(), tokens = entries.len(), "reloaded the tokens file");
                Loaded::Valid(Arc::new(entries))
            }
            Err(e) => {
                let same = matches!(&**self.state.read().expect("tokens lock"),
                    Loaded::Invalid(old) if old.to_string() == e.to_string());
                if !same {
                    tracing::error!(error = %e, "the tokens file is invalid: no token is accepted until it is fixed");
                }
                Loaded::Invalid(e)
            }
        };
        *self.state.write().expect("tokens lock") = Arc::new(next);
    }

    /// The principal a token belongs to, or `None` (also for an expired
    /// token, and for every token while the file is invalid). Every entry
    /// is compared, in constant time, whatever matches.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        self.maybe_reload();
        let state = self.state.read().expect("tokens lock").clone();
        let Loaded::Valid(entries) = &*state else {
            return None;
        };
        let presented = token_digest(token);
        let mut found = Choice::from(0u8);
        let mut index = 0u32;
        for (i, e) in entries.iter().enumerate() {
            let eq = presented.ct_eq(&e.digest);
            index = u32::conditional_select(&index, &(i as u32), eq);
            found |= eq;
        }
        if !bool::from(found) {
            return None;
        }
        let p = &entries.get(index as usize)?.principal;
        match p.scope.expires {
            Some(at) if at <= now_secs() => None,
            _ => Some(p.clone()),
        }
    }
}

/// Read the file, refusing one its owner may not read: as root, a
/// `chmod 000` file would still open, but it was made unreadable to revoke.
fn read_text(path: &Path) -> Result<String, AuthError> {
    let io = |reason: String| AuthError::Io {
        path: path.to_path_buf(),
        reason,
    };
    let md = std::fs::metadata(path).map_err(|e| io(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = md.permissions().mode();
        if mode & 0o400 == 0 {
            return Err(io(format!(
                "its mode {:04o} gives its owner no read permission",
                mode & 0o7777
            )));
        }
    }
    if !md.is_file() {
        return Err(io("is not a regular file".into()));
    }
    std::fs::read_to_string(path).map_err(|e| io(e.to_string()))
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = rest.trim();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(ws: &[&str]) -> Scope {
        Scope {
            workspaces: Workspaces::Only(ws.iter().map(|w| w.to_string()).collect()),
            resource: None,
            expires: None,
        }
    }

    #[test]
    fn roles_and_the_runner_apart() {
        assert!(Role::Admin.permits(Role::Reader) && Role::Writer.permits(Role::Writer));
        assert!(!Role::Reader.permits(Role::Writer));
        for r in [Role::Reader, Role::Writer, Role::Admin] {
            assert!(!r.permits(Role::Runner) && !Role::Runner.permits(r));
        }
        assert!(Role::Runner.permits(Role::Runner));
    }

    #[test]
    fn parse_authenticate_and_reload_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let t1 = generate_token().unwrap();
        let t2 = generate_token().unwrap();
        assert!(t1.starts_with(TOKEN_PREFIX) && t1.len() > 40 && *t1 != *t2);
        let alice = tokens_file_line("alice", Role::Admin, &Scope::everything(), &t1);
        std::fs::write(
            &path,
            format!(
                "# comment\n\n{alice}\n{}\n",
                tokens_file_line("bob", Role::Reader, &only(&["team-a"]), &t2)
            ),
        )
        .unwrap();
        let ts = TokenStore::load_with_interval(&path, Duration::ZERO).unwrap();
        assert_eq!(ts.len(), 2);
        let bob = ts.authenticate(&t2).unwrap();
        assert_eq!((bob.name.as_str(), bob.role), ("bob", Role::Reader));
        assert!(bob.may_workspace("team-a") && !bob.may_workspace("team-b"));
        assert_eq!(ts.authenticate(&t1).unwrap().role, Role::Admin);
        assert_eq!(ts.authenticate("mlss_nope"), None);

        // Revoke bob by removing his line.
        std::fs::write(&path, format!("{alice}\n")).unwrap();
        assert_eq!(ts.authenticate(&t2), None);
        assert_eq!(ts.status(), AuthStatus::Ok);
        // A broken edit admits no one, alice included, until it is fixed.
        std::fs::write(&path, format!("{alice}\nalice admin md5:abc\n")).unwrap();
        assert_eq!(ts.authenticate(&t1), None);
        assert_eq!(ts.status(), AuthStatus::Invalid);
        std::fs::write(&path, format!("{alice}\n")).unwrap();
        assert_eq!(ts.authenticate(&t1).unwrap().name, "alice");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(ts.authenticate(&t1), None);
        assert_eq!(ts.status(), AuthStatus::Invalid);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let mut past = only(&["a"]);
        past.expires = Some(now_secs() - 1);
        let mut future = only(&["a"]);
        future.expires = Some(now_secs() + 3600);
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n",
                tokens_file_line("old", Role::Writer, &past, "t-old"),
                tokens_file_line("new", Role::Writer, &future, "t-new")
            ),
        )
        .unwrap();
        let ts = TokenStore::load_with_interval(&path, Duration::ZERO).unwrap();
        assert_eq!(ts.authenticate("t-old"), None);
        assert_eq!(ts.authenticate("t-new").unwrap().name, "new");
    }

    #[test]
    fn bad_lines_name_the_line_not_the_token() {
        let p = Path::new("/x/tokens");
        let dup = format!(
            "{}\n{}",
            tokens_file_line("a", Role::Admin, &Scope::everything(), "t"),
            tokens_file_line("b", Role::Reader, &only(&["w"]), "t")
        );
        for (text, needle) in [
            ("alice admin", "expected <principal>"),
            ("alice root sha256:00 workspaces=*", "role must be"),
            ("alice admin mlss_secret workspaces=*", "sha256:"),
            (dup.as_str(), "same token hash as line 2"),
        ] {
            let e = parse(p, &format!("# c\n{text}\n"))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("line 2") && e.contains(needle), "{e}");
            assert!(!e.contains("mlss_secret"), "{e}");
        }
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
