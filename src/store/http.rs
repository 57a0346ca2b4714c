//! [`SecretsStore`] over the REST API of a running `mlflow-secrets serve`
//! (docs/design.md §7), so the CLI behaves the same against a server as against a
//! database.
//!
//! TLS is rustls (ring) with the system's roots plus an optional private CA
//! (`super::https_client`).
//! Plain `http://` is accepted only for a loopback host: a bearer token must
//! never cross a network in clear. Values travel only in request bodies;
//! the one way back is `resolve` (a runner token's single resource), so the
//! other value-reading operations fail with `PermissionDenied` here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::audit::AuditRecord;
use super::{
    AuditFilter, BoundInfo, BoundValue, ChooseBound, ResolvedResource, Result, SecretsStore,
    StoreError,
};
use crate::model::{
    AuditEntry, BindingFilter, BindingSpec, NewBinding, NewSecret, Page, ResourceRef, Secret,
    SecretBinding, SecretFilter,
};
use crate::net::{self, UrlProblem};
use crate::value::SecretValue;
use crate::wire::{
    API_PREFIX, AuditPage, BindingResponse, BindingsPage, ErrorBody, ResolveResponse,
    SecretResponse, SecretsPage,
};

/// Environment variable holding a bearer token for the CLI.
pub const TOKEN_ENV: &str = "MLFLOW_SECRETS_TOKEN";
/// A request that takes longer than this fails as `Unavailable`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) use super::https_client::{HttpsClient, https_client};

/// The REST client store.
pub struct HttpStore {
    base: String,
    token: Option<SecretString>,
    client: HttpsClient,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStore")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Check a server URL (see [`net::check_server_url`]): the token must
/// never cross a network in clear, so no `--insecure-http` here.
fn check_base_url(base: &str) -> Result<()> {
    let Err(problem) = net::check_server_url(base, false) else {
        return Ok(());
    };
    let why = match problem {
        UrlProblem::Unparsable => "it must look like https://HOST[:PORT]",
        UrlProblem::NoHost => "it must start with https:// or http:// and name a host",
        UrlProblem::Userinfo => {
            "it must not hold a user name or password (user@host); pass the token with MLFLOW_SECRETS_TOKEN"
        }
        UrlProblem::PlainHttp => {
            return Err(StoreError::InvalidParameter(
                "plain http:// is only allowed for a loopback server: use https:// so the token is not sent in clear".into(),
            ));
        }
        UrlProblem::Scheme => {
            return Err(StoreError::InvalidParameter(
                "server URL must start with https:// or http://".into(),
            ));
        }
    };
    Err(StoreError::InvalidParameter(format!(
        "server URL is invalid: {why}"
    )))
}

impl HttpStore {
    /// A client for the server at `base_url` (`https://host[:port]`, or
    /// `http://` on loopback). `ca_pem` adds a private CA to the system roots.
    pub fn new(base_url: &str, token: Option<SecretString>, ca_pem: Option<&Path>) -> Result<Self> {
        let base = base_url.trim_end_matches('/').to_string();
        check_base_url(&base)?;
        let client = https_client(ca_pem)?;
        Ok(Self {
            base,
            token,
            client,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let mut uri = format!("{}{API_PREFIX}/{endpoint}", self.base);
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            uri.push('?');
            uri.push_str(&q.finish());
        }
        let mut req = Request::builder().method(method).uri(&uri);
        if let Some(t) = &self.token {
            let bearer = zeroize::Zeroizing::new(format!("Bearer {}", t.expose_secret()));
            let mut value = hyper::header::HeaderValue::from_str(&bearer).map_err(|_| {
                StoreError::InvalidParameter(
                    "the bearer token has characters a header cannot carry".into(),
                )
            })?;
            // Keeps the token out of any Debug output of the request.
            value.set_sensitive(true);
            req = req.header(hyper::header::AUTHORIZATION, value);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(b))),
            None => req.body(Full::new(Bytes::new())),
        }
        .map_err(|e| StoreError::InvalidParameter(format!("bad request: {e}")))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| StoreError::Unavailable(format!("{} did not answer in time", self.base)))?
            .map_err(|e| StoreError::Unavailable(format!("cannot reach {}: {e}", self.base)))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("reading the response of {}: {e}", self.base))
            })?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Database(format!("unexpected response from {endpoint}: {e}"))
            });
        }
        Err(api_error(status, &bytes, retry_after))
    }
}

