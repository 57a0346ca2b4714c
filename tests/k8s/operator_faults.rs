//! End to end, the operator's failure cases: leader failover with two
//! operator replicas, the database going down and coming back, and a wrong
//! passphrase. The operator runs as a process against the real control
//! plane; a loopback TCP forwarder plays the Service in front of the
//! replicas and the network path to PostgreSQL.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::operator::{
    OperatorSetup, TcpProxy, apply_secret_and_import, condition, crd_api, install_crds,
    operator_env, scorer_job, wait_condition,
};
use crate::support::{TestEnv, eventually, unique_name};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use testkit::TestKeystore;

const READY: Duration = Duration::from_secs(60);

async fn apply_binding(
    setup: &OperatorSetup,
    client: &kube::Client,
    ns: &str,
    name: &str,
    secret: &str,
    rid: &str,
) {
    let o: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": "MlflowSecretBinding",
        "metadata": { "name": name, "labels": setup.labels() },
        "spec": { "secretRef": { "name": secret }, "resourceId": rid, "bindingName": "API_KEY" }
    }))
    .unwrap();
    crd_api(client.clone(), ns, "MlflowSecretBinding")
        .patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&o))
        .await
        .unwrap();
}

/// Import `value` as the MlflowSecret `name` and bind it to `SCORER_JOB/<job>`
/// as `bind`, both Ready; the MlflowSecret API of `ns`.
async fn import_and_bind(
    setup: &OperatorSetup,
    client: &kube::Client,
    ns: &str,
    name: &str,
    value: &str,
    job: &str,
) -> Api<DynamicObject> {
    apply_secret_and_import(setup, true, client, ns, name, value).await;
    let secrets = crd_api(client.clone(), ns, "MlflowSecret");
    wait_condition(&secrets, name, "Ready", "True", READY).await;
    apply_binding(setup, client, ns, "bind", name, job).await;
    let bindings = crd_api(client.clone(), ns, "MlflowSecretBinding");
    wait_condition(&bindings, "bind", "Ready", "True", READY).await;
    secrets
}

/// Create Job `name` and wait for its outcome: `Ok(())` when its Pod exists
/// and is injected, `Err(events)` when its pod creation was refused.
async fn run_job(
    client: &kube::Client,
    ns: &str,
    name: &str,
    rid: &str,
) -> Result<(), Vec<String>> {
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &scorer_job(name, rid, true, None))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually(
        READY,
        &format!("job {name} to get a pod or be refused"),
        || {
            let pods = pods.clone();
            let events = events.clone();
            let name = name.to_string();
            async move {
                let l = pods
                    .list(&ListParams::default().labels(&format!("job-name={name}")))
                    .await
                    .ok()?;
                if let Some(p) = l.items.into_iter().next() {
                    let env = p.spec?.containers[0].env.clone().unwrap_or_default();
                    return Some(if env.iter().any(|e| e.name == "API_KEY") {
                        Ok(())
                    } else {
                        Err(vec![format!("pod of {name} created without injection")])
                    });
                }
                let ev: Vec<String> = events
                    .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
                    .map(|e| e.message.unwrap_or_default())
                    .collect();
                (!ev.is_empty()).then_some(Err(ev))
            }
        },
    )
    .await
}

