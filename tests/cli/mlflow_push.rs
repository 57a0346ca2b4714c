//! `mlflow push` against a real `mlflow server` 3.17.2 (loopback, SQLite
//! backend, `MLFLOW_CRYPTO_KEK_PASSPHRASE` set; docs/design.md §13): MLflow's
//! own decrypt path reads our value; the link is an `MLFLOW_GATEWAY`
//! binding that does not count against a private secret; `update` + `push
//! --all` re-pushes only what changed; a same-name gateway secret made in
//! MLflow by hand is a conflict and is left alone; MLflow's errors come
//! back with their `error_code` and never with the value.

use serde_json::{Value, json};
use testkit::mlflow::{
    MLFLOW_ADMIN, MLFLOW_PASS, MlflowServer, Ours, mlflow_decrypt_all, mlflow_decrypt_workspaces,
    mlflow_list, run,
};

const V1: &str = "sk-push-first-value-0123456789";
const V2: &str = "sk-push-second-value-9876543210";
const HAND: &str = "sk-made-by-hand-in-mlflow-4242";
const OURS_HAND: &str = "sk-ours-for-the-same-name-777";
const AZURE: &str = "azure-push-key-0123456789abc";
const TEAM_A: &str = "sk-team-a-value-for-the-same-name-31";

const FORBIDDEN: &[&str] = &[
    V1,
    V2,
    HAND,
    OURS_HAND,
    AZURE,
    TEAM_A,
    MLFLOW_PASS,
    MLFLOW_ADMIN.1,
];

fn with_stdin(c: std::process::Command, input: &str) -> testkit::mlflow::Run {
    let out = testkit::output_with_stdin(c, Some(input));
    let r = testkit::mlflow::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(r.code, 0, "{}", r.stderr);
    r
}

fn create(ours: &Ours, name: &str, extra: &[&str], value: &str) {
    let mut c = ours.cmd();
    c.args(["create", name]).args(extra);
    with_stdin(c, value);
}

/// The secret both tests push: private, a string, provider `openai`.
fn create_openai_key(ours: &Ours) {
    create(
        ours,
        "openai-key",
        &["--provider", "openai", "--value-stdin"],
        V1,
    );
}

fn push(ours: &Ours, server: &MlflowServer, args: &[&str]) -> testkit::mlflow::Run {
    let mut c = ours.cmd();
    c.args([
        "mlflow",
        "push",
        "--tracking-uri",
        &server.url,
        "-o",
        "json",
    ])
    .args(args);
    run(c, FORBIDDEN)
}

