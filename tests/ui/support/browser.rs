//! A small Chrome DevTools Protocol client over `--remote-debugging-pipe`
//! (NUL-separated JSON on file descriptors 3 and 4): no WebSocket, no
//! browser download, only Debian's `chromium-headless-shell` (or
//! `chromium`). It records what the UI tests check on every page: every
//! response body (Network domain), console errors and exceptions, and CSP
//! violations (a `securitypolicyviolation` listener the protocol installs
//! before any page script runs; CDP scripts are not subject to the CSP).
//!
//! Browser discovery: `MLFLOW_SECRETS_UI_BROWSER_PATH`, else the first of
//! `chromium-headless-shell` and `chromium` on `PATH` or in
//! `/usr/lib/chromium`. With `MLFLOW_SECRETS_UI_BROWSER=require` a missing
//! browser fails the test instead of skipping it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// How long one protocol command or page load may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The browser to drive, or `None` (the caller skips; see the module doc).
pub fn find_browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MLFLOW_SECRETS_UI_BROWSER_PATH") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push("/usr/lib/chromium".into());
    for name in ["chromium-headless-shell", "chromium"] {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The browser for a test, or `None` after printing one skip line; panics
/// when `MLFLOW_SECRETS_UI_BROWSER=require`.
pub fn browser_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_browser();
    if found.is_none() {
        if std::env::var("MLFLOW_SECRETS_UI_BROWSER").as_deref() == Ok("require") {
            panic!(
                "{test}: MLFLOW_SECRETS_UI_BROWSER=require but no chromium-headless-shell or chromium was found (set MLFLOW_SECRETS_UI_BROWSER_PATH)"
            );
        }
        eprintln!(
            "skipping {test}: no chromium-headless-shell or chromium found (apt-get install chromium-headless-shell, or set MLFLOW_SECRETS_UI_BROWSER_PATH)"
        );
    }
    found
}

/// One response the page loaded.
#[derive(Debug, Clone)]
pub struct Captured {
    pub url: String,
    pub status: i64,
    pub body: String,
}

/// A running browser with one page attached.
pub struct Chrome {
    child: Child,
    to_browser: std::io::PipeWriter,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: String,
    events: VecDeque<Value>,
    _profile: tempfile::TempDir,
    /// Every response body seen so far.
    pub responses: Vec<Captured>,
    /// Console errors, exceptions and error log entries so far.
    pub console_errors: Vec<String>,
    /// Request ids whose body is to be fetched once loaded.
    pending: Vec<(String, String, i64)>,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copy `fd` to a number of at least 10 (so that the `dup2` onto 3 and 4
/// cannot clobber it), closed on exec (only 3 and 4 reach the browser).
fn high_fd(fd: i32) -> std::io::Result<i32> {
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n)
    }
}

