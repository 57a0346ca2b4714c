//! A real keystore in a temporary directory, with a passphrase directory
//! holding two versions, so tests can rotate.

use mlflow_secrets::keystore::{
    self, Keystore, KeystoreConfig, KeystoreHandle, NewKekOptions, PassphraseSource,
};
use secrecy::SecretString;

pub const PASSPHRASE_V1: &str = "test passphrase one";
pub const PASSPHRASE_V2: &str = "a different passphrase for v2";

/// A keystore directory with a passphrase directory (`v1`, `v2` files).
pub struct TestKeystore {
    pub dir: tempfile::TempDir,
    pub config: KeystoreConfig,
}

impl TestKeystore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::create_dir(&pass).unwrap();
        std::fs::write(pass.join("v1"), format!("{PASSPHRASE_V1}\n")).unwrap();
        std::fs::write(pass.join("v2"), format!("{PASSPHRASE_V2}\n")).unwrap();
        let ks = dir.path().join("keystore");
        keystore::generate(
            &ks,
            &SecretString::from(PASSPHRASE_V1),
            NewKekOptions::default(),
        )
        .unwrap();
        let config = KeystoreConfig {
            dir: ks,
            passphrase: PassphraseSource::new(pass),
            test_mode: false,
        };
        Self { dir, config }
    }

    pub fn load(&self) -> Keystore {
        Keystore::load(&self.config).unwrap()
    }

    pub fn handle(&self) -> KeystoreHandle {
        KeystoreHandle::new(self.load())
    }

    /// Add version 2 (the `v2` passphrase) and make it active.
    pub fn rotate(&self) {
        keystore::rotate(
            &self.config.dir,
            &SecretString::from(PASSPHRASE_V2),
            NewKekOptions::default(),
        )
        .unwrap();
    }
}