async fn lease_holder(client: &kube::Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("mlflow-secrets-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_second_replica_keeps_injecting() {
    support::skip_if_off!();
    let (env, client) = operator_env().await;
    let ns = env.namespace("e2e-failover").await;
    let op_ns = env.namespace("e2e-failover-op").await;
    let tmp = tempfile::tempdir().unwrap();
    let ks = TestKeystore::new();
    let store_uri = format!("sqlite://{}", tmp.path().join("secrets.db").display());
    let proxy = TcpProxy::start(vec![]).await;
    let mut setup = OperatorSetup::for_keystore(store_uri, &ks, op_ns.name(), tmp.path());
    setup.lease_duration_secs = 6;
    setup.webhook_url = Some(format!("https://127.0.0.1:{}/mutate", proxy.port));
    setup.select(env, &ns).await;
    let mut a = setup.start(env, "replica-a").await;
    a.wait_ready(READY).await;
    let mut b = setup.start(env, "replica-b").await;
    b.wait_ready(READY).await;
    proxy.set_backends(vec![addr(a.port), addr(b.port)]);

    let secrets = import_and_bind(
        &setup,
        &client,
        ns.name(),
        "shared-key",
        "sk-failover-0001",
        "job-f",
    )
    .await;

    let leader = lease_holder(&client, op_ns.name()).await.expect("a leader");
    run_job(&client, ns.name(), "before", "job-f")
        .await
        .expect("injected before failover");

    // Kill the leader without letting it release the Lease.
    let killed_at = Instant::now();
    let (dead, survivor) = if leader == "replica-a" {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    dead.kill().await;
    proxy.set_backends(vec![addr(survivor.port)]);

    // Injection never stops: Jobs created during the takeover are injected
    // by the surviving replica.
    for i in 0..3 {
        run_job(&client, ns.name(), &format!("during-{i}"), "job-f")
            .await
            .unwrap_or_else(|ev| panic!("a Job during failover was refused: {ev:?}"));
    }
    let took_over = eventually(
        Duration::from_secs(30),
        "the survivor to take the Lease",
        || {
            let client = client.clone();
            let ns = op_ns.name().to_string();
            let want = survivor.identity.clone();
            async move { (lease_holder(&client, &ns).await? == want).then(Instant::now) }
        },
    )
    .await;
    let failover = took_over - killed_at;
    eprintln!(
        "failover took {failover:?} (lease duration {}s)",
        setup.lease_duration_secs
    );
    assert!(
        failover <= Duration::from_secs(setup.lease_duration_secs + 4),
        "takeover took {failover:?}, more than the lease duration plus a retry"
    );
    // The new leader reconciles.
    apply_secret_and_import(
        &setup,
        true,
        &client,
        ns.name(),
        "after-failover",
        "sk-failover-0002",
    )
    .await;
    wait_condition(&secrets, "after-failover", "Ready", "True", READY).await;
    run_job(&client, ns.name(), "after", "job-f")
        .await
        .expect("injected after failover");

    setup.cleanup(env).await;
    drop(a);
    drop(b);
    ns.cleanup().await;
    op_ns.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_denies_fast_and_recovers_by_itself() {
    support::skip_if_off!();
    sqlx::any::install_default_drivers();
    let Some((pg_url, _tmp_db)) = testkit::empty_database(testkit::Backend::Postgres).await else {
        eprintln!("PostgreSQL not configured: skipped (scripts/test.sh requires it)");
        return;
    };
    let env = TestEnv::get().await;
    install_crds(env).await;
    let client = env.client().await;
    let ns = env.namespace("e2e-dbdown").await;
    let op_ns = env.namespace("e2e-dbdown-op").await;
    let tmp = tempfile::tempdir().unwrap();
    let ks = TestKeystore::new();

    // Route the operator's database traffic through a forwarder we can cut.
    let url = url_parts(&pg_url);
    let proxy = TcpProxy::start(vec![url.addr]).await;
    let proxied = pg_url.replacen(&url.host_port, &format!("127.0.0.1:{}", proxy.port), 1);
    let setup = OperatorSetup::for_keystore(proxied, &ks, op_ns.name(), tmp.path());
    setup.select(env, &ns).await;
    let op = setup.start(env, "replica-db").await;
    op.wait_ready(READY).await;
    let secrets = import_and_bind(
        &setup,
        &client,
        ns.name(),
        "db-key",
        "sk-dbdown-0001",
        "job-db",
    )
    .await;

    // Database down: a labelled pod is denied quickly, with the reason.
    proxy.set_down(true);
    let t = Instant::now();
    let denied = run_job(&client, ns.name(), "while-down", "job-db")
        .await
        .expect_err("a pod must not be created while the store is down");
    let took = t.elapsed();
    eprintln!("denied after {took:?}: {denied:?}");
    assert!(took < Duration::from_secs(30), "no hang: {took:?}");
    assert!(denied.iter().any(|m| m.contains("denied")), "{denied:?}");
    // Reconciles fail and requeue: a new MlflowSecret is not Ready yet.
    apply_secret_and_import(
        &setup,
        true,
        &client,
        ns.name(),
        "during-outage",
        "sk-dbdown-0002",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let o = secrets.get("during-outage").await.unwrap();
    assert_ne!(
        condition(&o, "Ready").map(|c| c.0),
        Some("True".to_string()),
        "cannot be Ready while the store is down"
    );
    assert!(
        op.probe("/health").await == Some(200),
        "liveness does not depend on the database"
    );

    // Back up: everything recovers without a restart.
    proxy.set_down(false);
    wait_condition(
        &secrets,
        "during-outage",
        "Ready",
        "True",
        Duration::from_secs(120),
    )
    .await;
    run_job(&client, ns.name(), "after-recovery", "job-db")
        .await
        .expect("injected after the database came back");
    assert!(op.child.is_some());
    setup.cleanup(env).await;
    drop(op);
    ns.cleanup().await;
    op_ns.cleanup().await;
}

struct UrlParts {
    host_port: String,
    addr: SocketAddr,
}

/// host:port of a `postgres://user:pass@host:port/db` URL.
fn url_parts(url: &str) -> UrlParts {
    let after_scheme = url.split_once("://").unwrap().1;
    let authority = after_scheme.split('/').next().unwrap();
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .unwrap()
        .next()
        .unwrap();
    UrlParts {
        host_port: host_port.to_string(),
        addr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_is_not_ready_and_says_why() {
    support::skip_if_off!();
    let env = TestEnv::get().await;
    install_crds(env).await;
    let op_ns = env.namespace("e2e-badpass-op").await;
    let tmp = tempfile::tempdir().unwrap();
    let ks = TestKeystore::new();
    let wrong = tmp.path().join("wrong-passphrase");
    std::fs::write(&wrong, format!("not the passphrase {}\n", unique_name("x"))).unwrap();
    let store_uri = format!("sqlite://{}", tmp.path().join("secrets.db").display());
    let setup = OperatorSetup::new(store_uri, &ks.config.dir, &wrong, op_ns.name(), tmp.path());
    let op = setup.start(env, "replica-badpass").await;

    // The process stays up (liveness) but is not ready, and the log says why.
    eventually(READY, "/health to answer", || {
        let op = &op;
        async move { (op.probe("/health").await == Some(200)).then_some(()) }
    })
    .await;
    eventually(READY, "the wrong-passphrase log line", || {
        let logs = op.logs();
        async move {
            logs.contains("wrong passphrase for KEK version 1")
                .then_some(())
        }
    })
    .await;
    assert_eq!(op.probe("/ready").await, Some(503));
    let body = op.body("/health").await;
    assert!(body.contains("\"keystore\":\"not loaded\""), "{body}");
    assert!(
        lease_holder(&env.client().await, op_ns.name())
            .await
            .is_none(),
        "a replica without keys must not lead"
    );

    // Fixing the passphrase file is picked up without a restart.
    std::fs::write(&wrong, format!("{}\n", testkit::PASSPHRASE_V1)).unwrap();
    op.wait_ready(READY).await;
    setup.cleanup(env).await;
    drop(op);
    op_ns.cleanup().await;
}
