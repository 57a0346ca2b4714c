//! The store contract over REST: the same scenario runs through `SqlStore`
//! directly and through `HttpStore` against a live `serve` on loopback
//! (bearer tokens, real TCP), on every configured database, and every
//! outcome (entity fields or error code and message) must be identical.
//! Then the REST-only rules: principals come from the token, values are
//! never readable over the API, and the audit log names the token's
//! principal.

use mlflow_secrets::model::ResourceRef;
use mlflow_secrets::model::{BindingFilter, BindingSpec, NewSecret, SecretFilter, SecretState};
use mlflow_secrets::server::auth::{Role, Scope, tokens_file_line};
use mlflow_secrets::server::{ServeConfig, Server};
use mlflow_secrets::store::{AuditFilter, HttpStore, SecretsStore, StoreError};
use mlflow_secrets::value::SecretValue;
use secrecy::SecretString;
use testkit::{Backend, TestDb};

const WRITER_TOKEN: &str = "mlss_contract-writer-token";
const ADMIN_TOKEN: &str = "mlss_contract-admin-token";

fn val(s: &str) -> SecretValue {
    SecretValue::from_string(s.to_string()).unwrap()
}

/// One outcome, with ids, timestamps and principals normalised (they
/// differ by run, and by design between CLI actor and token principal).
fn outcome<T: serde::Serialize>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => {
            let mut j = serde_json::to_value(v).unwrap();
            scrub(&mut j);
            j.to_string()
        }
        Err(e) => format!("{}: {e}", e.error_code()),
    }
}

