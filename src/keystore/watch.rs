//! Keystore hot reload (docs/design.md §5): when the keystore directory or the
//! passphrase source changes (a `kek rotate`, or the kubelet swapping the
//! `..data` link of a projected volume), load the keystore again and swap
//! it into the store's handle. No restart is needed.
//!
//! Polling (every few seconds) rather than inotify: it sees through
//! symlink swaps and works on every filesystem. A keystore that fails to
//! load (a wrong passphrase mid-rotation) keeps the previous one in force.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::keystore::{Keystore, KeystoreConfig, KeystoreHandle};

/// Default interval between checks.
pub const KEYSTORE_RELOAD_CHECK: Duration = Duration::from_secs(10);

/// A cheap fingerprint of a file or directory: names, sizes and
/// modification times of the entries (following symlinks).
fn fingerprint(path: &Path, out: &mut Vec<(String, u64, Option<SystemTime>)>) {
    let Ok(md) = std::fs::metadata(path) else {
        out.push((path.display().to_string(), u64::MAX, None));
        return;
    };
    if md.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            if let Ok(m) = std::fs::metadata(&e)
                && m.is_file()
            {
                out.push((e.display().to_string(), m.len(), m.modified().ok()));
            }
        }
    } else {
        out.push((path.display().to_string(), md.len(), md.modified().ok()));
    }
}

fn snapshot(cfg: &KeystoreConfig) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut v = Vec::new();
    fingerprint(&cfg.dir, &mut v);
    fingerprint(cfg.passphrase.path(), &mut v);
    v
}

/// Watch `cfg` and reload into `handle` on change, until the task is
/// dropped. Test mode has nothing to watch.
pub fn spawn(
    handle: KeystoreHandle,
    cfg: KeystoreConfig,
    every: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    if cfg.test_mode {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut last = snapshot(&cfg);
        loop {
            tokio::time::sleep(every).await;
            let now = {
                let c = cfg.clone();
                match tokio::task::spawn_blocking(move || snapshot(&c)).await {
                    Ok(s) => s,
                    Err(_) => continue,
                }
            };
            if now == last {
                continue;
            }
            match Keystore::load_async(cfg.clone()).await {
                Ok(ks) => {
                    let active = ks.active_version();
                    handle.replace(ks);
                    last = now;
                    tracing::info!(active_version = active, "reloaded the keystore");
                }
                Err(e) => {
                    // Tried once per change: the next edit (the missing
                    // passphrase file arriving, say) triggers another try.
                    last = now;
                    tracing::warn!(error = %e, "the changed keystore does not load; keeping the previous one");
                }
            }
        }
    }))
}