/// Map an MLflow-style error body back to the store error it came from
/// (the table in [`crate::wire::ERRORS`]).
fn api_error(status: StatusCode, body: &[u8], retry_after: Option<u64>) -> StoreError {
    let Ok(e) = serde_json::from_slice::<ErrorBody<'_>>(body) else {
        return StoreError::Unavailable(format!("server answered {status}"));
    };
    StoreError::from_wire(status, &e, retry_after.map(Duration::from_secs))
}

/// Append `"value": <json>` to a JSON object body without an intermediate
/// `serde_json::Value` holding the secret.
fn body_with_value(fields: serde_json::Value, value: &SecretValue) -> Vec<u8> {
    let mut out = serde_json::to_vec(&fields).expect("serialize body");
    out.pop(); // the closing brace
    if out.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"value\":");
    out.extend_from_slice(&value.to_request_json());
    out.push(b'}');
    out
}

fn no_values() -> StoreError {
    StoreError::PermissionDenied(
        "the REST API returns values only through resolve, to a runner token; read them with direct database access or through injection".into(),
    )
}

/// The workspaces-set filter is a token's scope, applied by the server
/// from the token; a client cannot ask for it.
fn scope_filter_is_server_side() -> StoreError {
    StoreError::InvalidParameter(
        "a workspaces filter is applied by the server from the token's scope; filter by one workspace instead".into(),
    )
}

