//! One line per test binary about what it skipped.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Mutex;

/// Print `line` the first time `key` is seen in this process, straight to
/// stderr: past the test harness's output capture, so a plain `cargo test`
/// says what it did not run, once per binary rather than once per test.
pub fn once(key: &str, line: &str) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SEEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.to_string());
    if first {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}
