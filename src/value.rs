//! Secret values and their display mask (docs/design.md §4).
//!
//! A value is either one string or an object of strings. Both are held in
//! `SecretString`s, so they are wiped on drop, print as `[REDACTED]` and can
//! only be read through `expose_secret()`. The type is deliberately not
//! `Serialize`: the only serialized form is the encrypted plaintext made by
//! [`SecretValue::to_plaintext`].

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

mod plaintext;

/// The key a plain string value is stored under.
pub const STRING_KEY: &str = "value";

/// Largest accepted value (all strings together), in bytes. API keys are a
/// few hundred bytes; a service-account JSON a few KiB.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The longest `masked_value` the schema allows (VARCHAR(500)).
pub const MAX_MASK_CHARS: usize = 500;

/// A secret value.
pub enum SecretValue {
    String(SecretString),
    Object(BTreeMap<String, SecretString>),
}

/// Why a value was refused. Never contains the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("value is empty")]
    Empty,
    #[error("value is larger than {MAX_VALUE_BYTES} bytes")]
    TooLarge,
    #[error("value must be a string or a JSON object whose values are all strings")]
    NotStringMap,
    #[error("value object has an empty key")]
    EmptyKey,
    #[error("decrypted value is not valid JSON of the expected shape")]
    BadPlaintext,
}

/// Why [`SecretValue::field`] found no field. Names keys only.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error(
        "value_field '{field}' needs a value that is an object, but the value is a single string"
    )]
    NotAnObject { field: String },
    #[error("the value has no field '{field}' (its fields: {keys})")]
    Missing { field: String, keys: String },
}

impl SecretValue {
    /// A string value. Refuses an empty string.
    pub fn from_string(s: String) -> Result<Self, ValueError> {
        let v = Self::String(SecretString::from(s));
        v.validate()?;
        Ok(v)
    }

