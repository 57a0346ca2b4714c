//! Property tests of the parsers an attacker (or a careless operator)
//! reaches on the REST side: the tokens-file line, REST
//! bodies and query strings, and page tokens.
//!
//! Properties: nothing panics (no 500), no error quotes the input (a
//! marker planted in the input never comes back), and accepted tokens-file
//! lines round-trip. 4,096 cases per property by default; a longer run:
//! `PROPTEST_CASES=1000000 cargo test --release --test server_fuzz`.
//! (cargo-fuzz needs a nightly toolchain and cargo-afl needs afl++, neither
//! of which this build has: see docs/server.md, "Fuzzing".)

use std::collections::BTreeSet;

use crate::support::*;
use axum::http::{Method, StatusCode};
use mlflow_secrets::server::auth::{Role, Scope, Workspaces};
use mlflow_secrets::server::tokens_file::{
    format_line, format_rfc3339, parse_line, parse_rfc3339, parse_ttl,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// A value planted in inputs: it must never appear in an answer or error.
const MARKER: &str = "sk-PLANTED-7c1e";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Pieces a tokens-file line is made of, good and bad, plus the marker.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("admin".to_string()),
        Just("runner".to_string()),
        Just("writer".to_string()),
        Just(format!("sha256:{}", "ab".repeat(32))),
        Just("workspaces=*".to_string()),
        Just("workspaces=team-a,team-b".to_string()),
        Just("resource=SCORER_JOB/x".to_string()),
        Just("expires=2030-01-01T00:00:00Z".to_string()),
        Just(MARKER.to_string()),
        Just(format!("workspaces={MARKER}")),
        Just(format!("resource=X/{MARKER} ")),
        Just(format!("expires={MARKER}")),
        Just(format!("sha256:{MARKER}")),
        "[ -~]{0,24}",
        "\\PC{0,12}",
    ]
}

#[test]
fn tokens_file_lines_never_panic_nor_echo() {
    let strategy = prop::collection::vec(fragment(), 0..8).prop_map(|v| v.join(" "));
    runner()
        .run(&strategy, |line| {
            match parse_line(line.trim()) {
                Err(e) => prop_assert!(!e.contains(MARKER), "{e}"),
                // Whatever is accepted prints back to a line that parses
                // to the same thing.
                Ok(t) => {
                    let again = format_line(&t.principal, t.role, &t.digest, &t.scope);
                    prop_assert_eq!(parse_line(&again), Ok(t));
                }
            }
            Ok(())
        })
        .unwrap();
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Admin),
        Just(Role::Writer),
        Just(Role::Reader),
        Just(Role::Runner)
    ]
}

#[test]
fn accepted_tokens_file_lines_round_trip() {
    let ws = "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?";
    let strategy = (
        "[!\"$-~][!-~]{0,39}",
        role(),
        any::<[u8; 32]>(),
        prop::collection::btree_set(ws, 1..4),
        any::<bool>(),
        ("[A-Z][A-Z0-9_]{0,10}", "[!-~]{1,30}"),
        prop::option::of(0i64..4_102_444_800),
    );
    runner()
        .run(
            &strategy,
            |(principal, role, digest, set, all, res, expires)| {
                let runner = role == Role::Runner;
                let set: BTreeSet<String> = if runner {
                    set.into_iter().take(1).collect()
                } else {
                    set
                };
                let scope = Scope {
                    workspaces: if all && !runner {
                        Workspaces::All
                    } else {
                        Workspaces::Only(set)
                    },
                    resource: runner.then_some(res),
                    expires,
                };
                let line = format_line(&principal, role, &digest, &scope);
                let t =
                    parse_line(&line).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
                prop_assert_eq!(
                    (t.principal, t.role, t.digest, t.scope),
                    (principal, role, digest, scope)
                );
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn times_and_ttls_never_panic_and_round_trip() {
    runner()
        .run(
            &("\\PC{0,40}", -62_135_596_800i64..253_402_300_799),
            |(s, t)| {
                let _ = parse_rfc3339(&s);
                let _ = parse_ttl(&s);
                prop_assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
                Ok(())
            },
        )
        .unwrap();
}

/// JSON-ish bodies: fragments of valid requests and broken JSON. The
/// marker only ever stands where a *value* goes: identifiers (names, ids)
/// may be quoted in errors by design, values never.
fn body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("null".to_string()),
        Just("5".to_string()),
        Just("[".to_string()),
        Just("\"secret_name\":\"n\"".to_string()),
        Just("\"workspace\"".to_string()),
        Just("\"team-a\"".to_string()),
        Just("\"secret_id\"".to_string()),
        Just("\"resource_id\":\"nightly-eval\"".to_string()),
        Just("\"binding_name\"".to_string()),
        Just("\"is_shared\"".to_string()),
        Just(format!("\"value\":\"{MARKER}\"")),
        Just(format!("\"value\":\"{MARKER}")),
        Just(format!("\"value\":{{\"k\":\"{MARKER}\"}}")),
        Just(format!(
            "\"value\":{{\"k\":\"{MARKER}\",\"k\":\"{MARKER}\"}}"
        )),
        Just(format!("\"value\":[\"{MARKER}\"]")),
        "[a-z{}:,\\[\\] ]{0,8}",
    ];
    prop::collection::vec(piece, 0..14).prop_map(|v| v.concat())
}

/// Query strings: known and unknown keys with hostile values; the marker
/// only in page tokens (which are opaque and never quoted).
fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("workspace"),
        Just("secret_id"),
        Just("secret_name"),
        Just("state"),
        Just("is_shared"),
        Just("max_results"),
        Just("resource_type"),
        Just("resource_id"),
        Just("after_seq"),
        Just("binding_id"),
        Just("nonsense"),
    ];
    let value = prop_oneof![
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("team-a".to_string()),
        Just("%00%ff".to_string()),
        "[A-Za-z0-9_=%+/-]{0,40}",
    ];
    let token = prop_oneof![
        Just(String::new()),
        Just(format!("&page_token={MARKER}")),
        Just(format!("&page_token=%22{MARKER}%22")),
    ];
    (prop::collection::vec((key, value), 0..5), token).prop_map(|(kv, token)| {
        kv.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
            + &token
    })
}