fn opt(q: &mut Vec<(&'static str, String)>, k: &'static str, v: Option<impl ToString>) {
    if let Some(v) = v {
        q.push((k, v.to_string()));
    }
}

#[async_trait]
impl SecretsStore for HttpStore {
    async fn create_secret_with(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        _actor: &str,
    ) -> Result<Secret> {
        let mut fields = json!({"secret_name": new.secret_name, "workspace": new.workspace, "is_shared": new.is_shared});
        if let Some(p) = new.provider {
            fields["provider"] = json!(p);
        }
        let body = body_with_value(fields, value);
        let r: SecretResponse = self.call(Method::POST, "create", &[], Some(body)).await?;
        Ok(r.secret)
    }

    async fn get_secret(&self, secret_id: &str) -> Result<Secret> {
        let q = [("secret_id", secret_id.to_string())];
        let r: SecretResponse = self.call(Method::GET, "get", &q, None).await?;
        Ok(r.secret)
    }

    async fn get_secret_by_name(&self, workspace: &str, secret_name: &str) -> Result<Secret> {
        let q = [
            ("secret_name", secret_name.to_string()),
            ("workspace", workspace.to_string()),
        ];
        let r: SecretResponse = self.call(Method::GET, "get", &q, None).await?;
        Ok(r.secret)
    }

    async fn get_secret_value(&self, _secret_id: &str, _actor: &str) -> Result<SecretValue> {
        Err(no_values())
    }

    async fn list_secrets(&self, f: &SecretFilter) -> Result<Page<Secret>> {
        if f.workspaces.is_some() {
            return Err(scope_filter_is_server_side());
        }
        let mut q = Vec::new();
        opt(&mut q, "workspace", f.workspace.as_ref());
        opt(&mut q, "is_shared", f.is_shared);
        opt(&mut q, "state", f.state.map(|s| s.as_str()));
        opt(&mut q, "max_results", f.max_results);
        opt(&mut q, "page_token", f.page_token.as_ref());
        let r: SecretsPage = self.call(Method::GET, "list", &q, None).await?;
        Ok(Page {
            items: r.secrets,
            next_page_token: r.next_page_token,
        })
    }

    async fn update_secret(
        &self,
        secret_id: &str,
        value: &SecretValue,
        _actor: &str,
    ) -> Result<Secret> {
        let body = body_with_value(json!({"secret_id": secret_id}), value);
        let r: SecretResponse = self.call(Method::PATCH, "update", &[], Some(body)).await?;
        Ok(r.secret)
    }

    async fn revoke_secret(&self, secret_id: &str, _actor: &str) -> Result<Secret> {
        let body = serde_json::to_vec(&json!({"secret_id": secret_id})).expect("body");
        let r: SecretResponse = self.call(Method::POST, "revoke", &[], Some(body)).await?;
        Ok(r.secret)
    }

    async fn delete_secret(&self, secret_id: &str, _actor: &str) -> Result<()> {
        let body = serde_json::to_vec(&json!({"secret_id": secret_id})).expect("body");
        let _: serde_json::Value = self.call(Method::DELETE, "delete", &[], Some(body)).await?;
        Ok(())
    }

    async fn bind_secret_with(&self, new: &NewBinding<'_>, _actor: &str) -> Result<SecretBinding> {
        let mut fields = json!({
            "secret_id": new.secret_id,
            "resource_type": new.resource_type,
            "resource_id": new.resource_id,
            "binding_name": new.binding_name,
        });
        if let Some(f) = new.value_field {
            fields["value_field"] = json!(f);
        }
        if !new.service_accounts.is_empty() {
            fields["service_accounts"] = json!(new.service_accounts);
        }
        let body = serde_json::to_vec(&fields).expect("body");
        let r: BindingResponse = self.call(Method::POST, "bind", &[], Some(body)).await?;
        Ok(r.binding)
    }

    /// Refused: the REST API (MLflow's `create` and `bind`) has no request
    /// that does both, and two requests cannot be one transaction. A
    /// client that accepts the gap (a crash or a lost connection between
    /// them leaves the secret unbound) calls `create_secret_with`, then
    /// `bind_secret_with`, itself; nothing here pretends to be atomic.
    async fn create_and_bind_secret(
        &self,
        new: &NewSecret<'_>,
        _value: &SecretValue,
        binding: &BindingSpec<'_>,
        _actor: &str,
    ) -> Result<(Secret, SecretBinding)> {
        Err(StoreError::PermissionDenied(format!(
            "secret '{}' in workspace '{}': the REST API cannot create a secret and bind it to {}/{} in one transaction; \
             create it, then bind it (two requests), or use direct database access",
            new.secret_name, new.workspace, binding.resource_type, binding.resource_id
        )))
    }

    async fn get_binding(&self, binding_id: &str) -> Result<SecretBinding> {
        let q = [("binding_id", binding_id.to_string())];
        let r: BindingResponse = self.call(Method::GET, "get-binding", &q, None).await?;
        Ok(r.binding)
    }

    async fn list_bindings(&self, f: &BindingFilter) -> Result<Page<SecretBinding>> {
        if f.workspaces.is_some() {
            return Err(scope_filter_is_server_side());
        }
        let mut q = Vec::new();
        opt(&mut q, "workspace", f.workspace.as_ref());
        opt(&mut q, "resource_type", f.resource_type.as_ref());
        opt(&mut q, "resource_id", f.resource_id.as_ref());
        opt(&mut q, "secret_id", f.secret_id.as_ref());
        opt(&mut q, "max_results", f.max_results);
        opt(&mut q, "page_token", f.page_token.as_ref());
        let r: BindingsPage = self.call(Method::GET, "list-bindings", &q, None).await?;
        Ok(Page {
            items: r.bindings,
            next_page_token: r.next_page_token,
        })
    }

    async fn unbind_secret(&self, binding_id: &str, _actor: &str) -> Result<()> {
        let body = serde_json::to_vec(&json!({"binding_id": binding_id})).expect("body");
        let _: serde_json::Value = self.call(Method::DELETE, "unbind", &[], Some(body)).await?;
        Ok(())
    }

    async fn get_secret_for_resource(
        &self,
        _res: ResourceRef<'_>,
        _binding_name: &str,
        _actor: &str,
    ) -> Result<SecretValue> {
        Err(no_values())
    }

    async fn get_all_secrets_for_resource(
        &self,
        _res: ResourceRef<'_>,
        _actor: &str,
    ) -> Result<BTreeMap<String, SecretValue>> {
        Err(no_values())
    }

    async fn resolve_resource(
        &self,
        res: ResourceRef<'_>,
        _actor: &str,
    ) -> Result<ResolvedResource> {
        let body = serde_json::to_vec(&json!({
            "workspace": res.workspace,
            "resource_type": res.resource_type,
            "resource_id": res.resource_id,
        }))
        .expect("body");
        let r: ResolveResponse = self.call(Method::POST, "resolve", &[], Some(body)).await?;
        Ok(ResolvedResource {
            values: r.values,
            injected: r.injected,
        })
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        if f.workspaces.is_some() {
            return Err(scope_filter_is_server_side());
        }
        let mut q = Vec::new();
        opt(&mut q, "secret_id", f.secret_id.as_ref());
        opt(&mut q, "workspace", f.workspace.as_ref());
        opt(&mut q, "after_seq", f.after_seq);
        opt(&mut q, "max_results", f.max_results);
        let r: AuditPage = self.call(Method::GET, "list-audit", &q, None).await?;
        Ok(r.entries)
    }

    /// The server audits its own requests; a client cannot write rows.
    async fn append_audit(&self, _rec: &AuditRecord) -> Result<()> {
        Err(StoreError::PermissionDenied(
            "the audit log is written by the server; a REST client cannot append to it".into(),
        ))
    }

    async fn get_binding_by_key(
        &self,
        res: ResourceRef<'_>,
        binding_name: &str,
    ) -> Result<Option<SecretBinding>> {
        let all = self.resource_bindings(res).await?;
        Ok(all.into_iter().find(|b| b.binding_name == binding_name))
    }

    /// Not part of the REST API: a secret's crypto columns never leave the
    /// database layer (docs/design.md §10 rule 1).
    async fn kek_version(&self, _secret_id: &str) -> Result<u32> {
        Err(StoreError::PermissionDenied(
            "the REST API does not report KEK versions; read them with direct database access (`kek status`)".into(),
        ))
    }

    /// `list-bindings` of the resource, then `get` of each bound secret.
    async fn bound_metadata(&self, res: ResourceRef<'_>) -> Result<Vec<BoundInfo>> {
        let mut out = Vec::new();
        for b in self.resource_bindings(res).await? {
            let s = self.get_secret(&b.secret_id).await?;
            out.push(BoundInfo {
                binding_name: b.binding_name,
                revoked: s.state == crate::model::SecretState::Revoked,
                secret_id: s.secret_id,
                secret_name: s.secret_name,
                last_updated_at: s.last_updated_at,
                service_accounts: b.service_accounts,
            });
        }
        Ok(out)
    }

    async fn choose_bound_values(
        &self,
        _res: ResourceRef<'_>,
        _actor: &str,
        _choose: ChooseBound<'_>,
    ) -> Result<Option<BTreeMap<String, BoundValue>>> {
        Err(no_values())
    }
}

impl HttpStore {
    /// Every binding of one resource, all pages.
    async fn resource_bindings(&self, res: ResourceRef<'_>) -> Result<Vec<SecretBinding>> {
        let mut filter = BindingFilter {
            workspace: Some(res.workspace.to_string()),
            resource_type: Some(res.resource_type.to_string()),
            resource_id: Some(res.resource_id.to_string()),
            ..Default::default()
        };
        let mut all = Vec::new();
        loop {
            let page = self.list_bindings(&filter).await?;
            all.extend(page.items);
            match page.next_page_token {
                Some(t) => filter.page_token = Some(t),
                None => return Ok(all),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(HttpStore::new("http://127.0.0.1:5005", None, None).is_ok());
        assert!(HttpStore::new("http://localhost:5005/", None, None).is_ok());
        assert!(HttpStore::new("http://[::1]:5005", None, None).is_ok());
        let e = HttpStore::new("http://secrets.internal:5005", None, None).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(HttpStore::new("https://secrets.internal", None, None).is_ok());
        assert!(HttpStore::new("ftp://x", None, None).is_err());
    }

    /// Security review finding 19: the text before the first `:` is not
    /// the host. Each of these connects somewhere other than loopback (or
    /// carries credentials), and must be refused.
    #[test]
    fn loopback_check_parses_the_uri() {
        for url in [
            "http://localhost:1@attacker.example/",
            "http://localhost@attacker.example",
            "http://127.0.0.1:5005@attacker.example:5005",
            "http://[::1]@attacker.example",
            "http://localhost.attacker.example",
            "http://127.0.0.1.nip.io",
            "https://user:pw@secrets.internal",
            "http://",
            "localhost:5005",
        ] {
            assert!(
                HttpStore::new(url, None, None).is_err(),
                "{url} was accepted"
            );
        }
        for url in [
            "http://LOCALHOST:5005",
            "http://127.8.9.1",
            "http://[::ffff:127.0.0.1]:1",
        ] {
            assert!(HttpStore::new(url, None, None).is_ok(), "{url} was refused");
        }
    }

    #[test]
    fn value_goes_in_the_body_as_json() {
        let v = SecretValue::from_string("a \"b\"".into()).unwrap();
        let body = body_with_value(json!({"secret_id": "x"}), &v);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed, json!({"secret_id": "x", "value": "a \"b\""}));
        let o = SecretValue::from_json_text(r#"{"k":"v"}"#).unwrap();
        let parsed: serde_json::Value =
            serde_json::from_slice(&body_with_value(json!({}), &o)).unwrap();
        assert_eq!(parsed, json!({"value": {"k": "v"}}));
    }

    #[test]
    fn errors_map_back_to_store_errors() {
        let e = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"slow down"}"#,
            Some(7),
        );
        assert!(
            matches!(e, StoreError::RateLimited { retry_after, .. } if retry_after.as_secs() == 7)
        );
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"m"}"#,
            None,
        );
        assert_eq!(e.error_code(), "RESOURCE_DOES_NOT_EXIST");
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>", None);
        assert!(matches!(e, StoreError::Unavailable(_)));
    }
}
