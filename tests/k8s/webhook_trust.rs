//! What the webhook trusts (docs/design.md §8, §10 rule 10),
//! against the real control plane: each test writes the attack and
//! fails if the rule that stops it breaks.
//!
//! - namespace opt-in: no call, no Secret in a namespace without
//!   `secrets.mlflow.org/injection: enabled`;
//! - the Job is real: a bare pod with a forged owner reference is denied and
//!   no per-Job Secret is written or modified;
//! - the per-Job Secret is ours: a Secret of that name we do not manage is
//!   never replaced;
//! - consent: `secrets.mlflow.org/bindings` and `.../containers` limit what
//!   is injected where, and a variable the pod defines is never overridden;
//! - limits: decrypts per ServiceAccount;
//! - the caller and the port: with `--webhook-client-ca` a caller without
//!   the API server's certificate is refused at TLS; without it, a forged
//!   review writes no Secret and grows no metric series.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support;
use crate::support::webhook::{
    Opts, Webhook, create_job, events_of, job_json, job_pod, pod_json, post_to_port, review_json,
    template_pod, with_service_account,
};
use crate::support::{eventually, unique_name};

const VALUE: &str = "sk-PLAINTEXT-trust-never-in-a-pod-91c2";
const RID: &str = "scorer-trust";

fn secret_name(job: &str) -> String {
    format!("{job}-mlflow-secrets")
}

async fn secret(client: &kube::Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

fn denied_reason(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        other => panic!("expected a deny, got {other}"),
    }
}

