//! MLflow's REST API for gateway secrets (`/api/3.0/mlflow/gateway/secrets/
//! {list,create,update}`, MLflow 3.8+), authenticated as MLflow's own
//! clients are (`MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD`).
//!
//! Shapes, from MLflow 3.17.2's `server/handlers.py` and `service.proto`:
//! `list` is a GET answering `{"secrets": [GatewaySecretInfo]}` (the key is
//! absent when there are none); `create` is a POST of `{"secret_name",
//! "secret_value": {k: v}, "provider"?}` and `update` a POST of
//! `{"secret_id", "secret_value"}`, both answering `{"secret":
//! GatewaySecretInfo}`; errors are `{"error_code", "message"}`.
//!
//! The value travels only in a request body held in a zeroizing buffer;
//! errors name the server, the HTTP status and MLflow's `error_code`, and
//! MLflow's message only when it contains no part of the value.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::{MlflowError, Result};
use crate::net::{self, UrlProblem};
use crate::store::http::{HttpsClient, https_client};
use crate::value::SecretValue;

/// MLflow's token variable (bearer auth).
pub const TOKEN_ENV: &str = "MLFLOW_TRACKING_TOKEN";
/// MLflow's basic-auth user variable.
pub const USERNAME_ENV: &str = "MLFLOW_TRACKING_USERNAME";
/// MLflow's basic-auth password variable.
pub const PASSWORD_ENV: &str = "MLFLOW_TRACKING_PASSWORD";
/// MLflow's CA bundle variable for an https tracking server.
pub const CA_ENV: &str = "MLFLOW_TRACKING_SERVER_CERT_PATH";
/// The header MLflow clients name their workspace in.
pub const WORKSPACE_HEADER: &str = "X-MLFLOW-WORKSPACE";

const PREFIX: &str = "/api/3.0/mlflow/gateway/secrets";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The key a single-string value is pushed under (DESIGN §13).
pub const STRING_VALUE_KEY: &str = "api_key";

/// How to authenticate to MLflow.
pub enum MlflowAuth {
    None,
    Bearer(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
}

impl std::fmt::Debug for MlflowAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "MlflowAuth::None",
            Self::Bearer(_) => "MlflowAuth::Bearer([REDACTED])",
            Self::Basic { .. } => "MlflowAuth::Basic([REDACTED])",
        })
    }
}

impl MlflowAuth {
    /// As MLflow's client reads it: a token first, else user and password.
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(t) = get(TOKEN_ENV) {
            return Self::Bearer(SecretString::from(t));
        }
        match (get(USERNAME_ENV), get(PASSWORD_ENV)) {
            (Some(u), Some(p)) => Self::Basic {
                username: u,
                password: SecretString::from(p),
            },
            _ => Self::None,
        }
    }

    fn header(&self) -> Result<Option<HeaderValue>> {
        use base64::Engine;
        let text = match self {
            Self::None => return Ok(None),
            Self::Bearer(t) => Zeroizing::new(format!("Bearer {}", t.expose_secret())),
            Self::Basic { username, password } => {
                let pair = Zeroizing::new(format!("{username}:{}", password.expose_secret()));
                Zeroizing::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
                ))
            }
        };
        let mut v = HeaderValue::from_str(&text).map_err(|_| {
            MlflowError::InvalidUri(
                "the MLflow credentials hold characters an HTTP header cannot carry".into(),
            )
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }
}

/// A gateway secret's metadata as MLflow returns it (never a value).
#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySecretInfo {
    pub secret_id: String,
    pub secret_name: String,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(default)]
    secrets: Vec<GatewaySecretInfo>,
}

#[derive(Deserialize)]
struct SecretResponse {
    secret: GatewaySecretInfo,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A client of one MLflow server, for one workspace.
pub struct GatewayClient {
    base: String,
    auth: MlflowAuth,
    workspace: String,
    client: HttpsClient,
    /// Whether requests carry `X-MLFLOW-WORKSPACE`: learnt once from
    /// MLflow's `server-info` (see [`GatewayClient::list`]).
    send_workspace: std::sync::OnceLock<bool>,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("base", &self.base)
            .field("auth", &self.auth)
            .field("workspace", &self.workspace)
            .finish()
    }
}

impl GatewayClient {
    /// A client for `tracking_uri`: `https://`, or `http://` to a loopback
    /// host (a value must not cross a network in clear) unless
    /// `allow_http` says the network is trusted. `ca_pem` adds a CA.
    pub fn new(
        tracking_uri: &str,
        auth: MlflowAuth,
        workspace: &str,
        ca_pem: Option<&Path>,
        allow_http: bool,
    ) -> Result<Self> {
        let base = tracking_uri.trim_end_matches('/').to_string();
        check_tracking_uri(&base, allow_http)?;
        let client = https_client(ca_pem).map_err(|e| MlflowError::InvalidUri(e.to_string()))?;
        Ok(Self {
            base,
            auth,
            workspace: workspace.to_string(),
            client,
            send_workspace: std::sync::OnceLock::new(),
        })
    }

