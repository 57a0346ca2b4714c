//! Short forms of the store calls the cases make over and over: workspace
//! `default`, actor [`ACTOR`], the outcome unwrapped (the `_err` forms
//! expect a failure and return the error to assert on). The cases that
//! need another workspace, actor or outcome call the trait directly.

use mlflow_secrets::model::ResourceRef;
use std::collections::BTreeMap;

use mlflow_secrets::model::{AuditEntry, BindingFilter, Page, Secret, SecretBinding, SecretFilter};
use mlflow_secrets::store::{AuditFilter, SecretsStore, StoreError};
use mlflow_secrets::value::SecretValue;
use tokio::task::JoinHandle;

/// The actor of every call the cases make.
pub const ACTOR: &str = "alice";

/// The workspace of the short forms.
const WS: &str = "default";

pub trait StoreExt: SecretsStore {
    async fn create(&self, name: &str, value: &SecretValue, shared: bool) -> Secret {
        self.create_secret(WS, name, value, shared, ACTOR)
            .await
            .unwrap()
    }

    async fn create_err(&self, name: &str, value: &SecretValue, shared: bool) -> StoreError {
        self.create_secret(WS, name, value, shared, ACTOR)
            .await
            .unwrap_err()
    }

    async fn bind(&self, id: &str, rtype: &str, rid: &str, name: &str) -> SecretBinding {
        self.bind_secret(id, rtype, rid, name, ACTOR).await.unwrap()
    }

    async fn bind_err(&self, id: &str, rtype: &str, rid: &str, name: &str) -> StoreError {
        self.bind_secret(id, rtype, rid, name, ACTOR)
            .await
            .unwrap_err()
    }

    async fn value(&self, id: &str) -> SecretValue {
        self.get_secret_value(id, ACTOR).await.unwrap()
    }

    async fn value_err(&self, id: &str) -> StoreError {
        self.get_secret_value(id, ACTOR).await.unwrap_err()
    }

    async fn resource_values(&self, rtype: &str, rid: &str) -> BTreeMap<String, SecretValue> {
        self.get_all_secrets_for_resource(ResourceRef::new(WS, rtype, rid), ACTOR)
            .await
            .unwrap()
    }

    async fn secrets(&self, filter: &SecretFilter) -> Page<Secret> {
        self.list_secrets(filter).await.unwrap()
    }

    async fn secrets_err(&self, filter: &SecretFilter) -> StoreError {
        self.list_secrets(filter).await.unwrap_err()
    }

    async fn bindings(&self, filter: &BindingFilter) -> Page<SecretBinding> {
        self.list_bindings(filter).await.unwrap()
    }

    /// The whole audit log, oldest first (every case writes far fewer than
    /// a thousand rows).
    async fn all_audit(&self) -> Vec<AuditEntry> {
        self.list_audit(&AuditFilter {
            max_results: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
    }
}

impl<T: SecretsStore + ?Sized> StoreExt for T {}

/// Of calls racing for one row, exactly one succeeds and every other fails
/// with `code`.
pub async fn exactly_one_wins<T>(tasks: Vec<JoinHandle<Result<T, StoreError>>>, code: &str) {
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.error_code(), code, "{e}"),
        }
    }
    assert_eq!(ok, 1);
}