fn env_names(pod: &Pod, container: &str) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container)
        .unwrap()
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_without_the_opt_in_label_is_never_called() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    // The configuration is live: an opted-in namespace in scope is called.
    let live = w.namespace("wh-live").await;
    let out = w.namespace_opted_out("wh-optout").await;
    let n = out.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    let job = unique_name("scorer");
    create_job(&w.client, n, &job_json(&job, RID, &[], false)).await;
    // The Job's pod is created untouched: the API server never called us.
    let pod = job_pod(&w.client, n, &job).await;
    assert!(
        pod.metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("secrets.mlflow.org/injected")),
        "{pod:?}"
    );
    assert!(!env_names(&pod, "main").contains(&"OPENAI_API_KEY".to_string()));
    assert!(secret(&w.client, n, &secret_name(&job)).await.is_none());
    // (Rendered first: `total` reads through `with_label_values`, which
    // creates the series it asks for.)
    assert!(!w.metrics.render().contains(n), "no series for {n}");
    assert_eq!(w.total(n), 0, "no admission request for {n}");
    out.cleanup().await;
    live.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_pod_with_a_forged_job_owner_is_denied_and_touches_no_secret() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-forged").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    // A real Job whose pod was injected: its Secret exists.
    let job = unique_name("scorer");
    create_job(&w.client, n, &job_json(&job, RID, &[], false)).await;
    job_pod(&w.client, n, &job).await;
    let before = secret(&w.client, n, &secret_name(&job))
        .await
        .expect("the real Job's Secret");
    let denied_before = w.count(n, "denied");
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    let create = |pod: Pod| {
        let pods = pods.clone();
        async move { pods.create(&PostParams::default(), &pod).await }
    };

    // The real Job's name with a made-up uid.
    let forged_uid = "0b0e8c52-0000-4000-8000-000000000001";
    let e = create(pod_json("wrong-uid", RID, Some((&job, forged_uid)), &[]))
        .await
        .expect_err("a wrong uid is denied");
    let msg = denied_reason(e);
    assert!(
        msg.contains(&format!("Job {n}/{job}")) && msg.contains("another uid"),
        "{msg}"
    );
    // A Job that does not exist.
    let ghost = unique_name("ghost");
    let e = create(pod_json("ghost", RID, Some((&ghost, forged_uid)), &[]))
        .await
        .expect_err("a missing Job is denied");
    let msg = denied_reason(e);
    assert!(
        msg.contains(&format!("Job {n}/{ghost}")) && msg.contains("does not exist"),
        "{msg}"
    );
    // A real Job whose template does not ask for injection.
    let plain: Job = serde_json::from_value(json!({
        "metadata": {"name": unique_name("plain")},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}}}
    }))
    .unwrap();
    let plain_name = plain.metadata.name.clone().unwrap();
    let plain_uid = create_job(&w.client, n, &plain).await;
    let e = create(pod_json("plain", RID, Some((&plain_name, &plain_uid)), &[]))
        .await
        .expect_err("an unlabelled template is denied");
    let msg = denied_reason(e);
    assert!(
        msg.contains(&format!("Job {n}/{plain_name}")) && msg.contains("does not carry the label"),
        "{msg}"
    );
    // The real Job, right uid, but claiming another resource.
    let uid = before.metadata.owner_references.as_ref().unwrap()[0]
        .uid
        .clone();
    let e = create(pod_json(
        "other-rid",
        "someone-elses-scorer",
        Some((&job, &uid)),
        &[],
    ))
    .await
    .expect_err("another resource id than the template's is denied");
    let msg = denied_reason(e);
    assert!(
        msg.contains(&format!("pod template of Job {n}/{job}"))
            && msg.contains("secrets.mlflow.org/resource-id"),
        "{msg}"
    );

    // Nothing was written or modified.
    let after = secret(&w.client, n, &secret_name(&job)).await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the real Job's Secret is untouched"
    );
    for name in [&ghost, &plain_name] {
        assert!(secret(&w.client, n, &secret_name(name)).await.is_none());
    }
    assert_eq!(w.count(n, "denied") - denied_before, 4);
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_we_do_not_manage_is_never_replaced() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-notours").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), n);
    let other_job = unique_name("other");
    let other_uid = create_job(&w.client, n, &job_json(&other_job, RID, &[], true)).await;

    // 1. Someone's Secret that happens to have the per-Job name; 2. one
    // labelled as ours but owned by another Job.
    let cases = [
        (json!({}), None),
        (
            json!({"app.kubernetes.io/managed-by": "mlflow-secrets"}),
            Some((other_job.as_str(), other_uid.as_str())),
        ),
    ];
    for (labels, owner) in cases {
        let job = unique_name("scorer");
        let job_obj = job_json(&job, RID, &[], true);
        let uid = create_job(&w.client, n, &job_obj).await;
        let mut meta = json!({"name": secret_name(&job), "labels": labels});
        if let Some((oj, ou)) = owner {
            meta["ownerReferences"] =
                json!([{"apiVersion": "batch/v1", "kind": "Job", "name": oj, "uid": ou}]);
        }
        let planted: Secret = serde_json::from_value(json!({
            "metadata": meta,
            "stringData": {"config": "keep-me"}
        }))
        .unwrap();
        let planted = secrets
            .create(&PostParams::default(), &planted)
            .await
            .unwrap();
        let e = Api::<Pod>::namespaced(w.client.clone(), n)
            .create(&PostParams::default(), &template_pod("p", &job_obj, &uid))
            .await
            .expect_err("denied");
        let msg = denied_reason(e);
        assert!(
            msg.contains(&format!("Secret {n}/{}", secret_name(&job)))
                && msg.contains("not managed by mlflow-secrets for this Job"),
            "{msg}"
        );
        let now = secrets.get(&secret_name(&job)).await.unwrap();
        assert_eq!(
            now.metadata.resource_version, planted.metadata.resource_version,
            "never modified"
        );
        let data = now.data.unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data["config"].0, b"keep-me");
    }
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_limits_bindings_and_containers_and_never_overrides_env() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-consent").await;
    let n = ns.name();
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    let admit = |name: &str, job: &Job, uid: &str| {
        let pods = pods.clone();
        let pod = template_pod(name, job, uid);
        async move { pods.create(&PostParams::default(), &pod).await }
    };

    // Two bindings; the pod accepts one of them, in container main only.
    let key_id = w
        .bind(n, "openai", VALUE, "consent-1", "OPENAI_API_KEY")
        .await;
    w.bind(
        n,
        "base",
        "https://attacker.example",
        "consent-1",
        "OPENAI_BASE_URL",
    )
    .await;
    let job = unique_name("scorer");
    let j = job_json(
        &job,
        "consent-1",
        &[
            ("secrets.mlflow.org/bindings", "OPENAI_API_KEY"),
            ("secrets.mlflow.org/containers", "main"),
        ],
        true,
    );
    let uid = create_job(&w.client, n, &j).await;
    let pod = admit("listed", &j, &uid).await.expect("admitted");
    assert_eq!(env_names(&pod, "main"), ["KEEP", "OPENAI_API_KEY"]);
    assert!(env_names(&pod, "side").is_empty(), "side is not listed");
    assert!(env_names(&pod, "init").is_empty(), "init is not listed");
    let s = secret(&w.client, n, &secret_name(&job)).await.unwrap();
    let keys: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["OPENAI_API_KEY"],
        "only the consented binding is written"
    );
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["secrets.mlflow.org/managed"], "true");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "mlflow-secrets");
    let ids = &s.metadata.annotations.as_ref().unwrap()["secrets.mlflow.org/secret-ids"];
    assert_eq!(
        mlflow_secrets::k8s::webhook::secret::parse_secret_ids(ids).unwrap(),
        [("OPENAI_API_KEY".to_string(), key_id)].into()
    );

    // A listed name with no binding denies, naming it.
    let job = unique_name("scorer");
    let j = job_json(
        &job,
        "consent-1",
        &[(
            "secrets.mlflow.org/bindings",
            "OPENAI_API_KEY,MISSING_TOKEN",
        )],
        true,
    );
    let uid = create_job(&w.client, n, &j).await;
    let msg = denied_reason(admit("missing", &j, &uid).await.expect_err("denied"));
    assert!(msg.contains("lists MISSING_TOKEN"), "{msg}");
    assert!(secret(&w.client, n, &secret_name(&job)).await.is_none());

    // A binding the container defines itself (job_json's main sets KEEP).
    w.bind(n, "keep", "bound-keep-value", "consent-2", "KEEP")
        .await;
    let job = unique_name("scorer");
    let j = job_json(&job, "consent-2", &[], true);
    let uid = create_job(&w.client, n, &j).await;
    let msg = denied_reason(admit("override", &j, &uid).await.expect_err("denied"));
    assert!(msg.contains("container main already defines KEEP"), "{msg}");
    assert!(secret(&w.client, n, &secret_name(&job)).await.is_none());
    // The same through a real Job: its FailedCreate event names them.
    let job = unique_name("scorer");
    create_job(&w.client, n, &job_json(&job, "consent-2", &[], false)).await;
    eventually(
        Duration::from_secs(60),
        "the Job's FailedCreate event",
        || {
            let (c, job) = (w.client.clone(), job.clone());
            async move {
                events_of(&c, n, "Job", &job)
                    .await
                    .contains("container main already defines KEEP")
                    .then_some(())
            }
        },
    )
    .await;
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_for_one_service_account_reaches_only_its_pods() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-sa").await;
    let n = ns.name();
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "scorer-sa"}})).unwrap();
    Api::namespaced(w.client.clone(), n)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    w.bind_for(n, "openai", VALUE, RID, "OPENAI_API_KEY", &["scorer-sa"])
        .await;
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);

    // A pod of the namespace's default ServiceAccount: denied, naming the
    // binding and the ServiceAccounts it allows; no Secret.
    let job = unique_name("scorer");
    let j = job_json(&job, RID, &[], true);
    let uid = create_job(&w.client, n, &j).await;
    let msg = denied_reason(
        pods.create(
            &PostParams::default(),
            &template_pod("default-sa", &j, &uid),
        )
        .await
        .expect_err("denied"),
    );
    assert!(
        msg.contains("binding OPENAI_API_KEY is restricted to ServiceAccounts scorer-sa")
            && msg.contains("runs as ServiceAccount default"),
        "{msg}"
    );
    assert!(secret(&w.client, n, &secret_name(&job)).await.is_none());
    // Decided on the rows' metadata before any decrypt: the refusal is
    // audited (DENIED), and no value read succeeded for the refused pod
    // (docs/design.md §8, "The pod consents"). The deny's row is written
    // off the response path (a store that is down must not delay a deny),
    // so it may land just after the API server has answered.
    let audit = eventually(
        Duration::from_secs(10),
        "the refusal is audited",
        || async {
            let audit = w.audit(n).await;
            audit
                .iter()
                .any(|e| e.action == "READ_RESOURCE_VALUES" && e.outcome == "DENIED")
                .then_some(audit)
        },
    )
    .await;
    assert!(
        !audit
            .iter()
            .any(|e| e.action == "READ_RESOURCE_VALUES" && e.outcome == "SUCCESS"),
        "a pod refused for its ServiceAccount had values read"
    );

    // A pod of scorer-sa: injected.
    let job = unique_name("scorer");
    let j = with_service_account(job_json(&job, RID, &[], true), "scorer-sa");
    let uid = create_job(&w.client, n, &j).await;
    let pod = pods
        .create(&PostParams::default(), &template_pod("scorer-sa", &j, &uid))
        .await
        .expect("the allowed ServiceAccount is injected");
    assert!(env_names(&pod, "main").contains(&"OPENAI_API_KEY".to_string()));
    assert!(secret(&w.client, n, &secret_name(&job)).await.is_some());

    // A bare pod that claims scorer-sa's Job but runs as default: the Job
    // check refuses it before consent is even asked.
    let mut forged = template_pod("forged-sa", &j, &uid);
    forged.spec.as_mut().unwrap().service_account_name = None;
    let msg = denied_reason(
        pods.create(&PostParams::default(), &forged)
            .await
            .expect_err("denied"),
    );
    assert!(
        msg.contains("ServiceAccount default, the template's is scorer-sa"),
        "{msg}"
    );
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypts_are_limited_per_service_account() {
    support::skip_if_off!();
    let w = Webhook::start(Opts {
        service_account_limit: Some(2),
        ..Default::default()
    })
    .await;
    let ns = w.namespace("wh-salimit").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    let job = unique_name("scorer");
    let j = job_json(&job, RID, &[], true);
    let uid = create_job(&w.client, n, &j).await;
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    for i in 0..2 {
        pods.create(
            &PostParams::default(),
            &template_pod(&format!("ok-{i}"), &j, &uid),
        )
        .await
        .unwrap_or_else(|e| panic!("pod {i}: {e}"));
    }
    let msg = denied_reason(
        pods.create(&PostParams::default(), &template_pod("third", &j, &uid))
            .await
            .expect_err("the third decrypt of the ServiceAccount in a minute"),
    );
    assert!(
        msg.contains(&format!(
            "rate limit exceeded for ServiceAccount '{n}/default'"
        )),
        "{msg}"
    );
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_client_ca_a_caller_without_the_api_servers_certificate_is_refused() {
    support::skip_if_off!();
    let env = support::TestEnv::get().await;
    let ca = env
        .webhook_client_ca()
        .expect("the control plane presents a webhook client certificate (scripts/testenv.sh up)");
    let w = Webhook::start(Opts {
        client_ca: Some(ca),
        ..Default::default()
    })
    .await;
    // The API server presents its certificate: calls reach the handler.
    let ns = w.namespace("wh-mtls").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    let job = unique_name("scorer");
    create_job(&w.client, n, &job_json(&job, RID, &[], false)).await;
    let pod = job_pod(&w.client, n, &job).await;
    assert!(env_names(&pod, "main").contains(&"OPENAI_API_KEY".to_string()));

    // A forged review without a client certificate: refused at TLS, so no
    // HTTP answer and nothing counted.
    let before = w.total(n);
    let forged = review_json(
        &pod_json("forged", RID, Some(("ghost", "u-1")), &[]),
        n,
        false,
    );
    let code = post_to_port(w.port, &forged, None)
        .await
        .expect_err("no client certificate, no TLS session");
    assert!(code != 0, "curl failed with {code}");
    assert_eq!(w.total(n), before, "the handler never saw it");
    // The API server's certificate is what opens it.
    let cert = env.webhook_client_cert().unwrap();
    let v = post_to_port(w.port, &forged, Some(&cert))
        .await
        .expect("an answer");
    assert_eq!(v["response"]["allowed"], false);
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_review_to_the_port_writes_nothing_and_grows_no_series() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-port").await;
    let opted_out = w.namespace_opted_out("wh-port-out").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;

    // A Job that does not exist, in a real namespace that opted in.
    let ghost = unique_name("ghost");
    let t0 = Instant::now();
    let v = post_to_port(
        w.port,
        &review_json(
            &pod_json("forged", RID, Some((&ghost, "u-1")), &[]),
            n,
            false,
        ),
        None,
    )
    .await
    .expect("an answer");
    eprintln!(
        "forged review (Job GET miss) answered in {:?}",
        t0.elapsed()
    );
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(secret(&w.client, n, &secret_name(&ghost)).await.is_none());
    assert_eq!(w.metrics.decrypts.with_label_values(&[n]).get(), 0);

    // Made-up namespaces, and a real one that did not opt in: denied, no
    // series of their own, nothing audited under them.
    let other_before = w.count("_other", "denied");
    let mut made_up = Vec::new();
    for i in 0..20 {
        let fake = format!("{}-{i}", unique_name("made-up"));
        let v = post_to_port(
            w.port,
            &review_json(&pod_json("f", RID, Some(("j", "u")), &[]), &fake, false),
            None,
        )
        .await
        .expect("an answer");
        assert_eq!(v["response"]["allowed"], false);
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains("has not opted in"), "{msg}");
        made_up.push(fake);
    }
    let v = post_to_port(
        w.port,
        &review_json(
            &pod_json("f", RID, Some(("j", "u")), &[]),
            opted_out.name(),
            false,
        ),
        None,
    )
    .await
    .expect("an answer");
    assert_eq!(v["response"]["allowed"], false);
    let rendered = w.metrics.render();
    for fake in made_up.iter().map(String::as_str).chain([opted_out.name()]) {
        assert!(!rendered.contains(fake), "a series for {fake}");
        assert!(w.audit(fake).await.is_empty(), "audit rows under {fake}");
    }
    assert_eq!(w.count("_other", "denied") - other_before, 21);

    // What Job verification adds to an admission: a cached Job costs a map
    // lookup; a Job the cache does not know costs one GET. Measured here
    // as the GET's round trip on this control plane.
    let jobs: Api<Job> = Api::namespaced(w.client.clone(), n);
    let mut samples: Vec<Duration> = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let _ = jobs.get_opt(&ghost).await.unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    eprintln!(
        "Job GET round trip: p50 {:?}, p90 {:?}",
        samples[25], samples[45]
    );
    opted_out.cleanup().await;
    ns.cleanup().await;
    w.stop().await;
}
