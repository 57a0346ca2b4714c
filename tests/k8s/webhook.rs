//! The mutating webhook against the real control plane:
//! kube-apiserver calls the webhook, served in-process over TLS
//! with certificates from `certs::bootstrap`, registered by
//! `certs::leader_loop` as a URL-based configuration; kube-controller-
//! manager creates the Jobs' pods and garbage-collects per-Job Secrets.
//! The store is a real SqlStore on SQLite with a real keystore.
//! Certificate rotation and requests the configuration never sends are in
//! `webhook_edges.rs`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use mlflow_secrets::store::{DecryptLimits, SecretsStore};
use serde_json::Value;
use sqlx::Connection;

use crate::support;
use crate::support::webhook::{
    Opts, Webhook, create_job, denied, events_of, job_json, job_pod, pod_json,
};
use crate::support::{eventually, unique_name};

const VALUE: &str = "sk-PLAINTEXT-never-in-a-pod-7c1f";
const RID: &str = "scorer-1";

fn injected(pod: &Pod) -> Value {
    let a = pod.metadata.annotations.as_ref().unwrap();
    serde_json::from_str(&a["secrets.mlflow.org/injected"]).unwrap()
}

fn assert_no_plaintext(what: &str, text: &str, value: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    assert!(!text.contains(value), "{what} contains the plaintext");
    assert!(!text.contains(&b64), "{what} contains the base64 plaintext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_pods_get_secret_env_and_the_secret_is_collected_with_the_job() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-env").await;
    let n = ns.name();
    let sid = w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    w.bind(n, "other", "second-value-xyz", RID, "SECOND").await;

    let job = unique_name("scorer");
    let uid = create_job(&w.client, n, &job_json(&job, RID, &[], false)).await;
    let pod = job_pod(&w.client, n, &job).await;

    // secretKeyRef in every container and init container, none with a value.
    let spec = pod.spec.as_ref().unwrap();
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let secret_name = format!("{job}-mlflow-secrets");
    let mut seen = 0;
    for c in all {
        let env = c.env.as_ref().expect("env injected");
        for key in ["OPENAI_API_KEY", "SECOND"] {
            let e = env
                .iter()
                .find(|e| e.name == key)
                .unwrap_or_else(|| panic!("{} lacks {key}", c.name));
            assert_eq!(e.value, None);
            let r = support::secret_key_ref(e);
            assert_eq!(
                (r.name.as_str(), r.key.as_str()),
                (secret_name.as_str(), key)
            );
        }
        seen += 1;
    }
    assert_eq!(seen, 3, "two containers and one init container");
    let main = &spec.containers[0];
    assert!(
        main.env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "KEEP" && e.value.as_deref() == Some("kept"))
    );
    let ann = injected(&pod);
    assert_eq!(ann["mode"], "secret-env");
    assert_eq!(ann["bindings"]["OPENAI_API_KEY"]["secretId"], sid.as_str());
    // The version is the value's: the row's last_updated_at.
    let row = w.store.get_secret(&sid).await.unwrap();
    assert_eq!(
        ann["bindings"]["OPENAI_API_KEY"]["version"].as_i64(),
        Some(row.last_updated_at)
    );
    assert!(ann["bindings"]["SECOND"]["version"].as_i64().unwrap() > 0);
    assert_no_plaintext("the Pod", &serde_json::to_string(&pod).unwrap(), VALUE);

    // The per-Job Secret: right values, owned by the Job.
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), n);
    let s = secrets.get(&secret_name).await.unwrap();
    let data = s.data.as_ref().unwrap();
    assert_eq!(data["OPENAI_API_KEY"].0, VALUE.as_bytes());
    assert_eq!(data["SECOND"].0, b"second-value-xyz");
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Job", job.as_str(), uid.as_str())
    );

    // Audit: pod, Job, namespace, bindings and KEK versions; no value.
    let rows = w.audit(n).await;
    let read = rows
        .iter()
        .find(|r| r.action == "READ_RESOURCE_VALUES" && r.outcome == "SUCCESS")
        .expect("a value read was audited");
    let principal = read.principal.as_deref().unwrap();
    assert!(
        principal.starts_with(&format!("webhook:{n}/{job}/{job}-")),
        "{principal}"
    );
    assert_eq!(read.resource.as_deref(), Some("SCORER_JOB/scorer-1"));
    let detail = read.detail.as_deref().unwrap();
    assert!(
        detail.contains(&format!("OPENAI_API_KEY={sid}@kek_v1")),
        "{detail}"
    );
    assert!(detail.contains("SECOND="), "{detail}");
    for r in &rows {
        assert_no_plaintext("an audit row", &format!("{r:?}"), VALUE);
    }
    assert!(w.count(n, "injected") >= 1);
    assert!(w.metrics.decrypts.with_label_values(&[n]).get() >= 2);
    assert!(
        w.metrics
            .render()
            .contains("mlflow_secrets_operator_injections_total")
    );
    // Every stage of an injecting admission is timed, the Job verification
    // by where its answer came from (cache or GET).
    let stage = |s: &str| w.metrics.stage_snapshot(s).count;
    for s in [
        "store_read",
        "audit",
        "patch",
        "secret_write",
        "total",
        "ours",
    ] {
        assert!(stage(s) >= 1, "stage {s} observed");
    }
    assert!(stage("job_verify_cache") + stage("job_verify_api") >= 1);
    assert!(w.metrics.render().contains(
        "mlflow_secrets_operator_webhook_stage_seconds_bucket{stage=\"ours\",le=\"0.00005\"}"
    ));

    // Deleting the Job garbage-collects the Secret.
    let jobs: Api<Job> = Api::namespaced(w.client.clone(), n);
    jobs.delete(&job, &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(240),
        "the per-Job Secret to be collected",
        || {
            let secrets = secrets.clone();
            let name = secret_name.clone();
            async move {
                secrets
                    .get_opt(&name)
                    .await
                    .ok()
                    .filter(Option::is_none)
                    .map(|_| ())
            }
        },
    )
    .await;
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_file_mode_mounts_the_secret_read_only() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-file").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    let job = unique_name("scorer");
    let mode = [("secrets.mlflow.org/inject-mode", "secret-file")];
    create_job(&w.client, n, &job_json(&job, RID, &mode, false)).await;
    let pod = job_pod(&w.client, n, &job).await;
    let spec = pod.spec.as_ref().unwrap();
    let vol = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref())
                == Some(&format!("{job}-mlflow-secrets"))
        })
        .expect("a volume of the per-Job Secret");
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == vol.name)
            .unwrap_or_else(|| panic!("{} does not mount it", c.name));
        assert_eq!(m.mount_path, "/var/run/secrets/mlflow");
        assert_eq!(m.read_only, Some(true));
        assert!(
            !c.env.iter().flatten().any(|e| e.name == "OPENAI_API_KEY"),
            "file mode adds no env"
        );
    }
    assert_eq!(injected(&pod)["mode"], "secret-file");
    assert_no_plaintext("the Pod", &serde_json::to_string(&pod).unwrap(), VALUE);
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_secret_denies_the_jobs_pod_with_the_reason_in_its_events() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-revoked").await;
    let n = ns.name();
    let sid = w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    w.store.revoke_secret(&sid, "test").await.unwrap();
    let job = unique_name("scorer");
    create_job(&w.client, n, &job_json(&job, RID, &[], false)).await;
    let msg = eventually(
        Duration::from_secs(60),
        "a FailedCreate event on the Job",
        || {
            let client = w.client.clone();
            let (n, job) = (n.to_string(), job.clone());
            async move {
                let text = events_of(&client, &n, "Job", &job).await;
                text.contains("is revoked").then_some(text)
            }
        },
    )
    .await;
    assert!(
        msg.contains("secret 'openai' (bound as OPENAI_API_KEY)"),
        "{msg}"
    );
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    let sel = format!("batch.kubernetes.io/job-name={job}");
    assert!(
        pods.list(&ListParams::default().labels(&sel))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(!job_secret_exists(&w, n, &job).await);
    assert!(w.count(n, "denied") >= 1);
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_namespace_claiming_the_resource_id_gets_nothing() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let owner_ns = w.namespace("wh-owner").await;
    w.bind(owner_ns.name(), "openai", VALUE, RID, "OPENAI_API_KEY")
        .await;
    let thief = w.namespace("wh-thief").await;
    let t = thief.name();
    let job = unique_name("scorer");
    let uid = create_job(&w.client, t, &job_json(&job, RID, &[], true)).await;
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), t);
    let text = denied(
        &pods,
        &pod_json("thief", RID, Some((&job, &uid)), &[]),
        "denied",
    )
    .await;
    assert!(
        text.contains(&format!(
            "no secrets are bound to SCORER_JOB/{RID} in namespace '{t}'"
        )),
        "{text}"
    );
    assert!(!job_secret_exists(&w, t, &job).await);
    assert_eq!(w.metrics.decrypts.with_label_values(&[t]).get(), 0);
    // The denial is audited in the thief's namespace (off the response
    // path, so it may land just after the answer).
    eventually(Duration::from_secs(10), "the denial's audit row", || {
        let w = &w;
        async move {
            w.audit(t)
                .await
                .iter()
                .any(|r| {
                    r.outcome == "DENIED"
                        && r.detail
                            .as_deref()
                            .unwrap_or("")
                            .contains("no secrets are bound")
                })
                .then_some(())
        }
    })
    .await;
    thief.cleanup().await;
    owner_ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlabelled_pod_is_never_sent_to_the_webhook() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-unlabelled").await;
    let n = ns.name();
    let before = w.total(n);
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    let mut plain = pod_json("plain", RID, None, &[]);
    plain.metadata.labels = None;
    pods.create(&PostParams::default(), &plain).await.unwrap();
    // A labelled dryRun pod afterwards: once it is counted, the unlabelled
    // one would have been too.
    let _ = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod_json("labelled", RID, None, &[]),
        )
        .await;
    assert_eq!(
        w.total(n) - before,
        1,
        "only the labelled pod reached the webhook"
    );
    assert_eq!(w.count(n, "skipped"), 0);
    let stored = pods.get("plain").await.unwrap();
    assert!(
        stored
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("secrets.mlflow.org/injected"))
    );
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_patches_but_writes_and_decrypts_nothing() {
    support::skip_if_off!();
    let w = Webhook::start(Opts::default()).await;
    let ns = w.namespace("wh-dryrun").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    let job = unique_name("scorer");
    let uid = create_job(&w.client, n, &job_json(&job, RID, &[], true)).await;
    let audit_before = w.audit(n).await.len();
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    let pod = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod_json("dry", RID, Some((&job, &uid)), &[]),
        )
        .await
        .expect("dryRun is allowed");
    let env = pod.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let r = env[0]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (r.name.as_str(), r.key.as_str()),
        (format!("{job}-mlflow-secrets").as_str(), "OPENAI_API_KEY")
    );
    assert!(!job_secret_exists(&w, n, &job).await);
    // Audited as the metadata read it is (off the response path), and no
    // value read.
    let rows = eventually(Duration::from_secs(10), "the dryRun audit row", || {
        let w = &w;
        async move {
            let rows = w.audit(n).await;
            (rows.len() > audit_before).then_some(rows)
        }
    })
    .await;
    assert_eq!(rows.len(), audit_before + 1, "{rows:?}");
    let row = rows
        .iter()
        .find(|r| r.action == "LIST_BINDINGS")
        .expect("a metadata row");
    assert_eq!(row.outcome, "SUCCESS", "{row:?}");
    assert!(
        row.detail.as_deref().unwrap_or("").contains("dryRun"),
        "{row:?}"
    );
    assert!(!rows.iter().any(|r| r.action == "READ_RESOURCE_VALUES"));
    assert_eq!(w.metrics.decrypts.with_label_values(&[n]).get(), 0);
    assert_eq!(w.count(n, "dry_run"), 1);
    assert!(pods.get_opt("dry").await.unwrap().is_none());
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_is_denied_within_the_deadline() {
    support::skip_if_off!();
    let w = Webhook::start(Opts {
        deadline: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let ns = w.namespace("wh-hang").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    let job = unique_name("scorer");
    let uid = create_job(&w.client, n, &job_json(&job, RID, &[], true)).await;
    // Another process holds the write lock: every store write (the audit
    // row of a decrypt) waits on SQLite's 10 s busy timeout.
    let path = w.db.sqlite_path().unwrap();
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    let t0 = Instant::now();
    let text = denied(
        &pods,
        &pod_json("hang", RID, Some((&job, &uid)), &[]),
        "denied",
    )
    .await;
    let took = t0.elapsed();
    assert!(text.contains("store did not answer within 2s"), "{text}");
    assert!(took < Duration::from_secs(5), "answered in {took:?}");
    assert!(w.count(n, "error") >= 1);
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    ns.cleanup().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypts_are_rate_limited_per_namespace() {
    support::skip_if_off!();
    let w = Webhook::start(Opts {
        limits: Some(DecryptLimits {
            per_principal_per_minute: None,
            per_workspace_per_minute: Some(2),
        }),
        ..Default::default()
    })
    .await;
    let ns = w.namespace("wh-limit").await;
    let n = ns.name();
    w.bind(n, "openai", VALUE, RID, "OPENAI_API_KEY").await;
    let job = unique_name("scorer");
    let uid = create_job(&w.client, n, &job_json(&job, RID, &[], true)).await;
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), n);
    for i in 0..2 {
        pods.create(
            &PostParams::default(),
            &pod_json(&format!("ok-{i}"), RID, Some((&job, &uid)), &[]),
        )
        .await
        .unwrap_or_else(|e| panic!("pod {i}: {e}"));
    }
    let text = denied(
        &pods,
        &pod_json("limited", RID, Some((&job, &uid)), &[]),
        "the third decrypt in a minute is refused",
    )
    .await;
    assert!(
        text.contains(&format!("decrypt rate limit exceeded for workspace '{n}'")),
        "{text}"
    );
    let rows = w.audit(n).await;
    assert!(
        rows.iter()
            .any(|r| r.outcome == "DENIED"
                && r.detail.as_deref().unwrap_or("").contains("rate limit")),
        "{rows:?}"
    );
    ns.cleanup().await;
    w.stop().await;
}

/// Whether the per-Job Secret of `job` exists in `ns`.
async fn job_secret_exists(w: &Webhook, ns: &str, job: &str) -> bool {
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), ns);
    secrets
        .get_opt(&format!("{job}-mlflow-secrets"))
        .await
        .unwrap()
        .is_some()
}
