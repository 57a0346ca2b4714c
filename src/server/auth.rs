//! Authentication: bearer tokens from a tokens file (DESIGN §7).
//!
//! The file has one line per token, `<principal> <role> sha256:<hex>`,
//! where the hex is the SHA-256 of the token; `#` starts a comment. The
//! server never sees or stores a token in clear at rest. A presented token
//! is hashed and compared with *every* entry in constant time
//! (`subtle::ConstantTimeEq`), with no early exit, so neither the timing of
//! a comparison nor the position of a match tells an attacker anything.
//!
//! The file is re-read when its modification time or size changes (checked
//! at most every [`RELOAD_CHECK`]), so tokens can be added and revoked
//! without a restart. A file that no longer parses keeps the previous
//! tokens in force and logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// Prefix of every token `token create` makes, so a leaked one is easy to
/// recognise (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "mlss_";
/// How often, at most, the tokens file's metadata is checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// The principal of anonymous loopback access (no tokens file).
pub const LOCAL_PRINCIPAL: &str = "local";

/// What a principal may do. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
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
            Self::Reader => "reader",
            Self::Writer => "writer",
            Self::Admin => "admin",
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
            _ => Err(format!("role must be admin, writer or reader, not {s:?}")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// Errors of the auth layer. They name the file and line, never a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("tokens file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokens file {path}, line {line}: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("principal {0:?} is invalid: use 1-255 printable characters without whitespace")]
    BadPrincipal(String),
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
    let ok =
        !p.is_empty() && p.len() <= 255 && p.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadPrincipal(p.chars().take(80).collect()))
    }
}

/// Parse the tokens file's text.
fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, AuthError> {
    let mut out = Vec::new();
    let mut lines: Vec<(usize, [u8; 32])> = Vec::new();
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
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [principal, role, hash] = fields[..] else {
            return Err(bad(
                "expected three fields: <principal> <role> sha256:<hex>",
            ));
        };
        validate_principal(principal).map_err(|e| bad(&e.to_string()))?;
        let role: Role = role.parse().map_err(|e: String| bad(&e))?;
        let hex_part = hash
            .strip_prefix("sha256:")
            .ok_or_else(|| bad("the hash must start with sha256:"))?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut digest)
            .map_err(|_| bad("the hash must be 64 hex digits"))?;
        // One token, one principal: a repeated hash would make the
        // principal depend on line order.
        if let Some(j) = lines.iter().position(|(_, d)| *d == digest) {
            return Err(bad(&format!("the same token hash as line {}", lines[j].0)));
        }
        lines.push((i + 1, digest));
        out.push(Entry {
            principal: Principal {
                name: principal.to_string(),
                role,
            },
            digest,
        });
    }
    Ok(out)
}

/// The SHA-256 of a token, as the tokens file records it.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The tokens-file line for a principal, role and token.
pub fn tokens_file_line(principal: &str, role: Role, token: &str) -> String {
    format!(
        "{principal} {role} sha256:{}",
        hex::encode(token_digest(token))
    )
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

/// File identity used to notice changes: modification time and size.
type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Result<Stamp, AuthError> {
    let md = std::fs::metadata(path).map_err(|source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((md.modified().ok(), md.len()))
}

/// The tokens in force, reloaded when the file changes.
pub struct TokenStore {
    path: PathBuf,
    entries: RwLock<Arc<Vec<Entry>>>,
    last: Mutex<(Instant, Stamp)>,
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
        let st = stamp(path)?;
        let entries = read_file(path)?;
        if entries.is_empty() {
            tracing::warn!(path = %path.display(), "the tokens file has no tokens: every request will be refused");
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries: RwLock::new(Arc::new(entries)),
            last: Mutex::new((Instant::now(), st)),
            check_every,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.read().expect("tokens lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-read the file if it changed since the last check.
    fn maybe_reload(&self) {
        let mut last = self.last.lock().expect("tokens reload lock");
        if last.0.elapsed() < self.check_every {
            return;
        }
        last.0 = Instant::now();
        let st = match stamp(&self.path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the tokens file; keeping the tokens loaded before");
                return;
            }
        };
        if st == last.1 {
            return;
        }
        match read_file(&self.path) {
            Ok(entries) => {
                tracing::info!(path = %self.path.display(), tokens = entries.len(), "reloaded the tokens file");
                *self.entries.write().expect("tokens lock") = Arc::new(entries);
                last.1 = st;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed tokens file does not parse; keeping the tokens loaded before");
            }
        }
    }

    /// The principal a token belongs to, or `None`. Every entry is compared,
    /// in constant time, whatever matches.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        self.maybe_reload();
        let entries = self.entries.read().expect("tokens lock").clone();
        let presented = token_digest(token);
        let mut found = Choice::from(0u8);
        let mut index = 0u32;
        for (i, e) in entries.iter().enumerate() {
            let eq = presented.ct_eq(&e.digest);
            index = u32::conditional_select(&index, &(i as u32), eq);
            found |= eq;
        }
        if bool::from(found) {
            entries.get(index as usize).map(|e| e.principal.clone())
        } else {
            None
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<Entry>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
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

    #[test]
    fn parse_authenticate_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let t1 = generate_token().unwrap();
        let t2 = generate_token().unwrap();
        assert!(t1.starts_with(TOKEN_PREFIX) && t1.len() > 40 && *t1 != *t2);
        std::fs::write(
            &path,
            format!(
                "# comment\n\n{}\n{}\n",
                tokens_file_line("alice", Role::Admin, &t1),
                tokens_file_line("bob", Role::Reader, &t2)
            ),
        )
        .unwrap();
        let ts = TokenStore::load_with_interval(&path, Duration::ZERO).unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(
            ts.authenticate(&t2),
            Some(Principal {
                name: "bob".into(),
                role: Role::Reader
            })
        );
        assert_eq!(ts.authenticate(&t1).unwrap().role, Role::Admin);
        assert_eq!(ts.authenticate("mlss_nope"), None);

        // Revoke bob by rewriting the file (a different size).
        std::fs::write(&path, tokens_file_line("alice", Role::Admin, &t1) + "\n").unwrap();
        assert_eq!(ts.authenticate(&t2), None);
        // A broken edit keeps the tokens in force.
        std::fs::write(&path, "alice admin md5:abc and more\n").unwrap();
        assert_eq!(ts.authenticate(&t1).unwrap().name, "alice");
    }

    #[test]
    fn bad_lines_name_the_line_not_the_token() {
        let p = Path::new("/x/tokens");
        let dup = format!(
            "{}\n{}",
            tokens_file_line("a", Role::Admin, "t"),
            tokens_file_line("b", Role::Reader, "t")
        );
        for (text, needle) in [
            ("alice admin", "three fields"),
            ("alice root sha256:00", "role must be"),
            ("alice admin md5:00", "sha256:"),
            ("alice admin sha256:zz", "64 hex"),
            (dup.as_str(), "same token hash as line 2"),
        ] {
            let e = parse(p, &format!("# c\n{text}\n"))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("line 2") && e.contains(needle), "{e}");
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