fn scrub(j: &mut serde_json::Value) {
    match j {
        serde_json::Value::Object(m) => {
            for k in [
                "secret_id",
                "binding_id",
                "created_at",
                "last_updated_at",
                "revoked_at",
            ] {
                if m.contains_key(k) {
                    m.insert(k.into(), serde_json::Value::Null);
                }
            }
            for k in ["created_by", "last_updated_by", "revoked_by"] {
                if m.get(k).is_some_and(|v| !v.is_null()) {
                    m.insert(k.into(), "<principal>".into());
                }
            }
            m.values_mut().for_each(scrub);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// Error code only: for errors whose message carries a per-run id.
fn code<T>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.error_code().into(),
    }
}

/// A scenario touching every operation and rule a REST client can reach.
async fn scenario(s: &dyn SecretsStore) -> Vec<String> {
    let mut out = Vec::new();
    let a = s
        .create_secret(
            "default",
            "alpha",
            &val("alpha-value-1234567890"),
            false,
            "x",
        )
        .await
        .unwrap();
    out.push(outcome(Ok::<_, StoreError>(a.clone())));
    let obj = SecretValue::from_json_text(r#"{"api_key":"k-123456789012","org":"o"}"#).unwrap();
    out.push(outcome(
        s.create_secret("default", "beta", &obj, true, "x").await,
    ));
    out.push(outcome(
        s.create_secret("team-a", "alpha", &val("team-a-value-123456"), true, "x")
            .await,
    ));
    out.push(outcome(
        s.create_secret("default", "alpha", &val("dup-value-12345678"), false, "x")
            .await,
    ));
    out.push(outcome(
        s.create_secret("Bad-WS", "x", &val("v-12345678901234"), false, "x")
            .await,
    ));
    out.push(outcome(
        s.create_secret("default", "bad name", &val("v-12345678901234"), false, "x")
            .await,
    ));
    out.push(outcome(s.get_secret(&a.secret_id).await));
    out.push(outcome(s.get_secret_by_name("team-a", "alpha").await));
    out.push(outcome(s.get_secret_by_name("default", "missing").await));
    out.push(outcome(s.get_secret("not-a-uuid").await));
    out.push(code(s.get_secret(&uuid::Uuid::new_v4().to_string()).await));
    out.push(outcome(
        s.update_secret(&a.secret_id, &val("alpha-value-updated-123"), "x")
            .await,
    ));
    for (job, name) in [
        ("job-1", "ALPHA"),
        ("job-1", "ALPHA_2"),
        ("job-2", "ALPHA"),
        ("job-1", "ALPHA"),
        ("job-1", "1BAD"),
    ] {
        out.push(outcome(
            s.bind_secret(&a.secret_id, "SCORER_JOB", job, name, "x")
                .await,
        ));
    }
    let beta = s.get_secret_by_name("default", "beta").await.unwrap();
    for i in 0..3 {
        out.push(outcome(
            s.bind_secret(
                &beta.secret_id,
                "SCORER_JOB",
                &format!("job-{i}"),
                "BETA",
                "x",
            )
            .await,
        ));
    }
    out.push(outcome(s.list_secrets(&SecretFilter::default()).await));
    out.push(outcome(
        s.list_secrets(&SecretFilter {
            workspace: Some("default".into()),
            is_shared: Some(true),
            ..Default::default()
        })
        .await,
    ));
    let first = s
        .list_secrets(&SecretFilter {
            max_results: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    out.push(outcome(Ok::<_, StoreError>(first.items.clone())));
    out.push(outcome(
        s.list_secrets(&SecretFilter {
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await,
    ));
    out.push(outcome(
        s.list_secrets(&SecretFilter {
            page_token: Some("garbage!".into()),
            ..Default::default()
        })
        .await,
    ));
    out.push(outcome(
        s.list_secrets(&SecretFilter {
            max_results: Some(0),
            ..Default::default()
        })
        .await,
    ));
    out.push(outcome(
        s.list_bindings(&BindingFilter {
            resource_id: Some("job-1".into()),
            ..Default::default()
        })
        .await,
    ));
    let page = s
        .list_bindings(&BindingFilter {
            max_results: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    out.push(outcome(Ok::<_, StoreError>(page.items.len())));
    out.push(outcome(
        s.list_bindings(&BindingFilter {
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await,
    ));
    let b = s
        .bind_secret(&beta.secret_id, "SCORER_JOB", "job-9", "GAMMA", "x")
        .await
        .unwrap();
    out.push(outcome(s.get_binding(&b.binding_id).await));
    out.push(outcome(s.unbind_secret(&b.binding_id, "x").await));
    out.push(code(s.unbind_secret(&b.binding_id, "x").await));
    out.push(outcome(
        s.revoke_secret(&a.secret_id, "x").await.map(|s| s.state),
    ));
    out.push(outcome(s.revoke_secret(&a.secret_id, "x").await));
    out.push(outcome(
        s.update_secret(&a.secret_id, &val("after-revoke-12345"), "x")
            .await,
    ));
    out.push(outcome(
        s.bind_secret(&a.secret_id, "SCORER_JOB", "job-3", "X", "x")
            .await,
    ));
    out.push(outcome(
        s.list_secrets(&SecretFilter {
            state: Some(SecretState::Revoked),
            ..Default::default()
        })
        .await,
    ));
    out.push(outcome(s.delete_secret(&beta.secret_id, "x").await));
    out.push(outcome(
        s.list_bindings(&BindingFilter {
            secret_id: Some(beta.secret_id.clone()),
            ..Default::default()
        })
        .await,
    ));
    out.push(code(s.delete_secret(&beta.secret_id, "x").await));
    out
}

/// A server on 127.0.0.1 in front of `db`, with writer and admin tokens.
async fn serve(db: &TestDb) -> (String, tokio::sync::oneshot::Sender<()>) {
    let tokens = db.keystore.dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "{}\n{}\n",
            tokens_file_line("wendy", Role::Writer, &Scope::everything(), WRITER_TOKEN),
            tokens_file_line("alice", Role::Admin, &Scope::everything(), ADMIN_TOKEN)
        ),
    )
    .unwrap();
    let cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens_file: Some(tokens),
        rate_limit_per_minute: 0,
        ..Default::default()
    };
    let server = Server::bind(&cfg, db.store.clone()).await.unwrap();
    let url = format!("http://{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    (url, tx)
}

async fn run_backend(backend: Backend) {
    let (Some(direct), Some(behind)) = (TestDb::new(backend).await, TestDb::new(backend).await)
    else {
        return;
    };
    let (url, stop) = serve(&behind).await;
    let http = HttpStore::new(&url, Some(SecretString::from(WRITER_TOKEN)), None).unwrap();

    let want = scenario(&direct.store).await;
    let got = scenario(&http).await;
    assert_eq!(want.len(), got.len());
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w, g, "step {i} differs between SQL and REST");
    }

    // The principal comes from the token, never from the caller.
    let s = http
        .create_secret(
            "default",
            "who",
            &val("who-value-123456789"),
            false,
            "forged",
        )
        .await
        .unwrap();
    assert_eq!(s.created_by.as_deref(), Some("wendy"));
    // No value is ever readable over the API.
    let errors = [
        code(http.get_secret_value(&s.secret_id, "x").await),
        code(
            http.get_secret_for_resource(
                ResourceRef::new("default", "SCORER_JOB", "job-1"),
                "A",
                "x",
            )
            .await,
        ),
        code(
            http.get_all_secrets_for_resource(
                ResourceRef::new("default", "SCORER_JOB", "job-1"),
                "x",
            )
            .await,
        ),
    ];
    assert_eq!(errors, ["PERMISSION_DENIED"; 3]);
    // Create-and-bind is one transaction only with direct database access;
    // over REST it is refused, and nothing is written.
    let spec = BindingSpec {
        resource_type: "SCORER_JOB",
        resource_id: "job-9",
        binding_name: "KEY",
        value_field: None,
        service_accounts: &[],
    };
    let new = NewSecret {
        workspace: "default",
        secret_name: "both",
        is_shared: false,
        provider: None,
    };
    let refused = http
        .create_and_bind_secret(&new, &val("both-value-123456789"), &spec, "x")
        .await;
    assert_eq!(code(refused), "PERMISSION_DENIED");
    assert_eq!(
        code(http.get_secret_by_name("default", "both").await),
        "RESOURCE_DOES_NOT_EXIST"
    );
    // The writer may not read the audit log; the admin may, and it names
    // the token's principal.
    assert_eq!(
        code(http.list_audit(&AuditFilter::default()).await),
        "PERMISSION_DENIED"
    );
    let admin = HttpStore::new(&url, Some(SecretString::from(ADMIN_TOKEN)), None).unwrap();
    let log = admin
        .list_audit(&AuditFilter {
            secret_id: Some(s.secret_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "CREATE" && e.principal.as_deref() == Some("wendy")),
        "{log:?}"
    );
    let bad = HttpStore::new(&url, Some(SecretString::from("mlss_wrong")), None).unwrap();
    assert_eq!(code(bad.get_secret(&s.secret_id).await), "UNAUTHENTICATED");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rest_matches_sql() {
    run_backend(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rest_matches_sql() {
    run_backend(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_rest_matches_sql() {
    run_backend(Backend::Mysql).await;
}