    /// The server's address, as given (no credentials: they are refused in it).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Every gateway secret of the workspace. The first call asks MLflow's
    /// `server-info` whether it has workspaces: a server without them
    /// refuses `X-MLFLOW-WORKSPACE` (FEATURE_DISABLED) and has a single
    /// workspace, which every workspace of ours then maps onto; with them,
    /// the header names ours. A server too old to answer gets the header
    /// only for a workspace other than `default`, as MLflow's clients do.
    pub async fn list(&self) -> Result<Vec<GatewaySecretInfo>> {
        if self.send_workspace.get().is_none() {
            let enabled = self.workspaces_enabled().await?;
            let send = enabled.unwrap_or(self.workspace != crate::model::DEFAULT_WORKSPACE);
            let _ = self.send_workspace.set(send);
        }
        let r: ListResponse = self.call(Method::GET, "list", None, None).await?;
        Ok(r.secrets)
    }

    /// `server-info`'s `workspaces_enabled`; `None` when the server does not
    /// say (no such endpoint). Unreachable is an error.
    async fn workspaces_enabled(&self) -> Result<Option<bool>> {
        #[derive(Deserialize)]
        struct Info {
            workspaces_enabled: Option<bool>,
        }
        let uri = format!("{}/api/3.0/mlflow/server-info", self.base);
        let req = Request::builder()
            .method(Method::GET)
            .uri(&uri)
            .body(Full::new(Bytes::new()))
            .map_err(|_| MlflowError::InvalidUri(format!("{}: not a valid URL", self.base)))?;
        let (status, bytes) = self.send(req).await?;
        if !status.is_success() {
            return Ok(None);
        }
        Ok(serde_json::from_slice::<Info>(&bytes)
            .ok()
            .and_then(|i| i.workspaces_enabled))
    }

    /// Create a gateway secret holding `value`.
    pub async fn create(
        &self,
        name: &str,
        value: &SecretValue,
        provider: Option<&str>,
    ) -> Result<GatewaySecretInfo> {
        let mut head = serde_json::json!({ "secret_name": name });
        if let Some(p) = provider {
            head["provider"] = serde_json::json!(p);
        }
        let body = body_with_secret_value(head, value);
        let r: SecretResponse = self
            .call(Method::POST, "create", Some(body), Some(value))
            .await?;
        Ok(r.secret)
    }

    /// Replace the value of gateway secret `secret_id`.
    pub async fn update(&self, secret_id: &str, value: &SecretValue) -> Result<GatewaySecretInfo> {
        let body = body_with_secret_value(serde_json::json!({ "secret_id": secret_id }), value);
        let r: SecretResponse = self
            .call(Method::POST, "update", Some(body), Some(value))
            .await?;
        Ok(r.secret)
    }

    /// Send `req` within [`REQUEST_TIMEOUT`]: its status and whole body.
    async fn send(&self, req: Request<Full<Bytes>>) -> Result<(hyper::StatusCode, Bytes)> {
        let unreachable = |why: String| MlflowError::Unreachable {
            url: self.base.clone(),
            why,
        };
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(connect_error_text(&e)))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the response: {e}")))?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<Zeroizing<Vec<u8>>>,
        value: Option<&SecretValue>,
    ) -> Result<T> {
        let uri = format!("{}{PREFIX}/{endpoint}", self.base);
        let mut req = Request::builder().method(method).uri(&uri);
        if let Some(h) = self.auth.header()? {
            req = req.header(hyper::header::AUTHORIZATION, h);
        }
        // See `list`: only a server with workspaces gets the header.
        let send = *self
            .send_workspace
            .get_or_init(|| self.workspace != crate::model::DEFAULT_WORKSPACE);
        if send {
            req = req.header(WORKSPACE_HEADER, &self.workspace);
        }
        let req = match body {
            // The request owns its copy of the body until it is sent; the
            // zeroizing buffer is wiped here.
            Some(b) => req
                .header("content-type", "application/json")
                .body(Full::new(Bytes::copy_from_slice(&b))),
            None => req.body(Full::new(Bytes::new())),
        }
        .map_err(|_| MlflowError::InvalidUri(format!("{}: not a valid URL", self.base)))?;
        let (status, bytes) = self.send(req).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| MlflowError::BadResponse {
                url: self.base.clone(),
                endpoint: endpoint.to_string(),
            });
        }
        let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
            error_code: None,
            message: None,
        });
        let error_code = err
            .error_code
            .unwrap_or_else(|| "(no MLflow error body)".into());
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(MlflowError::Auth {
                url: self.base.clone(),
                status: status.as_u16(),
                error_code,
            });
        }
        Err(MlflowError::Api {
            url: self.base.clone(),
            status: status.as_u16(),
            error_code,
            detail: safe_message(err.message.as_deref(), value),
        })
    }
}

