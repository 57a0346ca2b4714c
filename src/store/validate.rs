//! Input validation shared by every front end. Errors name the field and
//! the rule, and quote the offending identifier (never a value).

use super::{Result, StoreError};

/// Default and maximum page sizes of the listings.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

fn invalid(msg: String) -> StoreError {
    StoreError::InvalidParameter(msg)
}

fn printable_id(s: &str) -> String {
    // Identifiers are echoed in errors; keep them short and on one line.
    let mut out: String = s
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

/// A workspace is a Kubernetes namespace name: an RFC 1123 label.
pub fn workspace(ws: &str) -> Result<()> {
    let ok = !ws.is_empty()
        && ws.len() <= 63
        && ws
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ws.starts_with('-')
        && !ws.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "workspace {:?} is invalid: it must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit",
            printable_id(ws)
        )))
    }
}

/// Secret names: 1-255 characters of letters, digits and `._-/:@`, starting
/// with a letter or digit. No whitespace or control characters, so a name
/// is safe in a URL query, a table and a log line.
pub fn secret_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "secret_name {:?} is invalid: it must be 1-255 characters of letters, digits and ._-/:@, starting with a letter or digit",
            printable_id(name)
        )))
    }
}

/// Resource types are upper-case identifiers such as `SCORER_JOB`.
pub fn resource_type(t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= 50
        && t.starts_with(|c: char| c.is_ascii_uppercase())
        && t.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "resource_type {:?} is invalid: it must be 1-50 characters of A-Z, 0-9 and _, starting with a letter",
            printable_id(t)
        )))
    }
}

/// Resource ids: 1-255 printable characters without whitespace.
pub fn resource_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id.chars().all(|c| !c.is_control() && !c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "resource_id {:?} is invalid: it must be 1-255 characters with no whitespace or control characters",
            printable_id(id)
        )))
    }
}

/// Binding names become environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn binding_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "binding_name {:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most 255 characters)",
            printable_id(name)
        )))
    }
}

/// Ids are UUIDs; checking the shape early turns garbage into a clean 404/400.
pub fn uuid(field: &str, id: &str) -> Result<()> {
    if uuid::Uuid::try_parse(id).is_ok() && id.len() == 36 {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} {:?} is not a valid id",
            printable_id(id)
        )))
    }
}

/// Clamp a requested page size.
pub fn page_size(max_results: Option<u32>) -> Result<u32> {
    match max_results {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(0) => Err(invalid("max_results must be at least 1".into())),
        Some(n) if n > MAX_PAGE_SIZE => Err(invalid(format!(
            "max_results must be at most {MAX_PAGE_SIZE}"
        ))),
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(workspace("default").is_ok());
        assert!(workspace("team-a").is_ok());
        assert!(workspace("Team").is_err());
        assert!(workspace("-a").is_err());
        assert!(workspace(&"a".repeat(64)).is_err());
        assert!(secret_name("openai-key").is_ok());
        assert!(secret_name("a/b:c@d.e_f").is_ok());
        assert!(secret_name("has space").is_err());
        assert!(secret_name("").is_err());
        assert!(secret_name(&"a".repeat(256)).is_err());
        assert!(binding_name("OPENAI_API_KEY").is_ok());
        assert!(binding_name("_x1").is_ok());
        assert!(binding_name("1X").is_err());
        assert!(binding_name("A-B").is_err());
        assert!(resource_type("SCORER_JOB").is_ok());
        assert!(resource_type("scorer").is_err());
        assert!(resource_id("job-1").is_ok());
        assert!(resource_id("a b").is_err());
        let e = binding_name("BAD NAME").unwrap_err().to_string();
        assert!(e.contains("binding_name") && e.contains("BAD NAME"), "{e}");
    }
}