fn links(ours: &Ours) -> Vec<Value> {
    let mut c = ours.cmd();
    c.args([
        "list-bindings",
        "--resource-type",
        "MLFLOW_GATEWAY",
        "-o",
        "json",
    ]);
    let r = run(c, FORBIDDEN);
    assert_eq!(r.code, 0, "{}", r.stderr);
    match r.json() {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("bindings") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_create_update_conflict_and_errors_against_real_mlflow() {
    testkit::mlflow_skip_if_off!();
    let server = MlflowServer::start().await;
    let ours = Ours::new();

    // A private string secret with a provider: created in MLflow as
    // {"api_key": value}.
    create_openai_key(&ours);
    let r = push(&ours, &server, &["openai-key"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pushed = r.json();
    assert_eq!(pushed["action"], "created");
    let mlflow_id = pushed["mlflow_secret_id"].as_str().unwrap().to_string();
    assert!(mlflow_id.starts_with("s-"), "{mlflow_id}");
    let theirs = mlflow_decrypt_all(&server.db_uri);
    assert!(
        theirs["openai-key"] == json!({"api_key": V1}),
        "MLflow's own decrypt path must read our value"
    );
    let listed = mlflow_list(&server.db_uri);
    assert!(listed.contains(&(
        "openai-key".to_string(),
        mlflow_id.clone(),
        Some("openai".to_string())
    )));

    // The link: an MLFLOW_GATEWAY binding to MLflow's id, recording the
    // version; it does not stop the private secret from serving one job.
    let l = links(&ours);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["resource_id"], json!(mlflow_id));
    assert_eq!(
        l[0]["binding_name"],
        json!(format!("PUSHED_V{}", pushed["version"]))
    );
    let mut c = ours.cmd();
    c.args([
        "bind",
        "openai-key",
        "--resource-type",
        "SCORER_JOB",
        "--resource-id",
        "job-1",
        "--name",
        "OPENAI_API_KEY",
    ]);
    let r = run(c, FORBIDDEN);
    assert_eq!(r.code, 0, "the link is not a second resource: {}", r.stderr);

    // Nothing changed: --all leaves it alone.
    let r = push(&ours, &server, &["--all"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let all = r.json();
    assert_eq!(all["pushed"][0]["action"], "unchanged", "{all}");

    // update + push --all: MLflow holds the new value, and the link the
    // new version.
    let mut c = ours.cmd();
    c.args(["update", "openai-key", "--value-stdin"]);
    with_stdin(c, V2);
    let all = push(&ours, &server, &["--all"]).json();
    assert_eq!(all["pushed"][0]["action"], "updated", "{all}");
    assert_eq!(all["pushed"][0]["mlflow_secret_id"], json!(mlflow_id));
    assert!(all["failed"].as_array().unwrap().is_empty(), "{all}");
    assert!(mlflow_decrypt_all(&server.db_uri)["openai-key"] == json!({"api_key": V2}));
    let l = links(&ours);
    assert_eq!(l.len(), 1, "the old version's link is replaced: {l:?}");
    assert_eq!(
        l[0]["binding_name"],
        json!(format!("PUSHED_V{}", all["pushed"][0]["version"]))
    );

    // A gateway secret of the same name made in MLflow by hand: a
    // conflict, and MLflow's value is untouched.
    testkit::mlflow::mlflow_seed(
        &server.db_uri,
        &json!([{"name": "hand-made", "value": {"api_key": HAND}, "provider": "openai"}]),
    );
    create(&ours, "hand-made", &["--value-stdin"], OURS_HAND);
    let r = push(&ours, &server, &["hand-made"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("already exists and mlflow-secrets did not create it"),
        "{}",
        r.stderr
    );
    assert!(mlflow_decrypt_all(&server.db_uri)["hand-made"] == json!({"api_key": HAND}));

    // MLflow refuses 'api_base' inside secret_value (it steers egress): the
    // error carries MLflow's error_code, never the value.
    create(
        &ours,
        "azure-creds",
        &["--json-file", "/dev/stdin"],
        &json!({"api_key": AZURE, "api_base": "https://x.openai.azure.com"}).to_string(),
    );
    let r = push(&ours, &server, &["azure-creds"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("HTTP 400 INVALID_PARAMETER_VALUE"),
        "{}",
        r.stderr
    );

    // An unreachable server is named as such.
    let r = push_to(&ours, "http://127.0.0.1:9");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is unreachable"), "{}", r.stderr);

    // Plain http to a non-loopback host is refused before anything is sent.
    let r = push_to(&ours, "http://mlflow.invalid:5000");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("only to a loopback host"), "{}", r.stderr);
}

/// `mlflow push openai-key` to `tracking_uri`, which must not be reached.
fn push_to(ours: &Ours, tracking_uri: &str) -> testkit::mlflow::Run {
    let mut c = ours.cmd();
    c.args([
        "mlflow",
        "push",
        "openai-key",
        "--tracking-uri",
        tracking_uri,
    ]);
    run(c, FORBIDDEN)
}

/// MLflow's basic-auth app: `push` signs in as MLflow clients do
/// (`MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`) and MLflow
/// decrypts our value; without credentials, or with a wrong password, the
/// push fails naming MLflow's answer, writes no link, and never prints the
/// password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_signs_in_to_mlflow_basic_auth() {
    testkit::mlflow_skip_if_off!();
    let server = MlflowServer::start_with_basic_auth().await;
    let ours = Ours::new();
    create_openai_key(&ours);
    let push_as = |user: Option<(&str, &str)>| {
        let mut c = ours.cmd();
        if let Some((u, p)) = user {
            c.env("MLFLOW_TRACKING_USERNAME", u)
                .env("MLFLOW_TRACKING_PASSWORD", p);
        }
        c.args([
            "mlflow",
            "push",
            "openai-key",
            "--tracking-uri",
            &server.url,
        ]);
        run(c, FORBIDDEN)
    };

    for (who, user) in [
        ("no credentials", None),
        (
            "a wrong password",
            Some((MLFLOW_ADMIN.0, "not-the-password")),
        ),
    ] {
        let r = push_as(user);
        assert_eq!(r.code, 1, "{who}: {}", r.stderr);
        assert!(r.stderr.contains("HTTP 401"), "{who}: {}", r.stderr);
        assert!(links(&ours).is_empty(), "{who}: no link is recorded");
    }
    assert!(
        mlflow_list(&server.db_uri).is_empty(),
        "nothing reached MLflow"
    );

    let r = push_as(Some(MLFLOW_ADMIN));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        mlflow_decrypt_all(&server.db_uri)["openai-key"] == json!({"api_key": V1}),
        "MLflow's own decrypt path must read our value"
    );
    assert_eq!(links(&ours).len(), 1);
}

/// An MLflow server with workspaces (`MLFLOW_ENABLE_WORKSPACES`): a
/// secret of ours in workspace `team-a` lands in MLflow's `team-a` (the
/// `X-MLFLOW-WORKSPACE` header), one of the same name in `default` lands in
/// MLflow's `default`, and each holds its own value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_names_the_workspace_on_a_server_with_workspaces() {
    testkit::mlflow_skip_if_off!();
    let server = MlflowServer::start_with_workspaces(&["team-a"]).await;
    let ours = Ours::new();
    create_openai_key(&ours);
    create(
        &ours,
        "openai-key",
        &["--workspace", "team-a", "--value-stdin"],
        TEAM_A,
    );
    for ws in ["default", "team-a"] {
        let r = push(&ours, &server, &["openai-key", "--workspace", ws]);
        assert_eq!(r.code, 0, "push from {ws}: {}", r.stderr);
        assert_eq!(r.json()["action"], "created", "{ws}: {}", r.stdout);
    }
    let theirs = mlflow_decrypt_workspaces(&server.db_uri);
    assert_eq!(theirs.len(), 2, "{:?}", theirs.keys());
    assert!(theirs["default/openai-key"] == json!({"api_key": V1}));
    assert!(theirs["team-a/openai-key"] == json!({"api_key": TEAM_A}));
}
