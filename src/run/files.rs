//! `--inject file`: one 0400 file per binding in a fresh 0700 directory on
//! a memory-backed filesystem, removed when the command ends
//! (docs/design.md §13).
//!
//! Memory-backed, because a value written to a disk can outlive the run
//! in its blocks, its journal and its backups; tmpfs and ramfs pages are
//! gone when the file is. The directory is created by `run` itself
//! (`mkdir` fails if the path exists), so `run` never writes into, or
//! removes, a directory someone else made.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};
use secrecy::{ExposeSecret, SecretString};

use super::RunError;

/// `RAMFS_MAGIC` of linux/magic.h (nix does not name it).
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

/// Where the default directory goes when `$XDG_RUNTIME_DIR` is unset or not
/// memory-backed.
pub const SHM: &str = "/dev/shm";

/// The secrets directory of one run; removed on [`SecretsDir::remove`] or
/// drop.
#[derive(Debug)]
pub struct SecretsDir {
    path: PathBuf,
    removed: bool,
}

/// Whether `path` is on tmpfs or ramfs, and the filesystem's name if not.
fn memory_backed(path: &Path) -> Result<(), RunError> {
    let st = statfs(path).map_err(|e| RunError::SecretsDir {
        path: path.to_path_buf(),
        why: format!("cannot inspect its filesystem: {e}"),
    })?;
    let t = st.filesystem_type();
    if t == TMPFS_MAGIC || t == RAMFS_MAGIC {
        Ok(())
    } else {
        Err(RunError::SecretsDir {
            path: path.to_path_buf(),
            why: format!(
                "it is not on a memory-backed filesystem (tmpfs or ramfs) but on a filesystem of type {:#x}; secrets are never written to disk",
                t.0
            ),
        })
    }
}

/// `mlflow-secrets-<pid>-<random>`: unique, so two runs never share one.
fn fresh_name() -> String {
    let mut b = [0u8; 6];
    // A failing OS RNG only makes the name guessable, not shared: mkdir
    // still refuses an existing path.
    let _ = getrandom::fill(&mut b);
    format!("mlflow-secrets-{}-{}", std::process::id(), hex::encode(b))
}

/// The default parent: `$XDG_RUNTIME_DIR` when it is set and memory-backed,
/// else `/dev/shm`.
fn default_parent() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        let p = PathBuf::from(x);
        if memory_backed(&p).is_ok() {
            return p;
        }
    }
    PathBuf::from(SHM)
}

impl SecretsDir {
    /// Create the directory: `requested` exactly (it must not exist yet),
    /// or a fresh one under the default parent. Refused unless its parent
    /// is memory-backed.
    pub fn create(requested: Option<&Path>) -> Result<Self, RunError> {
        let path = match requested {
            Some(p) => p.to_path_buf(),
            None => default_parent().join(fresh_name()),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        memory_backed(&parent)?;
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| RunError::SecretsDir {
                path: path.clone(),
                why: format!("cannot create it: {e}"),
            })?;
        let dir = Self {
            path,
            removed: false,
        };
        // The umask may have taken bits away, never added: set it exactly.
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| dir.err(format!("cannot set its mode: {e}")))?;
        Ok(dir)
    }

    fn err(&self, why: String) -> RunError {
        RunError::SecretsDir {
            path: self.path.clone(),
            why,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write one binding's value as the 0400 file `<dir>/<name>`. Binding
    /// names are environment-variable names, so they are safe file names.
    pub fn write(&self, name: &str, value: &SecretString) -> Result<(), RunError> {
        let file = self.path.join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&file)
            .map_err(|e| self.err(format!("cannot create the file for binding {name}: {e}")))?;
        f.write_all(value.expose_secret().as_bytes())
            .map_err(|e| self.err(format!("cannot write the file for binding {name}: {e}")))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o400))
            .map_err(|e| self.err(format!("cannot set the mode of binding {name}: {e}")))?;
        Ok(())
    }

    /// Remove the directory and its files.
    pub fn remove(mut self) -> Result<(), RunError> {
        self.removed = true;
        std::fs::remove_dir_all(&self.path).map_err(|e| self.err(format!("cannot remove it: {e}")))
    }
}

impl Drop for SecretsDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn files_are_0400_in_a_0700_dir_and_removed() {
        if memory_backed(Path::new(SHM)).is_err() {
            eprintln!("skipped: {SHM} is not tmpfs here");
            return;
        }
        let d = SecretsDir::create(None).unwrap();
        assert_eq!(d.path().metadata().unwrap().mode() & 0o777, 0o700);
        d.write("OPENAI_API_KEY", &SecretString::from("v-1"))
            .unwrap();
        let f = d.path().join("OPENAI_API_KEY");
        assert_eq!(f.metadata().unwrap().mode() & 0o777, 0o400);
        assert_eq!(std::fs::read(&f).unwrap(), b"v-1");
        // The same name twice is refused, not overwritten.
        assert!(
            d.write("OPENAI_API_KEY", &SecretString::from("v-2"))
                .is_err()
        );
        let p = d.path().to_path_buf();
        d.remove().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn a_disk_directory_and_an_existing_path_are_refused() {
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        if memory_backed(disk.path()).is_ok() {
            eprintln!("skipped: the checkout is on tmpfs here");
            return;
        }
        let e = SecretsDir::create(Some(&disk.path().join("s"))).unwrap_err();
        assert!(e.to_string().contains("not on a memory-backed"), "{e}");
        assert!(!disk.path().join("s").exists());
        if memory_backed(Path::new(SHM)).is_ok() {
            let d = SecretsDir::create(None).unwrap();
            let e = SecretsDir::create(Some(d.path())).unwrap_err();
            assert!(e.to_string().contains("cannot create it"), "{e}");
        }
    }
}