    /// Parse a JSON document that is either a string or an object of strings
    /// (the `--json-file` and REST `value` forms). An object whose only key is
    /// `value` stays an object here; it reads back as a string (§4).
    pub fn from_json_text(text: &str) -> Result<Self, ValueError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(SecretString),
            M(BTreeMap<String, SecretString>),
        }
        let raw: Raw = serde_json::from_str(text).map_err(|_| ValueError::NotStringMap)?;
        let v = match raw {
            Raw::S(s) => Self::String(s),
            Raw::M(m) => Self::Object(m),
        };
        v.validate()?;
        Ok(v)
    }

    /// The rules every value obeys: not empty, no empty key, at most
    /// [`MAX_VALUE_BYTES`]. The constructors apply them; a value built
    /// directly from its variants (a deserializer) must call this.
    pub fn validate(&self) -> Result<(), ValueError> {
        let size = match self {
            Self::String(s) => {
                if s.expose_secret().is_empty() {
                    return Err(ValueError::Empty);
                }
                s.expose_secret().len()
            }
            Self::Object(m) => {
                if m.is_empty() {
                    return Err(ValueError::Empty);
                }
                if m.keys().any(|k| k.is_empty()) {
                    return Err(ValueError::EmptyKey);
                }
                m.iter()
                    .map(|(k, v)| k.len() + v.expose_secret().len())
                    .sum()
            }
        };
        if size > MAX_VALUE_BYTES {
            return Err(ValueError::TooLarge);
        }
        Ok(())
    }

    /// The plaintext that gets encrypted: compact UTF-8 JSON, keys sorted.
    /// A string is wrapped as `{"value": "..."}`.
    pub fn to_plaintext(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.json_capacity()));
        out.push(b'{');
        let mut first = true;
        let mut put = |out: &mut Vec<u8>, k: &str, v: &str| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            // Writing into a Vec cannot fail.
            serde_json::to_writer(&mut *out, k).expect("write to vec");
            out.push(b':');
            serde_json::to_writer(&mut *out, v).expect("write to vec");
        };
        match self {
            Self::String(s) => put(&mut out, STRING_KEY, s.expose_secret()),
            Self::Object(m) => {
                for (k, v) in m {
                    put(&mut out, k, v.expose_secret());
                }
            }
        }
        out.push(b'}');
        out
    }

    /// The REST form of the value: a JSON string, or a JSON object of
    /// strings (the `value` field of `create` and `update`, docs/design.md §7).
    pub fn to_request_json(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::String(s) => {
                let mut out = Zeroizing::new(Vec::with_capacity(self.json_capacity()));
                serde_json::to_writer(&mut *out, s.expose_secret()).expect("write to vec");
                out
            }
            Self::Object(_) => self.to_plaintext(),
        }
    }

    /// The one string a binding injects (env var or file, webhook and
    /// `resolve` alike): a string as it is, an object of strings as its
    /// compact JSON with sorted keys. Both paths call this, so what a pod
    /// gets and what `resolve` returns can never differ.
    pub fn injected_text(&self) -> SecretString {
        match self {
            Self::String(s) => s.clone(),
            Self::Object(_) => {
                let json = self.to_plaintext();
                // serde_json writes valid UTF-8.
                SecretString::from(String::from_utf8_lossy(&json).into_owned())
            }
        }
    }

    /// Capacity for the JSON form, generous enough that writing never
    /// reallocates (a reallocation would leave an unwiped copy behind).
    fn json_capacity(&self) -> usize {
        let worst = |s: &str| 6 * s.len() + 2;
        2 + match self {
            Self::String(s) => worst(STRING_KEY) + worst(s.expose_secret()) + 2,
            Self::Object(m) => m
                .iter()
                .map(|(k, v)| worst(k) + worst(v.expose_secret()) + 2)
                .sum(),
        }
    }

    /// Parse decrypted plaintext. `{"value": s}` alone unwraps to a string.
    ///
    /// This is on every read, so it goes straight from the JSON to the
    /// value (see [`plaintext`]): no intermediate map for the common
    /// single-string case, keys borrowed from `plaintext` when unescaped.
    /// Each string is copied once, into its `SecretString`.
    pub fn from_plaintext(plaintext: &[u8]) -> Result<Self, ValueError> {
        plaintext::parse(plaintext).ok_or(ValueError::BadPlaintext)
    }

    /// The display form stored in `masked_value`. An object shares one
    /// budget of [`MAX_REVEALED_CHARS`] across all its fields (docs/design.md §4):
    /// fields take from it in key order, and once it is spent the rest
    /// show `***`. Keys are shown.
    pub fn mask(&self) -> String {
        let out = match self {
            Self::String(s) => mask_within(s.expose_secret(), MAX_REVEALED_CHARS).0,
            Self::Object(m) => {
                let mut budget = MAX_REVEALED_CHARS;
                m.iter()
                    .map(|(k, v)| {
                        let (masked, used) = mask_within(v.expose_secret(), budget);
                        budget -= used;
                        format!("{k}: {masked}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        truncate_chars(out, MAX_MASK_CHARS)
    }

    /// The one field `key` of an object value, as a string value (a field
    /// binding, docs/design.md §6). The error names the field and the keys that
    /// exist (keys may be shown, values never).
    pub fn field(self, key: &str) -> Result<Self, FieldError> {
        match self {
            Self::String(_) => Err(FieldError::NotAnObject {
                field: key.to_string(),
            }),
            Self::Object(mut m) => match m.remove(key) {
                Some(v) => Ok(Self::String(v)),
                None => Err(FieldError::Missing {
                    field: key.to_string(),
                    keys: m.keys().cloned().collect::<Vec<_>>().join(", "),
                }),
            },
        }
    }

    /// True for a single string value.
    pub fn is_string(&self) -> bool {
        matches!(self, Self::String(_))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(_) => f.write_str("SecretValue::String([REDACTED])"),
            Self::Object(m) => f
                .debug_map()
                .entries(m.keys().map(|k| (k, "[REDACTED]")))
                .finish(),
        }
    }
}

/// Values shorter than this mask to `***`: a quarter of them would be too few
/// characters to help a person recognise the key, and too many to be safe.
const MIN_MASKABLE_CHARS: usize = 12;
/// At most this many characters of a value are ever shown.
const MAX_REVEALED_CHARS: usize = 8;

/// Show a few leading and trailing characters: never more than 8, never more
/// than a quarter of the value (docs/design.md §4). `sk-proj-abcdefghijklmnopqrstuv1234`
/// becomes `sk-p...1234`.
pub fn mask_str(value: &str) -> String {
    mask_within(value, MAX_REVEALED_CHARS).0
}

/// [`mask_str`] revealing at most `budget` characters; returns the mask
/// and how many characters it reveals.
fn mask_within(value: &str, budget: usize) -> (String, usize) {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let reveal = (n / 4).min(MAX_REVEALED_CHARS).min(budget);
    if n < MIN_MASKABLE_CHARS || reveal == 0 {
        return ("***".to_string(), 0);
    }
    let head = reveal.div_ceil(2);
    let tail = reveal - head;
    let mut out: String = chars[..head].iter().collect();
    out.push_str("...");
    out.extend(&chars[n - tail..]);
    (out, reveal)
}

/// `s` cut to `max` characters, the last three `...` when it was longer.
pub(crate) fn truncate_chars(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut t: String = s.chars().take(max - 3).collect();
    t.push_str("...");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revealed(mask: &str) -> usize {
        mask.chars().count() - 3
    }

    #[test]
    fn masks_never_reveal_more_than_a_quarter_or_eight() {
        for n in 0..200 {
            let v: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let m = mask_str(&v);
            if n < MIN_MASKABLE_CHARS {
                assert_eq!(m, "***");
            } else {
                assert!(revealed(&m) <= 8, "{n}: {m}");
                assert!(revealed(&m) * 4 <= n, "{n}: {m}");
            }
        }
        assert_eq!(
            mask_str("sk-proj-abcdefghijklmnopqrstuv1234"),
            "sk-p...1234"
        );
        assert_eq!(mask_str("short"), "***");
    }

    #[test]
    fn string_round_trip_and_wrapping() {
        let v = SecretValue::from_string("hunter2 \"quoted\"\n".into()).unwrap();
        let pt = v.to_plaintext();
        assert_eq!(&pt[..], br#"{"value":"hunter2 \"quoted\"\n"}"#);
        match SecretValue::from_plaintext(&pt).unwrap() {
            SecretValue::String(s) => assert_eq!(s.expose_secret(), "hunter2 \"quoted\"\n"),
            other => panic!("expected string, got {other:?}"),
        }
    }

    #[test]
    fn object_round_trip_sorted() {
        let v = SecretValue::from_json_text(r#"{"b":"2","a":"1"}"#).unwrap();
        assert_eq!(&v.to_plaintext()[..], br#"{"a":"1","b":"2"}"#);
        assert!(matches!(
            SecretValue::from_plaintext(&v.to_plaintext()).unwrap(),
            SecretValue::Object(m) if m.len() == 2
        ));
        // An object whose only key is "value" reads back as a string.
        let v = SecretValue::from_json_text(r#"{"value":"x"}"#).unwrap();
        assert!(
            SecretValue::from_plaintext(&v.to_plaintext())
                .unwrap()
                .is_string()
        );
    }

    #[test]
    fn bad_values_are_refused_without_echoing_them() {
        assert_eq!(
            SecretValue::from_string(String::new()).unwrap_err(),
            ValueError::Empty
        );
        let e = SecretValue::from_json_text(r#"{"k": 1234567}"#).unwrap_err();
        assert!(!e.to_string().contains("1234567"));
        assert_eq!(
            SecretValue::from_json_text("{}").unwrap_err(),
            ValueError::Empty
        );
        assert_eq!(
            SecretValue::from_json_text(r#"{"":"x"}"#).unwrap_err(),
            ValueError::EmptyKey
        );
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            SecretValue::from_string(big).unwrap_err(),
            ValueError::TooLarge
        );
    }

    #[test]
    fn debug_is_redacted() {
        let v = SecretValue::from_json_text(r#"{"api_key":"sk-live-999"}"#).unwrap();
        let d = format!("{v:?}");
        assert!(d.contains("api_key") && !d.contains("sk-live-999"), "{d}");
    }

    /// docs/design.md §4: the 8-character budget is for the whole object. Ten
    /// fields of 32 distinct characters each would reveal 80 if every field
    /// were masked on its own.
    #[test]
    fn object_mask_reveals_at_most_eight_characters_in_total() {
        let fields: BTreeMap<String, SecretString> = (0..10u8)
            .map(|i| {
                let v: String = (0..32u8)
                    .map(|j| char::from(b'A' + (i * 7 + j) % 26))
                    .collect();
                (format!("field_{i}"), SecretString::from(v))
            })
            .collect();
        let values: Vec<String> = fields
            .values()
            .map(|v| v.expose_secret().to_string())
            .collect();
        let mask = SecretValue::Object(fields).mask();
        let revealed: usize = mask
            .split(", ")
            .map(|part| {
                let shown = part.split_once(": ").expect("key: mask").1;
                shown.chars().filter(|c| *c != '.' && *c != '*').count()
            })
            .sum();
        assert!(
            revealed <= MAX_REVEALED_CHARS,
            "{revealed} revealed: {mask}"
        );
        assert!(
            revealed > 0,
            "the first field still helps recognise it: {mask}"
        );
        for v in &values {
            assert!(
                !mask.contains(&v[..9]),
                "nine characters of a value shown: {mask}"
            );
        }
    }

    #[test]
    fn dict_mask_fits_column() {
        let m: BTreeMap<String, SecretString> = (0..100)
            .map(|i| {
                (
                    format!("key_number_{i}"),
                    SecretString::from("v".repeat(40)),
                )
            })
            .collect();
        let mask = SecretValue::Object(m).mask();
        assert!(mask.chars().count() <= MAX_MASK_CHARS);
    }
}