impl Chrome {
    /// Start `browser` headless and attach to a new blank page.
    pub fn launch(browser: &std::path::Path) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let (cmd_r, cmd_w) = std::io::pipe().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let (cr, ow) = (cmd_r.as_raw_fd(), out_w.as_raw_fd());
        let mut cmd = Command::new(browser);
        cmd.args([
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--mute-audio",
            "--ignore-certificate-errors",
            "--window-size=1100,800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // The child's fd 3 reads our commands, its fd 4 writes replies.
        unsafe {
            cmd.pre_exec(move || {
                let (a, b) = (high_fd(cr)?, high_fd(ow)?);
                if libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start the browser");
        drop(cmd_r);
        drop(out_w);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out_r);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).map(|n| n > 0).unwrap_or(false) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                    && tx.send(v).is_err()
                {
                    break;
                }
                buf.clear();
            }
        });
        let mut c = Self {
            child,
            to_browser: cmd_w,
            from_browser: rx,
            next_id: 0,
            session: String::new(),
            events: VecDeque::new(),
            _profile: profile,
            responses: Vec::new(),
            console_errors: Vec::new(),
            pending: Vec::new(),
        };
        let target = c.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let tid = target["targetId"].as_str().unwrap().to_string();
        let att = c.browser_call(
            "Target.attachToTarget",
            json!({"targetId": tid, "flatten": true}),
        );
        c.session = att["sessionId"].as_str().unwrap().to_string();
        for m in [
            "Page.enable",
            "Network.enable",
            "Runtime.enable",
            "Log.enable",
        ] {
            c.call(m, json!({}));
        }
        c.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.__csp = []; document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"}),
        );
        c.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1100, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        c
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> u64 {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).unwrap();
        self.next_id
    }

    fn wait_reply(&mut self, id: u64, method: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(v) if v["id"].as_u64() == Some(id) => {
                    if let Some(e) = v.get("error") {
                        panic!("{method}: {e}");
                    }
                    return v["result"].clone();
                }
                Ok(v) => self.on_event(v),
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no reply in {TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: the browser exited"),
            }
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, false);
        self.wait_reply(id, method)
    }

    /// A command to the page's session.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, true);
        self.wait_reply(id, method)
    }

    fn on_event(&mut self, v: Value) {
        let p = &v["params"];
        match v["method"].as_str().unwrap_or("") {
            "Network.responseReceived" => {
                let r = &p["response"];
                self.pending.push((
                    p["requestId"].as_str().unwrap_or("").into(),
                    r["url"].as_str().unwrap_or("").into(),
                    r["status"].as_i64().unwrap_or(0),
                ));
            }
            "Network.loadingFinished" => {
                let id = p["requestId"].as_str().unwrap_or("").to_string();
                if let Some(i) = self.pending.iter().position(|(r, _, _)| *r == id) {
                    let (rid, url, status) = self.pending.remove(i);
                    self.events
                        .push_back(json!({"method": "ui.fetchBody", "params": {"requestId": rid, "url": url, "status": status}}));
                }
            }
            // The revoke button's confirm(): accept it, as a person would.
            "Page.javascriptDialogOpening" => {
                self.send("Page.handleJavaScriptDialog", json!({"accept": true}), true);
            }
            "Runtime.consoleAPICalled" if p["type"] == "error" => {
                self.console_errors
                    .push(format!("console.error: {}", p["args"]));
            }
            "Runtime.exceptionThrown" => {
                self.console_errors
                    .push(format!("exception: {}", p["exceptionDetails"]["text"]));
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                let e = &p["entry"];
                self.console_errors
                    .push(format!("log {}: {} ({})", e["source"], e["text"], e["url"]));
            }
            _ => self.events.push_back(v),
        }
    }

    /// Fetch the bodies of responses that finished loading.
    fn collect_bodies(&mut self) {
        let queued: Vec<Value> = self
            .events
            .iter()
            .filter(|e| e["method"] == "ui.fetchBody")
            .cloned()
            .collect();
        self.events.retain(|e| e["method"] != "ui.fetchBody");
        for q in queued {
            let p = &q["params"];
            let id = self.send(
                "Network.getResponseBody",
                json!({"requestId": p["requestId"]}),
                true,
            );
            // A body the browser no longer holds is an error reply; the
            // test counts what it captured against what loaded.
            let deadline = Instant::now() + TIMEOUT;
            let body = loop {
                match self
                    .from_browser
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(v) if v["id"].as_u64() == Some(id) => break v,
                    Ok(v) => self.on_event(v),
                    Err(_) => panic!("Network.getResponseBody: no reply"),
                }
            };
            let r = &body["result"];
            let text = if r["base64Encoded"] == true {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(r["body"].as_str().unwrap_or(""))
                    .unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                r["body"].as_str().unwrap_or("").to_string()
            };
            self.responses.push(Captured {
                url: p["url"].as_str().unwrap_or("").into(),
                status: p["status"].as_i64().unwrap_or(0),
                body: text,
            });
        }
    }

    /// Wait for the next `Page.loadEventFired`, then collect the bodies.
    pub fn wait_load(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| e["method"] == "Page.loadEventFired")
            {
                self.events.remove(i);
                break;
            }
            match self
                .from_browser
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(v) => self.on_event(v),
                Err(_) => panic!("page did not load in {TIMEOUT:?}"),
            }
        }
        // Let the last responses finish and report.
        let settle = Instant::now() + Duration::from_millis(300);
        while let Ok(v) = self
            .from_browser
            .recv_timeout(settle.saturating_duration_since(Instant::now()))
        {
            self.on_event(v);
        }
        self.collect_bodies();
    }

    fn forget_loads(&mut self) {
        self.events.retain(|e| e["method"] != "Page.loadEventFired");
    }

    /// Load `url` and wait for it.
    pub fn goto(&mut self, url: &str) {
        self.forget_loads();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_load();
    }

    /// Evaluate `js` in the page; its value.
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Run `js` that submits a form, and wait for the page it leads to.
    pub fn submit(&mut self, js: &str) {
        self.forget_loads();
        self.eval(js);
        self.wait_load();
    }

    /// The page's HTML as the DOM holds it now.
    pub fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// CSP violations the page reported.
    pub fn csp_violations(&mut self) -> Vec<String> {
        self.eval("JSON.stringify(window.__csp || [])")
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }

    /// Every cookie the browser holds for `url`.
    pub fn cookies(&mut self, url: &str) -> Vec<Value> {
        let r = self.call("Network.getCookies", json!({"urls": [url]}));
        r["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// localStorage and sessionStorage of the page, as JSON text.
    pub fn storage(&mut self) -> String {
        self.eval("JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The page's full accessibility tree.
    pub fn ax_nodes(&mut self) -> Vec<Value> {
        self.call("Accessibility.enable", json!({}));
        let r = self.call("Accessibility.getFullAXTree", json!({}));
        r["nodes"].as_array().cloned().unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": false}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or(""))
            .unwrap()
    }
}
