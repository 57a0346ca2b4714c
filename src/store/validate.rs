//! Input validation shared by every front end. Errors name the field and
//! the rule, and quote the offending identifier (never a value).

use std::sync::LazyLock;

use super::{AuditFilter, Result, StoreError};
use crate::model::BindingFilter;

/// Default and maximum page sizes of the listings.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The non-ASCII characters a secret name may hold (see
/// [`SECRET_NAME_PATTERN`]). Non-ASCII text in a name (MLflow's gateway
/// secrets may be called `clé-ü` or `日本-key`) is allowed except for what a reader cannot see or
/// what reorders text around it, so two names that look alike on a screen
/// are not two different byte strings by a hidden character, and a name
/// cannot flip the line it is printed in. As character-class ranges of
/// literal characters, from U+00A1 up, leaving out: C1 controls and
/// no-break space (U+0080-U+00A0), the soft hyphen U+00AD, the combining
/// grapheme joiner U+034F, the Arabic letter mark U+061C, the Hangul
/// fillers (U+115F, U+1160, U+3164, U+FFA0), the Ogham space U+1680, the
/// Khmer inherent vowels U+17B4-U+17B5, the Mongolian selectors
/// U+180B-U+180F, the spaces, zero-width characters and direction marks
/// U+2000-U+200F, the separators and bidi embeddings U+2028-U+202F,
/// U+205F-U+206F (word joiner, invisible operators, bidi isolates), the
/// Braille blank U+2800, the ideographic space U+3000, surrogates and
/// private use (U+D800-U+F8FF, planes 15-16), the noncharacters
/// U+FDD0-U+FDEF, variation selectors (U+FE00-U+FE0F, U+E0100-U+E01EF),
/// the byte order mark U+FEFF, the specials U+FFF0-U+FFFF, the shorthand
/// and musical format controls (U+1BCA0-U+1BCA3, U+1D173-U+1D17A), and
/// everything past U+3134A (the last CJK ideograph of Unicode 14: the tag
/// characters U+E0000-U+E0FFF, private use). Every range starts and ends
/// on an assigned, printable character of Unicode 14 (so U+1FFF, U+2FFC-
/// U+2FFF, U+D7FC-U+D7FF, U+FEFD-U+FEFE, U+FF00, U+FFEF and
/// U+1BCA4-U+1CEFF, unassigned there, are left out too): schemathesis
/// rewrites a non-printable literal as a Python escape, and `\U` escapes
/// are not ECMAScript.
macro_rules! visible_non_ascii {
    () => {
        "\u{a1}-\u{ac}\u{ae}-\u{34e}\u{350}-\u{61b}\u{61d}-\u{115e}\u{1161}-\u{167f}\
         \u{1681}-\u{17b3}\u{17b6}-\u{180a}\u{1810}-\u{1ffe}\u{2010}-\u{2027}\
         \u{2030}-\u{205e}\u{2070}-\u{27ff}\u{2801}-\u{2ffb}\u{3001}-\u{3163}\
         \u{3165}-\u{d7fb}\u{f900}-\u{fdcf}\u{fdf0}-\u{fdff}\u{fe10}-\u{fefc}\
         \u{ff01}-\u{ff9f}\u{ffa1}-\u{ffee}\u{10000}-\u{1bc9f}\u{1cf00}-\u{1d172}\
         \u{1d17b}-\u{3134a}"
    };
}

