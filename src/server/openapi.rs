//! The OpenAPI 3 description of the server, served at
//! `/api/2.0/mlflow/secrets/openapi.json`.
//!
//! Hand-written rather than derived, so that the schema carries the exact
//! validation rules of the store (the patterns and lengths of
//! `store::validate`, the value size of `value.rs`): clients and contract
//! testers (schemathesis, in `scripts/schemathesis.sh`) then generate what
//! the server accepts. `tests/server/api.rs` checks that every operation
//! here is routed, and every route is described.

use serde_json::{Map, Value, json};

use super::extract::MAX_BODY_BYTES;
use crate::store::validate::{
    BINDING_NAME_PATTERN, MAX_PAGE_SIZE, PROVIDER_PATTERN, RESOURCE_ID_PATTERN,
    RESOURCE_TYPE_PATTERN, SECRET_NAME_PATTERN, SERVICE_ACCOUNT_PATTERN, VALUE_FIELD_PATTERN,
    WORKSPACE_PATTERN,
};
use crate::value::MAX_VALUE_BYTES;
use crate::wire::API_PREFIX;

const UUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

fn s(pattern: &str, max: u32) -> Value {
    json!({"type": "string", "pattern": pattern, "minLength": 1, "maxLength": max})
}

fn uuid() -> Value {
    json!({"type": "string", "pattern": UUID, "minLength": 36, "maxLength": 36})
}

fn schemas() -> Value {
    let nullable_str = json!({"type": "string", "nullable": true});
    json!({
        "Error": {
            "type": "object",
            "required": ["error_code", "message"],
            "additionalProperties": false,
            "properties": {
                "error_code": {"type": "string"},
                "message": {"type": "string"}
            }
        },
        "Value": {
            "description": "A string, or an object of strings (multi-field credentials). Never returned.",
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_BYTES},
                {"type": "object", "minProperties": 1,
                 "propertyNames": {"minLength": 1},
                 "additionalProperties": {"type": "string"}}
            ]
        },
        "Secret": {
            "type": "object",
            "additionalProperties": false,
            "required": ["secret_id", "workspace", "secret_name", "masked_value", "is_shared",
                         "state", "created_by", "created_at", "last_updated_by",
                         "last_updated_at", "revoked_by", "revoked_at"],
            "properties": {
                "secret_id": {"type": "string"},
                "workspace": {"type": "string"},
                "secret_name": {"type": "string"},
                "masked_value": {"type": "string"},
                "is_shared": {"type": "boolean"},
                "state": {"type": "string", "enum": ["ACTIVE", "REVOKED"]},
                "created_by": nullable_str,
                "created_at": {"type": "integer", "format": "int64"},
                "last_updated_by": nullable_str,
                "last_updated_at": {"type": "integer", "format": "int64"},
                "revoked_by": nullable_str,
                "revoked_at": {"type": "integer", "format": "int64", "nullable": true},
                "provider": nullable_str
            }
        },
        "Binding": {
            "type": "object",
            "additionalProperties": false,
            "required": ["binding_id", "secret_id", "workspace", "resource_type", "resource_id",
                         "binding_name", "created_by", "created_at"],
            "properties": {
                "binding_id": {"type": "string"},
                "secret_id": {"type": "string"},
                "workspace": {"type": "string"},
                "resource_type": {"type": "string"},
                "resource_id": {"type": "string"},
                "binding_name": {"type": "string"},
                "created_by": nullable_str,
                "created_at": {"type": "integer", "format": "int64"},
                "value_field": nullable_str,
                "service_accounts": {"type": "array", "items": {"type": "string"}}
            }
        },
        "AuditEntry": {
            "type": "object",
            "additionalProperties": false,
            "required": ["seq", "occurred_at", "principal", "action", "workspace", "secret_id",
                         "secret_name", "resource", "outcome", "detail", "prev_hash", "row_hash"],
            "properties": {
                "seq": {"type": "integer", "format": "int64"},
                "occurred_at": {"type": "integer", "format": "int64"},
                "principal": nullable_str,
                "action": {"type": "string"},
                "workspace": nullable_str,
                "secret_id": nullable_str,
                "secret_name": nullable_str,
                "resource": nullable_str,
                "outcome": {"type": "string", "enum": ["SUCCESS", "DENIED", "FAILED"]},
                "detail": nullable_str,
                "prev_hash": {"type": "string"},
                "row_hash": {"type": "string"}
            }
        },
        "SecretResponse": {
            "type": "object", "additionalProperties": false, "required": ["secret"],
            "properties": {"secret": {"$ref": "#/components/schemas/Secret"}}
        },
        "BindingResponse": {
            "type": "object", "additionalProperties": false, "required": ["binding"],
            "properties": {"binding": {"$ref": "#/components/schemas/Binding"}}
        },
        "SecretsPage": {
            "type": "object", "additionalProperties": false, "required": ["secrets"],
            "properties": {
                "secrets": {"type": "array", "items": {"$ref": "#/components/schemas/Secret"}},
                "next_page_token": {"type": "string"}
            }
        },
        "BindingsPage": {
            "type": "object", "additionalProperties": false, "required": ["bindings"],
            "properties": {
                "bindings": {"type": "array", "items": {"$ref": "#/components/schemas/Binding"}},
                "next_page_token": {"type": "string"}
            }
        },
        "ResolveResponse": {
            "description": "The values the webhook would inject for one resource (the one endpoint that returns plaintext; runner tokens only)",
            "type": "object", "additionalProperties": false, "required": ["values", "injected"],
            "properties": {
                "values": {"type": "object", "additionalProperties": {"type": "string"}},
                "injected": {"type": "array", "items": {
                    "type": "object", "additionalProperties": false,
                    "required": ["binding_name", "secret_id", "version"],
                    "properties": {
                        "binding_name": {"type": "string"},
                        "secret_id": {"type": "string"},
                        "version": {"type": "integer", "format": "int64"}
                    }
                }}
            }
        },
        "AuditPage": {
            "type": "object", "additionalProperties": false, "required": ["entries"],
            "properties": {
                "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}
            }
        },
        "Empty": {"type": "object", "additionalProperties": false, "properties": {}},
        "Health": {
            "type": "object",
            "required": ["status", "auth", "store", "keystore"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "auth": {"type": "string", "enum": ["ok", "invalid", "anonymous"],
                         "description": "invalid: the tokens file is missing, unreadable or has a bad line, and no token is accepted"},
                "version": {"type": "string"},
                "store": {"type": "object", "required": ["reachable"],
                          "properties": {"reachable": {"type": "boolean"}, "dialect": {"type": "string"}}},
                "keystore": {"type": "object", "required": ["loaded", "test_mode"],
                             "properties": {"loaded": {"type": "boolean"},
                                            "active_version": {"type": "integer", "nullable": true},
                                            "test_mode": {"type": "boolean"}}}
            }
        }
    })
}