/// A connection error's chain, without the request (hyper's errors never
/// hold a body).
fn connect_error_text(e: &hyper_util::client::legacy::Error) -> String {
    let mut out = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// `": <message>"` for MLflow's message, on one line and short, unless it
/// contains any string of the value (a server may echo its input).
fn safe_message(message: Option<&str>, value: Option<&SecretValue>) -> String {
    let Some(m) = message.map(str::trim).filter(|m| !m.is_empty()) else {
        return String::new();
    };
    if let Some(v) = value {
        let leaks = match v {
            SecretValue::String(s) => m.contains(s.expose_secret()),
            SecretValue::Object(map) => map.values().any(|s| m.contains(s.expose_secret())),
        };
        if leaks {
            return String::new();
        }
    }
    let one_line: Vec<&str> = m.split_whitespace().collect();
    let mut text = one_line.join(" ");
    if text.chars().count() > 300 {
        text = text.chars().take(300).collect::<String>() + "...";
    }
    format!(": {text}")
}

/// `head` (a JSON object) with `"secret_value": {...}` appended, in a
/// zeroizing buffer sized so it never reallocates (a reallocation would
/// leave an unwiped copy). A string value is pushed as `{"api_key": s}`.
fn body_with_secret_value(head: serde_json::Value, value: &SecretValue) -> Zeroizing<Vec<u8>> {
    let head = serde_json::to_vec(&head).expect("serialize body");
    let pairs: Vec<(&str, &str)> = match value {
        SecretValue::String(s) => vec![(STRING_VALUE_KEY, s.expose_secret())],
        SecretValue::Object(m) => m
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect(),
    };
    let worst: usize = pairs.iter().map(|(k, v)| 6 * (k.len() + v.len()) + 8).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(head.len() + worst + 32));
    out.extend_from_slice(&head[..head.len() - 1]);
    if head.len() > 2 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"secret_value\":{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k).expect("write to vec");
        out.push(b':');
        serde_json::to_writer(&mut *out, v).expect("write to vec");
    }
    out.extend_from_slice(b"}}");
    out
}

/// `https://HOST[:PORT][/PATH]`, or `http://` to loopback (or anywhere with
/// `allow_http`); never credentials in the URL.
fn check_tracking_uri(base: &str, allow_http: bool) -> Result<()> {
    let Err(problem) = net::check_server_url(base, allow_http) else {
        return Ok(());
    };
    let why = match problem {
        UrlProblem::Unparsable => "it must look like https://HOST[:PORT]".to_string(),
        UrlProblem::NoHost => "it must start with https:// or http:// and name a host".to_string(),
        UrlProblem::Userinfo => format!(
            "it must not hold a user name or password; use {TOKEN_ENV} or {USERNAME_ENV}/{PASSWORD_ENV}"
        ),
        UrlProblem::PlainHttp => "plain http:// is allowed only to a loopback host: the value travels in the request body; \
             use https:// (or --insecure-http on a network you trust)"
            .to_string(),
        UrlProblem::Scheme => "it must start with https:// or http://".to_string(),
    };
    Err(MlflowError::InvalidUri(format!(
        "tracking URI is invalid: {why}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shapes() {
        let v = SecretValue::from_string("sk-\"x".into()).unwrap();
        let b = body_with_secret_value(serde_json::json!({"secret_name": "n"}), &v);
        let j: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"secret_name": "n", "secret_value": {"api_key": "sk-\"x"}})
        );
        let v = SecretValue::from_json_text(r#"{"api_key":"k","api_base":"b\u00e9"}"#).unwrap();
        let b = body_with_secret_value(serde_json::json!({"secret_id": "s-1"}), &v);
        let j: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"secret_id": "s-1", "secret_value": {"api_base": "b\u{e9}", "api_key": "k"}})
        );
    }

    #[test]
    fn tracking_uri_rules() {
        assert!(check_tracking_uri("https://mlflow.example", false).is_ok());
        assert!(check_tracking_uri("http://127.0.0.1:5000", false).is_ok());
        assert!(check_tracking_uri("http://mlflow.example:5000", false).is_err());
        assert!(check_tracking_uri("http://mlflow.example:5000", true).is_ok());
        let e = check_tracking_uri("https://u:hunter2@mlflow.example", false)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn messages_that_echo_the_value_are_dropped() {
        let v = SecretValue::from_string("sk-topsecret-123".into()).unwrap();
        assert_eq!(safe_message(Some("bad sk-topsecret-123"), Some(&v)), "");
        assert_eq!(
            safe_message(Some("name\ntoo long"), Some(&v)),
            ": name too long"
        );
        assert_eq!(safe_message(None, Some(&v)), "");
    }
}