/// The identifier rules below as regular expressions, for schemas that
/// cannot call the validators: the OpenAPI document (`server::openapi`)
/// and the CRD schema (`k8s::crd`). Lengths are the schemas'
/// `minLength`/`maxLength`. The syntax is the subset that Go's RE2 (the
/// apiserver), Python's `re` (schemathesis), ECMAScript (with the `u`
/// flag) and the `regex` crate read alike: `\xHH` escapes and literal
/// characters, no `\s`, `\p` or `\u`. A unit test checks each pattern against its validator on a
/// corpus of good and bad identifiers.
///
/// [`workspace`]: an RFC 1123 label.
pub const WORKSPACE_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// [`secret_name`]: an ASCII letter or digit, or a visible non-ASCII
/// character, first; then also `._/:@-`.
pub const SECRET_NAME_PATTERN: &str = concat!(
    "^[A-Za-z0-9",
    visible_non_ascii!(),
    "][A-Za-z0-9._/:@",
    visible_non_ascii!(),
    "-]*$"
);
/// [`resource_type`].
pub const RESOURCE_TYPE_PATTERN: &str = "^[A-Z][A-Z0-9_]*$";
/// [`resource_id`]: no control character (Unicode `Cc`: U+0000-U+001F,
/// U+007F-U+009F) and no Unicode whitespace (`char::is_whitespace`: the
/// ASCII ones, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
/// U+202F, U+205F, U+3000), the non-ASCII ones written as literal
/// characters.
pub const RESOURCE_ID_PATTERN: &str =
    "^[^\\x00-\\x20\\x7f-\\xa0\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}]+$";
/// [`binding_name`] without the reserved names (see
/// [`RESERVED_BINDING_NAME_REGEX`]): an environment variable name.
pub const BINDING_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// [`provider`].
pub const PROVIDER_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";
/// [`value_field`]: no control character.
pub const VALUE_FIELD_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]+$";
/// One name of [`service_accounts`]: a DNS-1123 subdomain.
pub const SERVICE_ACCOUNT_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

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

/// Secret names: 1-255 bytes of UTF-8 matching [`SECRET_NAME_PATTERN`]
/// (letters, digits, `._-/:@` and visible non-ASCII characters, starting
/// with a letter, digit or non-ASCII character), in Unicode NFC. No
/// whitespace, control, zero-width or bidi characters, so a name is safe
/// in a URL query, a table and a log line; and NFC, so `é` typed composed
/// and decomposed is one name, not two that look the same.
pub fn secret_name(name: &str) -> Result<()> {
    static RULE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(SECRET_NAME_PATTERN).expect("SECRET_NAME_PATTERN is a valid regex")
    });
    let why = if name.is_empty() || name.len() > 255 {
        "it must be 1-255 bytes of UTF-8"
    } else if !RULE.is_match(name) {
        "it must start with a letter or digit and hold only letters, digits, ._-/:@ and visible non-ASCII characters (no whitespace, control, zero-width, bidi or private-use characters)"
    } else if !unicode_normalization::is_nfc(name) {
        "it must be in Unicode NFC form (a composed character, not a letter followed by a combining mark)"
    } else {
        return Ok(());
    };
    Err(invalid(format!(
        "secret_name {:?} is invalid: {why}",
        printable_id(name)
    )))
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

/// A resource key: its workspace, type and id each valid.
pub fn resource(r: crate::model::ResourceRef<'_>) -> Result<()> {
    workspace(r.workspace)?;
    resource_type(r.resource_type)?;
    resource_id(r.resource_id)
}

/// Binding names become environment variable names: `[A-Za-z_][A-Za-z0-9_]*`,
/// and never one of the [`RESERVED_BINDING_NAMES`]. Every path that creates
/// a binding (CLI, REST, CRD) ends here, so the rule cannot be skipped.
pub fn binding_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(invalid(format!(
            "binding_name {:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most 255 characters)",
            printable_id(name)
        )));
    }
    if let Some(rule) = reserved_rule(name) {
        return Err(invalid(format!(
            "binding_name {:?} is reserved ({rule}): a bound value must not change how a process starts or where it sends data",
            printable_id(name)
        )));
    }
    Ok(())
}

/// The reserved binding names of docs/design.md §6, as written there: `X_*` is a
/// prefix, `*_X` a suffix. Case-sensitive (environment variables are),
/// except `*_PROXY`, which HTTP clients also read in lower case.
pub const RESERVED_BINDING_NAMES: [&str; 15] = [
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "LD_*",
    "DYLD_*",
    "PYTHON*",
    "PERL5*",
    "RUBYOPT",
    "NODE_OPTIONS",
    "JAVA_TOOL_OPTIONS",
    "BROWSER",
    "KUBERNETES_*",
    "*_PROXY",
    "MLFLOW_SECRETS_*",
];

