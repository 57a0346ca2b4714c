//! The webhook's certificates and its edge cases against the real control
//! plane: the leader rotating the CA and serving
//! certificate with the caBundle following, and requests the registered
//! configuration never sends (no owning Job, no resource id, a bad mode,
//! unlabelled pods posted directly). Same fixture as `webhook.rs`: the
//! webhook in-process over TLS, a real SqlStore on SQLite.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::Value;

use crate::support;
use crate::support::eventually;
use crate::support::webhook::{Opts, Webhook, pod_json, review_json};

const RID: &str = "scorer-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loop_rotates_the_certificates_and_the_ca_bundle_follows() {
    support::skip_if_off!();
    // CA and serving certificate both within the renewal window almost at
    // once: the leader rotates the CA; the configuration must follow, and
    // the webhook must keep answering.
    let w = Webhook::start(Opts {
        validity: Some((
            Duration::from_secs(20),
            Duration::from_secs(25),
            Duration::from_secs(15),
        )),
        ..Default::default()
    })
    .await;
    let ns = w.namespace("wh-rotate").await;
    let n = ns.name();
    let cfgs: Api<MutatingWebhookConfiguration> = Api::all(w.client.clone());
    let bundle = |c: MutatingWebhookConfiguration| {
        c.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .clone()
            .unwrap()
            .0
    };
    let first = bundle(cfgs.get(&w.cfg.webhook_config_name).await.unwrap());
    let first_not_after = w.certs.not_after();
    assert_eq!(first, w.certs.ca_bundle().into_bytes());
    let name = w.cfg.webhook_config_name.clone();
    let rotated = eventually(Duration::from_secs(60), "a new caBundle", || {
        let cfgs = cfgs.clone();
        let (name, first) = (name.clone(), first.clone());
        async move {
            let b = bundle(cfgs.get(&name).await.ok()?);
            (b != first).then_some(b)
        }
    })
    .await;
    let text = String::from_utf8(rotated.clone()).unwrap();
    assert_eq!(
        text.matches("BEGIN CERTIFICATE").count(),
        2,
        "new CA plus the previous one"
    );
    // Every replica (here, the refresh loop) serves the renewed certificate.
    eventually(
        Duration::from_secs(30),
        "the serving certificate to be swapped",
        || {
            let certs = w.certs.clone();
            async move { (certs.not_after() != first_not_after).then_some(()) }
        },
    )
    .await;
    assert!(w.metrics.cert_expiry.get() >= w.certs.not_after() as f64 - 1.0);
    // The API server still trusts us: a probe is still answered by the webhook.
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    let err = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod_json("after", RID, None, &[]),
        )
        .await
        .expect_err("the webhook answers");
    assert!(err.to_string().contains("no owning Job"), "{err}");
    ns.cleanup().await;
    w.stop().await;
}

/// The handler alone (no API server in front): what it does with requests
/// the configuration should never send, and with garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_configuration_never_sends_are_handled_safely() {
    support::skip_if_off!();
    use tower::ServiceExt as _;
    let w = Webhook::start(Opts::default()).await;
    let state = std::sync::Arc::new(mlflow_secrets::k8s::webhook::WebhookState::new(
        w.client.clone(),
        w.store.clone(),
        w.metrics.clone(),
        Duration::from_secs(5),
    ));
    let app = mlflow_secrets::k8s::webhook::router(state.clone());
    let post = |body: Vec<u8>| {
        axum::http::Request::post("/mutate")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let review = |pod: &Pod, ns: &str| review_json(pod, ns, false);
    let call = |app: axum::Router, body: Vec<u8>| async move {
        let resp = app.oneshot(post(body)).await.unwrap();
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice::<Value>(&bytes).unwrap())
    };
    // A real namespace that opted in (the webhook's watch knows it).
    let real = w.namespace("wh-direct").await;
    let ns = real.name().to_string();
    eventually(
        Duration::from_secs(30),
        "the handler's namespace watch",
        || {
            let ok = state.synced() && state.knows_namespace(&ns);
            async move { ok.then_some(()) }
        },
    )
    .await;

    // Unlabelled: allowed, untouched, counted as skipped.
    let mut plain = pod_json("plain", RID, None, &[]);
    plain.metadata.labels = None;
    let (status, v) = call(app.clone(), review(&plain, &ns)).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["uid"], "7e0c9f3a-1111-2222-3333-444455556666");
    assert!(v["response"].get("patch").is_none(), "{v}");
    assert_eq!(w.count(&ns, "skipped"), 1);

    // Labelled without a resource id: denied with the reason, and audited.
    let mut no_id = pod_json("noid", RID, Some(("j", "uid-1")), &[]);
    no_id.metadata.annotations = None;
    let (_, v) = call(app.clone(), review(&no_id, &ns)).await;
    assert_eq!(v["response"]["allowed"], false);
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("no secrets.mlflow.org/resource-id annotation"),
        "{msg}"
    );
    eventually(Duration::from_secs(10), "the denial's audit row", || {
        let w = &w;
        let ns = ns.clone();
        async move {
            w.audit(&ns)
                .await
                .iter()
                .any(|r| {
                    r.outcome == "DENIED"
                        && r.principal.as_deref() == Some(&format!("webhook:{ns}/j/noid"))
                })
                .then_some(())
        }
    })
    .await;

    // An unknown inject mode is refused by name.
    let bad_mode = pod_json(
        "mode",
        RID,
        Some(("j", "uid-1")),
        &[("secrets.mlflow.org/inject-mode", "plaintext-env")],
    );
    let (_, v) = call(app.clone(), review(&bad_mode, &ns)).await;
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("must be secret-env or secret-file"),
        "{v}"
    );

    // Garbage: a 400 with an AdmissionReview that refuses.
    let (status, v) = call(app.clone(), b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(v["response"]["allowed"], false);
    real.cleanup().await;
    w.stop().await;
}