fn error_response(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The responses of an API operation: `ok` on 200, and every error the
/// server may answer with.
fn responses(ok: &str, body: bool) -> Value {
    let mut r = Map::new();
    r.insert(
        "200".into(),
        json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{ok}")}}}}),
    );
    for (code, desc) in [
        ("400", "INVALID_PARAMETER_VALUE or RESOURCE_ALREADY_EXISTS"),
        ("401", "UNAUTHENTICATED: no or bad bearer token"),
        (
            "403",
            "PERMISSION_DENIED: the principal's role may not call this, or the object is outside its token's workspaces",
        ),
        ("404", "RESOURCE_DOES_NOT_EXIST"),
        (
            "409",
            "RESOURCE_CONFLICT, for example an operation on a revoked secret",
        ),
        (
            "500",
            "INTERNAL_ERROR (the message carries only an incident id)",
        ),
        (
            "503",
            "TEMPORARILY_UNAVAILABLE: the database cannot be reached",
        ),
    ] {
        r.insert(code.into(), error_response(desc));
    }
    let mut limited = error_response("REQUEST_LIMIT_EXCEEDED");
    limited["headers"] = json!({"Retry-After": {"description": "Seconds to wait", "required": true,
                                                  "schema": {"type": "integer", "minimum": 1}}});
    r.insert("429".into(), limited);
    if body {
        r.insert(
            "413".into(),
            error_response(&format!("The body is larger than {MAX_BODY_BYTES} bytes")),
        );
        r.insert(
            "415".into(),
            error_response("The body is not application/json"),
        );
    }
    Value::Object(r)
}

fn body_op(id: &str, summary: &str, ok: &str, required: &[&str], props: Value) -> Value {
    json!({
        "operationId": id,
        "summary": summary,
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": false, "required": required, "properties": props
        }}}},
        "responses": responses(ok, true)
    })
}

fn query_op(id: &str, summary: &str, ok: &str, params: &[(&str, Value, bool)]) -> Value {
    let params: Vec<Value> = params
        .iter()
        .map(|(name, schema, required)| {
            json!({"name": name, "in": "query", "required": required, "schema": schema})
        })
        .collect();
    json!({"operationId": id, "summary": summary, "parameters": params, "responses": responses(ok, false)})
}