/// [`RESERVED_BINDING_NAMES`] as one RE2 regular expression that matches a
/// reserved name, for schemas that cannot call [`binding_name`]: the CRD's
/// CEL rule is `!self.matches(RESERVED_BINDING_NAME_REGEX)`. A unit test
/// keeps it in step with the list.
pub const RESERVED_BINDING_NAME_REGEX: &str = "^(PATH|HOME|SHELL|USER|LD_.*|DYLD_.*|PYTHON.*|PERL5.*|RUBYOPT|NODE_OPTIONS|JAVA_TOOL_OPTIONS|BROWSER|KUBERNETES_.*|(?i:.*_PROXY)|MLFLOW_SECRETS_.*)$";

/// The entry of [`RESERVED_BINDING_NAMES`] that `name` falls under.
pub fn reserved_rule(name: &str) -> Option<&'static str> {
    RESERVED_BINDING_NAMES.iter().copied().find(|rule| {
        if let Some(suffix) = rule.strip_prefix('*') {
            // Only `*_PROXY`: any case. `get`, not an index: the tail of
            // a non-ASCII name may not start on a character boundary.
            name.len() >= suffix.len()
                && name
                    .get(name.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        } else if let Some(prefix) = rule.strip_suffix('*') {
            name.starts_with(prefix)
        } else {
            name == *rule
        }
    })
}

/// A provider name (`openai`, `anthropic`, `azure`, `vertex_ai`, ...): 1-64
/// letters, digits and `._-`, starting with a letter or digit.
pub fn provider(p: &str) -> Result<()> {
    let ok = !p.is_empty()
        && p.len() <= 64
        && p.starts_with(|c: char| c.is_ascii_alphanumeric())
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "provider {:?} is invalid: it must be 1-64 letters, digits and ._-, starting with a letter or digit",
            printable_id(p)
        )))
    }
}

/// A `value_field`: a key of an object value, 1-255 characters without
/// control characters.
pub fn value_field(f: &str) -> Result<()> {
    let ok = !f.is_empty() && f.len() <= 255 && !f.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "value_field {:?} is invalid: it must be 1-255 characters with no control characters",
            printable_id(f)
        )))
    }
}

/// Longest `secrets_bindings.service_accounts` (VARCHAR(1000)).
const MAX_SERVICE_ACCOUNTS_CHARS: usize = 1000;