/// Page tokens: base64url-looking noise, the marker inside noise, and
/// base64url of the marker (decodes to text that must not come back).
fn page_token() -> impl Strategy<Value = String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    prop_oneof![
        "[A-Za-z0-9_-]{0,80}",
        "[A-Za-z0-9_=-]{0,80}",
        "\\PC{0,20}",
        "[A-Za-z0-9_-]{0,20}".prop_map(|p| format!("{p}{MARKER}")),
        Just(b64.encode(MARKER)),
        Just(b64.encode(format!("[\"{MARKER}\",\"x\"]"))),
        Just(b64.encode(format!("{MARKER}\u{0}x"))),
    ]
}

fn check(r: &Resp, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        r.status.is_client_error() || r.status == StatusCode::OK,
        "{what}: {} {}",
        r.status,
        r.text
    );
    prop_assert!(!r.everything().contains(MARKER), "{what}: {}", r.text);
    Ok(())
}

#[test]
fn rest_bodies_queries_and_page_tokens_never_fail_inside_nor_echo() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fx = rt.block_on(Fixture::new());
    let app = fx.app(0);
    // Some rows, so real page tokens exist.
    rt.block_on(async {
        for i in 0..3 {
            create(&app, &format!("s{i}"), "sk-0123456789abcdef", true).await;
        }
    });
    // Bodies to every body-taking endpoint.
    let ops = prop_oneof![
        Just((Method::POST, "create")),
        Just((Method::PATCH, "update")),
        Just((Method::POST, "revoke")),
        Just((Method::DELETE, "delete")),
        Just((Method::POST, "bind")),
        Just((Method::DELETE, "unbind")),
        Just((Method::POST, "resolve")),
    ];
    let token = prop_oneof![Just(WRITER), Just(RUNNER), Just(TEAM_A_WRITER)];
    runner()
        .run(&(ops, token, body()), |((method, op), token, body)| {
            let r = rt.block_on(call(
                &app,
                method,
                &format!("{API}/{op}"),
                Some(token),
                Some(&body),
            ));
            check(&r, &format!("{op} {body}"))
        })
        .unwrap();
    let gets = prop_oneof![
        Just("get"),
        Just("list"),
        Just("get-binding"),
        Just("list-bindings"),
        Just("list-audit"),
    ];
    runner()
        .run(&(gets, query()), |(op, q)| {
            let r = rt.block_on(get(&app, &format!("{op}?{q}"), Some(ADMIN)));
            check(&r, &format!("{op}?{q}"))
        })
        .unwrap();
    runner()
        .run(&page_token(), |t| {
            let enc: String = form_urlencoded::byte_serialize(t.as_bytes()).collect();
            for op in ["list", "list-bindings"] {
                let r = rt.block_on(get(
                    &app,
                    &format!("{op}?max_results=1&page_token={enc}"),
                    Some(TEAM_A_READER),
                ));
                check(&r, &format!("{op} page_token={t}"))?;
            }
            Ok(())
        })
        .unwrap();
}

include!("../../fuzz/fuzz_targets/checks.rs");

/// The libFuzzer corpus (`fuzz/corpus`, grown by `scripts/fuzz.sh`) replayed
/// through the fuzz targets' own checks in every `cargo test`, without
/// instrumentation.
#[test]
fn fuzz_corpus_replays() {
    let files = |t: &str| -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(t);
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect()
    };
    let lines = files("tokens_line");
    assert!(lines.len() >= 4, "the tokens_line corpus is missing");
    let accepted: usize = lines
        .iter()
        .filter_map(|d| std::str::from_utf8(d).ok())
        .map(check_tokens_text)
        .sum();
    assert!(accepted >= 3, "the corpus lost its valid lines");
    let bodies = files("rest_requests");
    assert!(bodies.len() >= 3, "the rest_requests corpus is missing");
    for data in &bodies {
        check_rest_request(data);
    }
}