fn paths() -> Value {
    let ws = s(WORKSPACE_PATTERN, 63);
    let name = s(SECRET_NAME_PATTERN, 255);
    let max = json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE});
    let token = json!({"type": "string", "minLength": 1});
    let value = json!({"$ref": "#/components/schemas/Value"});
    let id_only = json!({"secret_id": uuid()});
    let p = |op: &str| format!("{API_PREFIX}/{op}");
    let mut m = Map::new();
    m.insert(p("create"), json!({"post": body_op("createSecret", "Create a secret (the value is encrypted; never returned)", "SecretResponse",
        &["secret_name", "value"],
        json!({"secret_name": name, "value": value, "is_shared": {"type": "boolean"}, "workspace": ws,
               "provider": s(PROVIDER_PATTERN, 64)}))}));
    m.insert(
        p("update"),
        json!({"patch": body_op("updateSecret", "Replace a secret's value", "SecretResponse",
        &["secret_id", "value"], json!({"secret_id": uuid(), "value": value}))}),
    );
    m.insert(
        p("revoke"),
        json!({"post": body_op("revokeSecret", "Revoke a secret (one-way)", "SecretResponse",
        &["secret_id"], id_only.clone())}),
    );
    m.insert(
        p("delete"),
        json!({"delete": body_op("deleteSecret", "Delete a secret and its bindings", "Empty",
        &["secret_id"], id_only)}),
    );
    m.insert(
        p("bind"),
        json!({"post": body_op("bindSecret", "Bind a secret to a resource", "BindingResponse",
        &["secret_id", "resource_id", "binding_name"],
        json!({"secret_id": uuid(), "resource_type": s(RESOURCE_TYPE_PATTERN, 50),
               "resource_id": s(RESOURCE_ID_PATTERN, 255), "binding_name": s(BINDING_NAME_PATTERN, 255),
               "value_field": s(VALUE_FIELD_PATTERN, 255),
               "service_accounts": {"type": "array", "maxItems": 64,
                                    "items": s(SERVICE_ACCOUNT_PATTERN, 253)}}))}),
    );
    m.insert(
        p("resolve"),
        json!({"post": body_op("resolve",
        "The values injected for one resource (runner tokens of exactly that workspace and resource only; TLS unless loopback; audited)",
        "ResolveResponse", &["resource_id"],
        json!({"workspace": ws.clone(), "resource_type": s(RESOURCE_TYPE_PATTERN, 50), "resource_id": s(RESOURCE_ID_PATTERN, 255)}))}),
    );
    m.insert(
        p("unbind"),
        json!({"delete": body_op("unbindSecret", "Remove a binding", "Empty",
        &["binding_id"], json!({"binding_id": uuid()}))}),
    );
    m.insert(p("get"), json!({"get": query_op("getSecret",
        "A secret's metadata, by secret_id or by secret_name (+ workspace, default 'default')", "SecretResponse",
        &[("secret_id", uuid(), false), ("secret_name", name.clone(), false), ("workspace", ws.clone(), false)])}));
    m.insert(p("list"), json!({"get": query_op("listSecrets", "List secrets (all workspaces unless one is given)", "SecretsPage",
        &[("workspace", ws.clone(), false), ("is_shared", json!({"type": "boolean"}), false),
          ("state", json!({"type": "string", "enum": ["ACTIVE", "REVOKED"]}), false),
          ("max_results", max.clone(), false), ("page_token", token.clone(), false)])}));
    m.insert(
        p("get-binding"),
        json!({"get": query_op("getBinding", "A binding", "BindingResponse",
        &[("binding_id", uuid(), true)])}),
    );
    m.insert(
        p("list-bindings"),
        json!({"get": query_op("listBindings", "List bindings", "BindingsPage",
        &[("workspace", ws.clone(), false), ("resource_type", s(RESOURCE_TYPE_PATTERN, 50), false),
          ("resource_id", s(RESOURCE_ID_PATTERN, 255), false), ("secret_id", uuid(), false),
          ("max_results", max.clone(), false), ("page_token", token, false)])}),
    );
    m.insert(
        p("list-audit"),
        json!({"get": query_op("listAudit", "The audit log, in order (admin only)", "AuditPage",
        &[("secret_id", uuid(), false), ("workspace", ws, false),
          ("after_seq", json!({"type": "integer", "format": "int64", "minimum": 0}), false),
          ("max_results", max, false)])}),
    );
    m.insert("/health".into(), json!({"get": {
        "operationId": "health", "summary": "Liveness and readiness: store reachable, keystore loaded", "security": [],
        "responses": {
            "200": {"description": "Healthy", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
            "503": {"description": "Degraded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
        }}}));
    m.insert("/metrics".into(), json!({"get": {
        "operationId": "metrics", "summary": "Prometheus metrics", "security": [],
        "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}}));
    Value::Object(m)
}

/// The whole document.
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "mlflow-secrets",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Encrypted secrets store for MLflow. MLflow REST conventions: query parameters for GET, a JSON body otherwise (Content-Type: application/json), errors as {\"error_code\", \"message\"}. X-MLFLOW-WORKSPACE is the default workspace of a request. Only resolve returns secret values, to a runner token."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas()
        }
    })
}

/// Every (method, path) the document describes, for the route tests.
pub fn operations() -> Vec<(String, String)> {
    let doc = document();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.push((method.to_uppercase(), path.clone()));
        }
    }
    out
}
