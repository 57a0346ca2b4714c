//! `mlflow-secrets run` figures (docs/benchmarks.md, "run"):
//!
//! 1. masking throughput on one core: log text with no value in it and a
//!    value every 64 KiB, through `Masker` (MB/s);
//! 2. start to the child's exec against a live https `serve` with a runner
//!    token: wall time of `run -- /bin/true` minus `/bin/true` alone,
//!    median and p99 over many iterations (resolve included).
//!
//! `cargo bench --bench run` (release build); `RUN_BENCH_ITERS` sets the
//! iteration count of (2). Under `cargo test --all-targets` it runs a
//! short smoke version.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mlflow_secrets::run::mask::{Masker, Patterns};

const BIN: &str = env!("CARGO_BIN_EXE_mlflow-secrets");
const KEY: &str = "sk-bench-0123456789abcdef0123456789";

fn masking(total: usize) {
    let values = [
        ("OPENAI_API_KEY", KEY),
        ("AZURE_API_KEY", "az-0123456789abcdef0123"),
        ("ANTHROPIC_API_KEY", "sk-ant-api03-0123456789abcdefghij"),
    ];
    let (p, _) = Patterns::new(values.iter().copied());
    let p = p.unwrap();
    let mut chunk = Vec::with_capacity(64 * 1024);
    while chunk.len() < 64 * 1024 - 200 {
        chunk.extend_from_slice(
            b"2026-12-01T12:00:00Z INFO step=42 loss=0.1234 lr=3e-4 tokens/s=9001\n",
        );
    }
    chunk.extend_from_slice(KEY.as_bytes());
    chunk.push(b'\n');
    let mut m = Masker::new(p);
    let mut out = Vec::with_capacity(chunk.len() + 1024);
    let mut done = 0;
    let t = Instant::now();
    while done < total {
        out.clear();
        m.feed(&chunk, &mut out);
        std::hint::black_box(&out);
        done += chunk.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "masking: {} MiB in {:.3} s = {:.0} MB/s (one thread, 3 values x their forms)",
        done >> 20,
        secs,
        done as f64 / secs / 1e6
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn time(mut c: Command) -> f64 {
    let t = Instant::now();
    let st = c.status().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(st.success());
    ms
}

fn startup(default_iters: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = format!("sqlite://{}", d.join("s.db").display());
    let cli = |args: &[&str]| {
        let o = Command::new(BIN)
            .current_dir(d)
            .env("MLFLOW_SECRETS_TEST_MODE", "1")
            .env("MLFLOW_SECRETS_STORE_URI", &db)
            .env("RUST_LOG", "error")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    cli(&["-q", "create", "k", "--value", KEY]);
    cli(&[
        "-q",
        "bind",
        "k",
        "--resource-id",
        "bench",
        "--name",
        "OPENAI_API_KEY",
    ]);
    let (token, line) =
        testkit::runner::minted(&cli(&testkit::runner::token_create_args("r", "bench")));
    std::fs::write(d.join("tokens"), format!("{line}\n")).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(d.join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(d.join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(BIN)
        .current_dir(d)
        .env("MLFLOW_SECRETS_TEST_MODE", "1")
        .env("MLFLOW_SECRETS_STORE_URI", &db)
        .env("RUST_LOG", "error")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--auth-tokens-file",
            "tokens",
            "--tls-cert",
            "tls.crt",
            "--tls-key",
            "tls.key",
        ])
        // The bench measures run, not the rate limits.
        .args([
            "--rate-limit-per-minute",
            "1000000",
            "--decrypt-limit-per-minute",
            "1000000",
        ])
        .args(["--decrypt-limit-per-workspace-per-minute", "1000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let iters: usize = std::env::var("RUN_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_iters);
    let run = || {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env(
                "MLFLOW_SECRETS_STORE_URI",
                format!("https://localhost:{port}"),
            )
            .env("MLFLOW_SECRETS_CA_CERT", d.join("tls.crt"))
            .env("MLFLOW_SECRETS_TOKEN", &token)
            .args(["run", "--resource-id", "bench", "--", "/bin/true"])
            .stdout(Stdio::null());
        c
    };
    // Warm the page cache and the server's KEK cache.
    for _ in 0..5 {
        time(run());
    }
    let (mut with, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        with.push(time(run()));
        bare.push(time(Command::new("/bin/true")));
    }
    let (w50, w99) = (pct(&mut with, 0.5), pct(&mut with, 0.99));
    let (b50, b99) = (pct(&mut bare, 0.5), pct(&mut bare, 0.99));
    println!(
        "run -- /bin/true over https (resolve included), {iters} iterations: median {w50:.2} ms, p99 {w99:.2} ms; \
         /bin/true alone: median {b50:.2} ms, p99 {b99:.2} ms; run's own share: median {:.2} ms, p99 {:.2} ms",
        w50 - b50,
        w99 - b99
    );
    let _ = server.kill();
    let _ = server.wait();
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets`
    // (no `--bench`) a short smoke run only. A filter selects one figure.
    let full = std::env::args().any(|a| a == "--bench");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let want = |n: &str| filter.as_deref().is_none_or(|f| n.contains(f));
    if want("masking") {
        masking(if full { 1 << 30 } else { 16 << 20 });
    }
    if want("startup") {
        startup(if full { 200 } else { 3 });
    }
}
