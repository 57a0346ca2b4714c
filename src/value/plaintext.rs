//! Decoding the decrypted plaintext (`{"key": "string", ...}`) into a
//! [`SecretValue`] without an intermediate map.
//!
//! serde's derived `BTreeMap<String, SecretString>` allocated a map node and
//! an owned key for every read, then took the map apart again for the usual
//! `{"value": ...}` string; that was a fifth of `decrypt_secret`. This
//! visitor reads the first entry, and only builds a map when a second one
//! follows. The semantics are the map's: a repeated key keeps its last
//! value, and an object whose only key is `value` is a string.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::{STRING_KEY, SecretValue};

/// Parse `plaintext`; `None` when it is not a non-empty JSON object of
/// strings. The caller names the error; serde's message is dropped because
/// it may quote the input.
pub(super) fn parse(plaintext: &[u8]) -> Option<SecretValue> {
    if let Some(s) = plain_string(plaintext) {
        return Some(SecretValue::String(SecretString::from(s.to_owned())));
    }
    let mut de = serde_json::Deserializer::from_slice(plaintext);
    let value = de.deserialize_map(ValueVisitor).ok()?;
    de.end().ok()?;
    Some(value)
}

/// The common case in its canonical form, as [`SecretValue::to_plaintext`]
/// writes a string: `{"value":"…"}` whose string has nothing to unescape
/// (no `"`, no backslash, no control character). JSON gives such a string its
/// bytes verbatim, so this is exactly what serde_json would return, without
/// its tokenizer; anything else (escapes, spacing, other keys, MLflow's
/// `json.dumps` form) goes to serde_json.
fn plain_string(plaintext: &[u8]) -> Option<&str> {
    const HEAD: &[u8] = b"{\"value\":\"";
    const TAIL: &[u8] = b"\"}";
    let inner = plaintext.strip_prefix(HEAD)?.strip_suffix(TAIL)?;
    if inner.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    std::str::from_utf8(inner).ok()
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = SecretValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<SecretValue, A::Error> {
        let Some(first_key) = entries.next_key_seed(KeySeed)? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let first_value: SecretString = entries.next_value()?;
        let Some(second_key) = entries.next_key_seed(KeySeed)? else {
            return Ok(if first_key == STRING_KEY {
                SecretValue::String(first_value)
            } else {
                SecretValue::Object(BTreeMap::from([(first_key.into_owned(), first_value)]))
            });
        };
        let mut map = BTreeMap::new();
        map.insert(first_key.into_owned(), first_value);
        map.insert(second_key.into_owned(), entries.next_value()?);
        while let Some(key) = entries.next_key_seed(KeySeed)? {
            map.insert(key.into_owned(), entries.next_value()?);
        }
        // A repeated `value` key can still leave a single-string object.
        if map.len() == 1
            && let Some(s) = map.remove(STRING_KEY)
        {
            return Ok(SecretValue::String(s));
        }
        Ok(SecretValue::Object(map))
    }
}

/// A key, borrowed from the plaintext when it has no escapes. Keys are not
/// secret (they are shown in masks and errors), so the owned case needs no
/// zeroizing.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn string(pt: &str) -> String {
        match parse(pt.as_bytes()) {
            Some(SecretValue::String(s)) => s.expose_secret().to_string(),
            other => panic!("expected a string from {pt}, got {other:?}"),
        }
    }

    fn keys(pt: &str) -> Vec<String> {
        match parse(pt.as_bytes()) {
            Some(SecretValue::Object(m)) => m.keys().cloned().collect(),
            other => panic!("expected an object from {pt}, got {other:?}"),
        }
    }

    #[test]
    fn single_value_key_is_a_string() {
        assert_eq!(string(r#"{"value":"sk-1"}"#), "sk-1");
        assert_eq!(string(r#" { "value" : "a\"b\u00e9" } "#), "a\"b\u{e9}");
        assert_eq!(string(r#"{"val\u0075e":"x"}"#), "x");
        // The map's rule for a repeated key: the last one wins.
        assert_eq!(string(r#"{"value":"a","value":"b"}"#), "b");
    }

    /// The canonical form takes the shortcut; whatever it declines must
    /// still parse the same through serde_json.
    #[test]
    fn shortcut_agrees_with_serde_json() {
        assert_eq!(plain_string(br#"{"value":"sk-1"}"#), Some("sk-1"));
        assert_eq!(plain_string(r#"{"value":"é ü"}"#.as_bytes()), Some("é ü"));
        for declined in [
            r#"{"value":"a\nb"}"#,
            r#"{"value":"a\"b"}"#,
            r#"{"value": "x"}"#,
            r#"{"value":"x","value":"y"}"#,
            r#"{"value":"x"} "#,
        ] {
            assert_eq!(plain_string(declined.as_bytes()), None, "{declined}");
        }
        assert_eq!(string(r#"{"value":"a\nb"}"#), "a\nb");
        assert_eq!(string(r#"{"value":"x","value":"y"}"#), "y");
        // A raw control character is not JSON: neither path accepts it.
        assert!(parse(b"{\"value\":\"a\nb\"}").is_none());
        // Nor is invalid UTF-8.
        assert!(parse(b"{\"value\":\"\xff\"}").is_none());
    }

    #[test]
    fn objects_keep_every_key_sorted() {
        assert_eq!(keys(r#"{"api_key":"k"}"#), ["api_key"]);
        assert_eq!(
            keys(r#"{"b":"2","a":"1","value":"3"}"#),
            ["a", "b", "value"]
        );
        assert_eq!(keys(r#"{"a":"1","a":"2"}"#), ["a"]);
    }

    #[test]
    fn refuses_what_is_not_an_object_of_strings() {
        for bad in [
            "",
            "{}",
            r#""value""#,
            r#"{"value":1}"#,
            r#"{"value":"x"} trailing"#,
            r#"{"value":"x""#,
            r#"["value","x"]"#,
            r#"{"a":"1","b":null}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
