//! The tokens file's line format (docs/design.md §7), parsed and written.
//!
//! ```text
//! <principal> <role> sha256:<hex> workspaces=<w1>,<w2>|* [resource=<TYPE>/<ID>] [expires=<RFC 3339>]
//! ```
//!
//! `workspaces=` is required and `*` (every workspace) must be written out,
//! so a line copied from an older file cannot silently mean "everything".
//! A `runner` line names exactly one workspace and one resource; `resource=`
//! is refused on other roles, because nothing would enforce it there.
//!
//! The file is reachable by whoever can write it, and its parse errors go
//! to the log: a message names the line number and the rule, never the
//! text of a field (a token pasted in place of its hash must not be logged).

use std::collections::BTreeSet;

use super::auth::Role;
use crate::store::validate;

/// Which workspaces a token reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workspaces {
    /// `*`: every workspace, present and future.
    All,
    /// The named workspaces only (never empty).
    Only(BTreeSet<String>),
}

impl Workspaces {
    pub fn contains(&self, ws: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(ws),
        }
    }

    /// The named workspaces, or `None` for `*`.
    pub fn list(&self) -> Option<Vec<String>> {
        match self {
            Self::All => None,
            Self::Only(set) => Some(set.iter().cloned().collect()),
        }
    }
}

impl std::fmt::Display for Workspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Only(set) => {
                let v: Vec<&str> = set.iter().map(String::as_str).collect();
                f.write_str(&v.join(","))
            }
        }
    }
}

/// What a token may reach besides its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub workspaces: Workspaces,
    /// `(resource_type, resource_id)` of a runner token.
    pub resource: Option<(String, String)>,
    /// Seconds since the Unix epoch after which the token is refused.
    pub expires: Option<i64>,
}

