//! Keystore hot reload (docs/design.md §5): the server's handle follows a `kek
//! rotate` without a restart, and a keystore that stops loading (a wrong
//! passphrase mid-rotation) keeps the previous one in force.

use std::time::{Duration, Instant};

use mlflow_secrets::keystore::watch as keywatch;
use mlflow_secrets::keystore::{
    self, Keystore, KeystoreConfig, KeystoreHandle, NewKekOptions, PassphraseSource,
};
use secrecy::SecretString;

async fn wait_for(handle: &KeystoreHandle, version: u32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if handle.current().active_version() == version {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystore_reloads_on_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keystore");
    let pass = tmp.path().join("pass");
    std::fs::create_dir(&pass).unwrap();
    std::fs::write(pass.join("v1"), "one").unwrap();
    keystore::generate(&dir, &SecretString::from("one"), NewKekOptions::default()).unwrap();
    let cfg = KeystoreConfig {
        dir: dir.clone(),
        passphrase: PassphraseSource::new(&pass),
        test_mode: false,
    };
    let handle = KeystoreHandle::new(Keystore::load(&cfg).unwrap());
    let watch = keywatch::spawn(handle.clone(), cfg.clone(), Duration::from_millis(100)).unwrap();

    // Rotation: the passphrase of v2 arrives, then the new version.
    std::fs::write(pass.join("v2"), "two").unwrap();
    keystore::rotate(&dir, &SecretString::from("two"), NewKekOptions::default()).unwrap();
    assert!(wait_for(&handle, 2).await, "the rotation was not picked up");

    // A wrong passphrase for v2 (say, a half-done Secret update): keep v2.
    std::fs::write(pass.join("v2"), "not two").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(handle.current().active_version(), 2);
    assert!(handle.current().kek(1).is_ok());
    watch.abort();
}
