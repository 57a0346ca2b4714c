//! Request bodies and query strings of the API (docs/design.md §7), as serde types.
//!
//! Every type denies unknown fields, so a typo (`secret_nmae`) is a 400
//! naming the field rather than a silently ignored parameter. Optional body
//! fields have defaults instead of `Option`, so an explicit `null` is
//! refused like any other wrong type. The body types that hold a value do
//! not implement `Debug`, and the value goes straight into `SecretString`s.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::model::{DEFAULT_RESOURCE_TYPE, SecretState};
use crate::value::{SecretValue, ValueError};

fn default_resource_type() -> String {
    DEFAULT_RESOURCE_TYPE.to_string()
}

/// The `value` field: a string or an object of strings, deserialized
/// directly into `SecretString`s (no intermediate untagged buffer).
/// Validation (empty, size) happens in [`ValueField::into_value`], so that a
/// refused value can still be audited against its secret.
pub struct ValueField(SecretValue);

impl ValueField {
    /// The value, checked against the rules of `SecretValue`.
    pub fn into_value(self) -> Result<SecretValue, ValueError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

impl<'de> Deserialize<'de> for ValueField {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValueField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an object of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ValueField, E> {
                Ok(ValueField(SecretValue::String(SecretString::from(
                    s.to_owned(),
                ))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<ValueField, E> {
                Ok(ValueField(SecretValue::String(SecretString::from(s))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ValueField, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, SecretString>()? {
                    if out.insert(k, v).is_some() {
                        return Err(de::Error::custom("value has a duplicate key"));
                    }
                }
                Ok(ValueField(SecretValue::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// `POST create`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub secret_name: String,
    pub value: ValueField,
    #[serde(default)]
    pub is_shared: bool,
    /// Absent: the `X-MLFLOW-WORKSPACE` header, else `default`.
    #[serde(default, deserialize_with = "some_string")]
    pub workspace: Option<String>,
    /// The LLM provider (docs/design.md §2); absent means none (an explicit
    /// `null` is refused, as the OpenAPI schema says).
    #[serde(default, deserialize_with = "some_string")]
    pub provider: Option<String>,
}

/// `POST resolve`: one resource's injected values (runner tokens only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// Absent: the `X-MLFLOW-WORKSPACE` header, else `default`.
    #[serde(default, deserialize_with = "some_string")]
    pub workspace: Option<String>,
    #[serde(default = "default_resource_type")]
    pub resource_type: String,
    pub resource_id: String,
}

/// An optional string field that refuses an explicit `null`, like the
/// other optional body fields.
fn some_string<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// `PATCH update`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub secret_id: String,
    pub value: ValueField,
}

/// `POST revoke` and `DELETE delete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretIdRequest {
    pub secret_id: String,
}

/// `POST bind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    pub secret_id: String,
    #[serde(default = "default_resource_type")]
    pub resource_type: String,
    pub resource_id: String,
    pub binding_name: String,
    /// Inject this one field of an object value (docs/design.md §6); absent
    /// means the whole value (an explicit `null` is refused).
    #[serde(default, deserialize_with = "some_string")]
    pub value_field: Option<String>,
    /// Only pods of these ServiceAccounts receive the binding (docs/design.md §8).
    #[serde(default)]
    pub service_accounts: Vec<String>,
}

/// `DELETE unbind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnbindRequest {
    pub binding_id: String,
}

/// `GET get`: by id, or by name in a workspace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    pub secret_id: Option<String>,
    pub secret_name: Option<String>,
    pub workspace: Option<String>,
}

/// `GET get-binding`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetBindingQuery {
    pub binding_id: String,
}

/// `GET list`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub workspace: Option<String>,
    pub is_shared: Option<bool>,
    pub state: Option<SecretState>,
    pub max_results: Option<u32>,
    pub page_token: Option<String>,
}

/// `GET list-bindings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListBindingsQuery {
    pub workspace: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub secret_id: Option<String>,
    pub max_results: Option<u32>,
    pub page_token: Option<String>,
}

/// `GET list-audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListAuditQuery {
    pub secret_id: Option<String>,
    pub workspace: Option<String>,
    pub after_seq: Option<i64>,
    pub max_results: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_field_forms() {
        let r: CreateRequest =
            serde_json::from_str(r#"{"secret_name":"a","value":"sk-1"}"#).unwrap();
        assert!(r.value.into_value().unwrap().is_string());
        assert_eq!(r.workspace, None);
        let r: CreateRequest =
            serde_json::from_str(r#"{"secret_name":"a","value":{"k":"v","j":"w"}}"#).unwrap();
        assert!(matches!(r.value.into_value().unwrap(), SecretValue::Object(m) if m.len() == 2));
        for bad in [
            r#"{"secret_name":"a","value":5}"#,
            r#"{"secret_name":"a","value":{"k":5}}"#,
            r#"{"secret_name":"a","value":["x"]}"#,
            r#"{"secret_name":"a","value":"x","is_shared":null}"#,
            r#"{"secret_name":"a","value":"x","extra":1}"#,
            r#"{"secret_name":"a","value":"x","workspace":null}"#,
            r#"{"secret_name":"a","value":"x","provider":null}"#,
        ] {
            assert!(serde_json::from_str::<CreateRequest>(bad).is_err(), "{bad}");
        }
        let bind_null_field =
            r#"{"secret_id":"s","resource_id":"r","binding_name":"A","value_field":null}"#;
        assert!(serde_json::from_str::<BindRequest>(bind_null_field).is_err());
        let r: CreateRequest = serde_json::from_str(r#"{"secret_name":"a","value":""}"#).unwrap();
        assert_eq!(r.value.into_value().err(), Some(ValueError::Empty));
        let r: CreateRequest =
            serde_json::from_str(r#"{"secret_name":"a","value":{"":"x"}}"#).unwrap();
        assert_eq!(r.value.into_value().err(), Some(ValueError::EmptyKey));
    }
}