/// ServiceAccount names are Kubernetes DNS-1123 subdomains; the list has no
/// duplicates and fits its column.
pub fn service_accounts(sas: &[String]) -> Result<()> {
    for sa in sas {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if sa.is_empty() || sa.len() > 253 || !sa.split('.').all(label_ok) {
            return Err(invalid(format!(
                "service account {:?} is invalid: it must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters)",
                printable_id(sa)
            )));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = sas.iter().find(|sa| !seen.insert(sa.as_str())) {
        return Err(invalid(format!(
            "service account {:?} is listed twice",
            printable_id(dup)
        )));
    }
    let total: usize = sas.iter().map(|s| s.len() + 1).sum();
    if total > MAX_SERVICE_ACCOUNTS_CHARS + 1 {
        return Err(invalid(format!(
            "service_accounts is too long: at most {MAX_SERVICE_ACCOUNTS_CHARS} characters, comma-separated"
        )));
    }
    Ok(())
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

/// The filters of a binding listing. The store checks them for every front
/// end (CLI, controllers, REST), so each gets the same one-line error.
pub fn binding_filter(f: &BindingFilter) -> Result<()> {
    f.workspace.as_deref().map(workspace).transpose()?;
    f.resource_type.as_deref().map(resource_type).transpose()?;
    f.resource_id.as_deref().map(resource_id).transpose()?;
    f.secret_id
        .as_deref()
        .map(|id| uuid("secret_id", id))
        .transpose()?;
    Ok(())
}

/// The filters of an audit listing (see [`binding_filter`]).
pub fn audit_filter(f: &AuditFilter) -> Result<()> {
    f.workspace.as_deref().map(workspace).transpose()?;
    f.secret_id
        .as_deref()
        .map(|id| uuid("secret_id", id))
        .transpose()?;
    if f.after_seq.is_some_and(|s| s < 0) {
        return Err(StoreError::InvalidParameter(
            "after_seq must be 0 or more".into(),
        ));
    }
    Ok(())
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

    /// Each pattern accepts exactly what its validator accepts (within the
    /// schema's lengths), on identifiers chosen to sit on every edge of the
    /// rules: the characters allowed and refused, first and last positions,
    /// ASCII and Unicode whitespace, C0/C1 controls, and non-ASCII text.
    #[test]
    fn patterns_agree_with_their_validators() {
        let corpus: Vec<String> = [
            "a",
            "A",
            "0",
            "_",
            "-",
            ".",
            "a-b",
            "a--b",
            "-a",
            "a-",
            "ab.cd",
            ".ab",
            "ab.",
            "a.-b",
            "a..b",
            "Az09",
            "openai",
            "vertex_ai",
            "azure.v2",
            "db/prod:main@1",
            "/abs",
            "a b",
            " a",
            "a ",
            "a\tb",
            "a\nb",
            "a\rb",
            "a\u{b}b",
            "a\u{c}b",
            "\u{0}",
            "a\u{1f}",
            "a\u{7f}",
            "a\u{80}",
            "a\u{85}b",
            "a\u{9f}",
            "a\u{a0}b",
            "a\u{a1}b",
            "a\u{1680}b",
            "a\u{2000}b",
            "a\u{200a}b",
            "a\u{200b}b",
            "a\u{2028}b",
            "a\u{2029}b",
            "a\u{202f}b",
            "a\u{205f}b",
            "a\u{3000}b",
            "a\u{feff}b",
            "job-1",
            "job_1",
            "SCORER_JOB",
            "SCORER-JOB",
            "scorer_job",
            "S1",
            "1S",
            "_S",
            "OPENAI_API_KEY",
            "_x",
            "x1",
            "1x",
            "x-y",
            "x.y",
            "ü",
            "aü",
            "日本",
            "emoji😀",
            "x$y",
            "x=y",
            "x,y",
            "my-sa",
            "my.sa",
            "my..sa",
            "My-sa",
            "sa.",
            "a*b",
            "a\\b",
            "clé-ü",
            "日本-key",
            "\u{e9}",
            "e\u{301}",
            "\u{301}a",
            "a\u{ad}b",
            "a\u{34f}b",
            "a\u{200d}b",
            "a\u{202e}b",
            "a\u{2066}b",
            "a\u{2800}b",
            "a\u{3164}b",
            "a\u{e000}b",
            "a\u{fdd0}b",
            "a\u{fe0f}b",
            "a\u{fffd}b",
            "a\u{e0041}b",
            "a\u{10fffd}b",
            "\"q\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        type Check = fn(&str) -> Result<()>;
        let pairs: [(&str, &str, Check); 8] = [
            ("workspace", WORKSPACE_PATTERN, workspace),
            // NFC is the validator's own rule, past the pattern.
            ("secret_name", SECRET_NAME_PATTERN, |n| {
                let name_chars = regex::Regex::new(SECRET_NAME_PATTERN).unwrap();
                secret_name(n).or_else(|e| {
                    if name_chars.is_match(n) && !unicode_normalization::is_nfc(n) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
            }),
            ("resource_type", RESOURCE_TYPE_PATTERN, resource_type),
            ("resource_id", RESOURCE_ID_PATTERN, resource_id),
            // Reserved names are the CRD's separate CEL rule.
            ("binding_name", BINDING_NAME_PATTERN, |n| {
                binding_name(n).or_else(|e| {
                    if reserved_rule(n).is_some() {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
            }),
            ("provider", PROVIDER_PATTERN, provider),
            ("value_field", VALUE_FIELD_PATTERN, value_field),
            ("service account", SERVICE_ACCOUNT_PATTERN, |n| {
                service_accounts(&[n.to_string()])
            }),
        ];
        for (what, pattern, check) in pairs {
            let re = regex::Regex::new(pattern).expect(what);
            let mut accepted = 0;
            for id in &corpus {
                let by_validator = check(id).is_ok();
                assert_eq!(
                    re.is_match(id),
                    by_validator,
                    "{what}: pattern and validator disagree on {id:?}"
                );
                accepted += usize::from(by_validator);
            }
            assert!(
                accepted > 0 && accepted < corpus.len(),
                "{what}: a one-sided corpus"
            );
        }
    }

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
        assert!(secret_name("clé-ü").is_ok());
        assert!(secret_name("日本-key").is_ok());
        let bidi = secret_name("abc\u{202e}gpj.exe").unwrap_err().to_string();
        assert!(
            bidi.contains("bidi") && bidi.contains("\\u{202e}"),
            "{bidi}"
        );
        let nfd = secret_name("cle\u{301}").unwrap_err().to_string();
        assert!(nfd.contains("NFC"), "{nfd}");
        assert!(secret_name(&"é".repeat(128)).is_err(), "256 bytes");
        assert!(secret_name(&"é".repeat(127)).is_ok());
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

    #[test]
    fn reserved_binding_names_are_refused() {
        for name in [
            "PATH",
            "HOME",
            "SHELL",
            "USER",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "PYTHONPATH",
            "PYTHONWARNINGS",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "PERL5LIB",
            "RUBYOPT",
            "NODE_OPTIONS",
            "JAVA_TOOL_OPTIONS",
            "BROWSER",
            "KUBERNETES_SERVICE_HOST",
            "HTTPS_PROXY",
            "https_proxy",
            "Http_Proxy",
            "NO_PROXY",
            "no_proxy",
            "ALL_PROXY",
            "MLFLOW_SECRETS_TEST_MODE",
        ] {
            let e = binding_name(name).expect_err(name).to_string();
            assert!(e.contains("reserved") && e.contains(name), "{e}");
        }
        // Near misses stay allowed: the list is exact, not a fuzzy match.
        for name in [
            "OPENAI_API_KEY",
            "PATHS",
            "MY_PATH",
            "path",
            "home",
            "LD",
            "PYTHO",
            "USERNAME",
            "PROXY",
            "PROXY_URL",
            "MLFLOW_SECRET",
            "MLFLOW_TRACKING_TOKEN",
            "KUBERNETES",
        ] {
            assert!(binding_name(name).is_ok(), "{name}");
        }
        // A row read back from the database is checked with the rule
        // alone (`store::sql::values`): non-ASCII text must not panic it.
        assert_eq!(reserved_rule("日本"), None);
        assert_eq!(reserved_rule("日本x"), None);
        assert_eq!(reserved_rule("é_PROXY"), Some("*_PROXY"));
    }

    /// The exported regex names every entry of the list, with the same
    /// wildcards (the CRD schema uses it instead of this code).
    #[test]
    fn reserved_regex_covers_the_list() {
        let body = RESERVED_BINDING_NAME_REGEX
            .strip_prefix("^(")
            .and_then(|r| r.strip_suffix(")$"))
            .expect("anchored group");
        let alts: Vec<&str> = body.split('|').collect();
        assert_eq!(alts.len(), RESERVED_BINDING_NAMES.len());
        for (alt, rule) in alts.iter().zip(RESERVED_BINDING_NAMES) {
            let expected = if rule == "*_PROXY" {
                "(?i:.*_PROXY)".to_string()
            } else {
                rule.replace('*', ".*")
            };
            assert_eq!(*alt, expected);
        }
    }

    #[test]
    fn provider_field_and_service_accounts() {
        assert!(provider("openai").is_ok() && provider("vertex_ai").is_ok());
        assert!(provider("").is_err() && provider("has space").is_err());
        assert!(value_field("api_key").is_ok());
        assert!(value_field("").is_err() && value_field("a\nb").is_err());
        let sa = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(service_accounts(&sa(&["scorer", "ci.bot-1"])).is_ok());
        assert!(service_accounts(&[]).is_ok());
        for bad in ["Scorer", "-a", "a-", "a..b", "a b", "a,b", ""] {
            assert!(service_accounts(&sa(&[bad])).is_err(), "{bad}");
        }
        assert!(service_accounts(&sa(&["a", "a"])).is_err());
        let many: Vec<String> = (0..100).map(|i| format!("service-account-{i}")).collect();
        assert!(service_accounts(&many).is_err());
    }
}