impl Scope {
    /// Every workspace, no resource, no expiry (anonymous loopback access).
    pub fn everything() -> Self {
        Self {
            workspaces: Workspaces::All,
            resource: None,
            expires: None,
        }
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLine {
    pub principal: String,
    pub role: Role,
    pub digest: [u8; 32],
    pub scope: Scope,
}

/// Why a line was refused. Fixed texts: none quotes the line.
pub type LineError = &'static str;

/// A principal is one field of a whitespace-separated line and is recorded
/// in audit rows: 1-255 printable characters, no whitespace, not starting
/// with `#` (the line would be a comment, and the token silently unusable).
pub fn principal_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 255
        && !p.starts_with('#')
        && p.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// Parse one non-comment, non-empty line (already trimmed).
pub fn parse_line(line: &str) -> Result<TokenLine, LineError> {
    let mut fields = line.split_whitespace();
    let (Some(principal), Some(role), Some(hash)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(
            "expected <principal> <role> sha256:<hex> workspaces=<w1>,<w2>|* [resource=<TYPE>/<ID>] [expires=<RFC 3339>]",
        );
    };
    if !principal_ok(principal) {
        return Err(
            "the principal must be 1-255 printable characters without whitespace, not starting with #",
        );
    }
    let role: Role = role
        .parse()
        .map_err(|_| "the role must be admin, writer, reader or runner")?;
    let hex_part = hash
        .strip_prefix("sha256:")
        .ok_or("the third field must be sha256:<64 hex digits>, the SHA-256 of the token")?;
    let mut digest = [0u8; 32];
    if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut digest).is_err() {
        return Err("the hash must be sha256: and 64 hex digits");
    }
    let (mut workspaces, mut resource, mut expires) = (None, None, None);
    for opt in fields {
        let (key, value) = opt
            .split_once('=')
            .ok_or("after the hash only workspaces=, resource= and expires= may follow")?;
        match key {
            "workspaces" if workspaces.is_none() => workspaces = Some(parse_workspaces(value)?),
            "resource" if resource.is_none() => resource = Some(parse_resource(value)?),
            "expires" if expires.is_none() => {
                expires = Some(
                    parse_rfc3339(value)
                        .ok_or("expires= must be an RFC 3339 time such as 2027-01-31T00:00:00Z")?,
                )
            }
            "workspaces" | "resource" | "expires" => {
                return Err("workspaces=, resource= and expires= may each appear once");
            }
            _ => return Err("after the hash only workspaces=, resource= and expires= may follow"),
        }
    }
    let workspaces = workspaces
        .ok_or("workspaces= is required: list the workspaces (w1,w2) or write * for all")?;
    match role {
        Role::Runner => {
            let one = matches!(&workspaces, Workspaces::Only(s) if s.len() == 1);
            if !one || resource.is_none() {
                return Err(
                    "a runner token needs exactly one workspace (not *) and one resource=<TYPE>/<ID>",
                );
            }
        }
        _ if resource.is_some() => {
            return Err("resource= is only for the runner role");
        }
        _ => {}
    }
    Ok(TokenLine {
        principal: principal.to_string(),
        role,
        digest,
        scope: Scope {
            workspaces,
            resource,
            expires,
        },
    })
}

fn parse_workspaces(value: &str) -> Result<Workspaces, LineError> {
    if value == "*" {
        return Ok(Workspaces::All);
    }
    let mut set = BTreeSet::new();
    for w in value.split(',') {
        if w == "*" {
            return Err("workspaces=* stands alone: it cannot be combined with names");
        }
        if validate::workspace(w).is_err() {
            return Err(
                "workspaces= holds an invalid workspace name (1-63 of a-z, 0-9 and '-', comma-separated)",
            );
        }
        if !set.insert(w.to_string()) {
            return Err("workspaces= names a workspace twice");
        }
    }
    Ok(Workspaces::Only(set))
}

fn parse_resource(value: &str) -> Result<(String, String), LineError> {
    let (t, id) = value
        .split_once('/')
        .ok_or("resource= must be <TYPE>/<ID>, for example SCORER_JOB/nightly-eval")?;
    if validate::resource_type(t).is_err() {
        return Err("resource= has an invalid type (1-50 of A-Z, 0-9 and _)");
    }
    if validate::resource_id(id).is_err() {
        return Err("resource= has an invalid id (1-255 characters, no whitespace)");
    }
    Ok((t.to_string(), id.to_string()))
}

/// The line for `token create` (and the tests): exactly what
/// [`parse_line`] reads back.
pub fn format_line(principal: &str, role: Role, digest: &[u8; 32], scope: &Scope) -> String {
    let mut line = format!(
        "{principal} {role} sha256:{} workspaces={}",
        hex::encode(digest),
        scope.workspaces
    );
    if let Some((t, id)) = &scope.resource {
        line.push_str(&format!(" resource={t}/{id}"));
    }
    if let Some(at) = scope.expires {
        line.push_str(&format!(" expires={}", format_rfc3339(at)));
    }
    line
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parse an RFC 3339 date-time (`2027-01-31T12:00:00Z`,
/// `2027-01-31T12:00:00.5+02:00`) into seconds since the Unix epoch.
/// Fractions of a second are dropped; leap seconds are refused.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Seconds since the epoch as RFC 3339 in UTC (`2027-01-31T12:00:00Z`).
pub fn format_rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parse a `--ttl`: a whole number with a unit, `s`, `m`, `h`, `d` or `w`
/// (`90d`, `12h`), at most ten years.
pub fn parse_ttl(s: &str) -> Option<i64> {
    let unit = match s.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secs = digits.parse::<i64>().ok()? * unit;
    (1..=10 * 366 * 86_400).contains(&secs).then_some(secs)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

    #[test]
    fn lines_parse_with_their_scope() {
        let l = parse_line(&format!("ci writer {H} workspaces=team-a,team-b")).unwrap();
        assert_eq!(l.role, Role::Writer);
        assert!(l.scope.workspaces.contains("team-b") && !l.scope.workspaces.contains("team-c"));
        let l = parse_line(&format!("root admin {H} workspaces=*")).unwrap();
        assert_eq!(l.scope.workspaces, Workspaces::All);
        let l = parse_line(&format!(
            "job runner {H} expires=2027-01-31T00:00:00Z resource=SCORER_JOB/a/b workspaces=t"
        ))
        .unwrap();
        assert_eq!(l.scope.resource, Some(("SCORER_JOB".into(), "a/b".into())));
        assert_eq!(l.scope.expires, Some(1_801_353_600));
    }

    #[test]
    fn bad_lines_are_refused_without_quoting_them() {
        for (line, needle) in [
            (format!("ci writer {H}"), "workspaces= is required"),
            (format!("ci writer {H} workspaces="), "invalid workspace"),
            (format!("ci writer {H} workspaces=a,*"), "stands alone"),
            (format!("ci writer {H} workspaces=a,a"), "twice"),
            (format!("ci writer {H} workspaces=A"), "invalid workspace"),
            (format!("ci writer {H} workspaces=a workspaces=b"), "once"),
            (format!("ci writer {H} workspaces=a mlss_leaked"), "only"),
            (
                format!("ci writer {H} workspaces=a resource=X/y"),
                "only for the runner",
            ),
            (
                format!("ci runner {H} workspaces=a"),
                "exactly one workspace",
            ),
            (
                format!("ci runner {H} workspaces=* resource=X/y"),
                "exactly one workspace",
            ),
            (
                format!("ci runner {H} workspaces=a,b resource=X/y"),
                "exactly one workspace",
            ),
            (
                format!("ci runner {H} workspaces=a resource=x/y"),
                "invalid type",
            ),
            (
                format!("ci reader {H} workspaces=a expires=tomorrow"),
                "RFC 3339",
            ),
            ("ci root sha256:00 workspaces=a".to_string(), "role must be"),
            ("ci admin mlss_leaked workspaces=a".to_string(), "sha256:"),
            ("ci admin sha256:zz workspaces=a".to_string(), "64 hex"),
        ] {
            let e = parse_line(&line).unwrap_err();
            assert!(e.contains(needle), "{line}: {e}");
            assert!(!e.contains("mlss_leaked") && !e.contains("tomorrow"), "{e}");
        }
    }

    #[test]
    fn rfc3339_and_ttl() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59.999z"),
            Some(1_709_251_199)
        );
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+1:00",
            "+024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(format_rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(parse_ttl("90d"), Some(90 * 86_400));
        assert_eq!(parse_ttl("15m"), Some(900));
        for bad in ["", "d", "0s", "-1d", "1.5h", "1y", "99999999999s", "+5m"] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }
}
