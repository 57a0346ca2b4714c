//! The backup archive: a tar file whose first member is `manifest.json`,
//! then the KEK files under `keystore/` and, for SQLite, the database
//! snapshot `store/mlflow-secrets.db`.
//!
//! The manifest lists every other member with its size and SHA-256.
//! Reading is two passes over the file: [`verify`] hashes every member and
//! checks the manifest without writing anything, then [`extract`] writes
//! the members and checks each hash again while writing, so an archive that
//! changed between the passes is still caught (and its partial output
//! removed by the caller).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::facts::StoreFacts;
use super::{OpsError, Result, io_err};

/// The `format` of manifests this build writes and reads.
pub const FORMAT: &str = "mlflow-secrets-backup/1";
/// The manifest's member name; always the first member.
pub const MANIFEST: &str = "manifest.json";
/// The SQLite snapshot's member name.
pub const DB_MEMBER: &str = "store/mlflow-secrets.db";
/// Directory of the KEK files inside the archive.
pub const KEYSTORE_PREFIX: &str = "keystore/";
/// A manifest larger than this is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// One KEK version as the keystore file describes it (public parameters
/// only: the file holds no key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekEntry {
    pub version: u32,
    pub state: String,
    pub created_at: i64,
}

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub tool_version: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// `sqlite`, `postgres` or `mysql`.
    pub dialect: String,
    /// True when the archive holds the database (SQLite); false when the
    /// database is dumped with its native tool beside this archive.
    pub database_in_archive: bool,
    pub kek_versions: Vec<KekEntry>,
    pub active_kek_version: u32,
    /// Rows, migration level and audit head of the database backed up.
    pub facts: StoreFacts,
    pub members: Vec<Member>,
}

/// The member name of KEK file `kek-v<N>.json`.
pub fn kek_member(version: u32) -> String {
    format!("{KEYSTORE_PREFIX}kek-v{version}.json")
}

/// Lower-case hex SHA-256 of a file, and its size.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    hash_reader(&mut f).map_err(io_err(path))
}

fn hash_reader(r: &mut dyn Read) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// A reader that reports the bytes read so far (for the progress bar).
struct Counting<'a, R> {
    inner: R,
    done: u64,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.progress)(self.done);
        Ok(n)
    }
}

/// Write an archive to `out` (a new file, mode 0600): the manifest, then
/// each `(member name, file)` in order. The files' hashes must already be
/// in `manifest.members`; a file that changed since it was hashed fails
/// the write. `progress` gets the bytes of member data written so far.
pub fn write(
    out: &Path,
    manifest: &Manifest,
    files: &[(String, PathBuf)],
    progress: &dyn Fn(u64),
) -> Result<()> {
    let file = super::create_private(out)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let json = serde_json::to_vec_pretty(manifest).expect("serialize manifest");
    append(&mut tar, MANIFEST, json.len() as u64, &mut json.as_slice()).map_err(io_err(out))?;
    let mut written = 0u64;
    for (name, path) in files {
        let expected = manifest
            .members
            .iter()
            .find(|m| &m.name == name)
            .expect("every file is in the manifest");
        let f = std::fs::File::open(path).map_err(io_err(path))?;
        let base = written;
        let report = |n: u64| progress(base + n);
        let mut counting = Counting {
            inner: HashingReader::new(f),
            done: 0,
            progress: &report,
        };
        append(&mut tar, name, expected.size, &mut counting).map_err(io_err(out))?;
        let (n, digest) = counting.inner.finish();
        if n != expected.size || digest != expected.sha256 {
            return Err(OpsError::BadMember {
                path: out.to_path_buf(),
                member: name.clone(),
                reason: format!("{} changed while the archive was written", path.display()),
            });
        }
        written += n;
    }
    let inner = tar.into_inner().map_err(io_err(out))?;
    let file = inner.into_inner().map_err(|e| OpsError::Io {
        path: out.to_path_buf(),
        cause: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(out))?;
    Ok(())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: &mut dyn Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(crate::model::now_ms().max(0) as u64 / 1000);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            n: 0,
        }
    }

    fn finish(self) -> (u64, String) {
        (self.n, hex::encode(self.hash.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hash.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
}

/// The member names an archive may hold besides the manifest: the SQLite
/// snapshot and `keystore/kek-v<N>.json`. Anything else (a path with
/// `..`, a link, a stray file) is refused, so extraction can never write
/// outside the chosen targets.
fn allowed_member(name: &str) -> bool {
    name == DB_MEMBER
        || name
            .strip_prefix(KEYSTORE_PREFIX)
            .and_then(crate::keystore::file::version_of)
            .is_some()
}

/// Check the archive without writing anything: the manifest is first and
/// well-formed, every member is listed with the right size and hash, no
/// member is missing, duplicated or unexpected, and the manifest agrees
/// with the members (KEK versions, database present or not).
pub fn verify(path: &Path) -> Result<Manifest> {
    let bad = |reason: String| OpsError::BadArchive {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut entries = tar
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let first = entries
        .next()
        .ok_or_else(|| bad("the archive is empty".into()))?
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let manifest = read_manifest(path, first)?;
    let listed: BTreeMap<&str, &Member> = manifest
        .members
        .iter()
        .map(|m| (m.name.as_str(), m))
        .collect();
    if listed.len() != manifest.members.len() {
        return Err(mismatch(path, "a member is listed twice".into()));
    }
    let mut seen = BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable member: {e}")))?;
        let name = entry_name(path, &entry)?;
        let member_err = |reason: String| OpsError::BadMember {
            path: path.to_path_buf(),
            member: name.clone(),
            reason,
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(member_err("is not a regular file".into()));
        }
        let Some(expected) = listed.get(name.as_str()) else {
            return Err(member_err("is not listed in the manifest".into()));
        };
        if !seen.insert(name.clone()) {
            return Err(member_err("appears twice".into()));
        }
        let (n, digest) =
            hash_reader(&mut entry).map_err(|e| member_err(format!("cannot read it: {e}")))?;
        if n != expected.size {
            return Err(member_err(format!(
                "is {n} bytes, the manifest says {}",
                expected.size
            )));
        }
        if digest != expected.sha256 {
            return Err(member_err(
                "SHA-256 does not match the manifest: the archive is corrupted or was altered"
                    .into(),
            ));
        }
    }
    if let Some(missing) = listed.keys().find(|n| !seen.contains(**n)) {
        return Err(mismatch(
            path,
            format!("member {missing} is listed but not in the archive"),
        ));
    }
    check_consistent(path, &manifest)?;
    Ok(manifest)
}

fn mismatch(path: &Path, reason: String) -> OpsError {
    OpsError::ManifestMismatch {
        path: path.to_path_buf(),
        reason,
    }
}

fn entry_name<R: Read>(path: &Path, entry: &tar::Entry<'_, R>) -> Result<String> {
    let raw = entry.path_bytes();
    let name = std::str::from_utf8(&raw)
        .map_err(|_| OpsError::BadArchive {
            path: path.to_path_buf(),
            reason: "a member name is not UTF-8".into(),
        })?
        .to_string();
    if name != MANIFEST && !allowed_member(&name) {
        return Err(OpsError::BadMember {
            path: path.to_path_buf(),
            member: name,
            reason: "is not a member a backup can hold".into(),
        });
    }
    Ok(name)
}

fn read_manifest<R: Read>(path: &Path, entry: tar::Entry<'_, R>) -> Result<Manifest> {
    let bad = |reason: String| OpsError::BadArchive {
        path: path.to_path_buf(),
        reason,
    };
    if entry.path_bytes().as_ref() != MANIFEST.as_bytes() {
        return Err(bad(format!("the first member is not {MANIFEST}")));
    }
    if entry.header().size().unwrap_or(u64::MAX) > MAX_MANIFEST_BYTES {
        return Err(bad(format!("{MANIFEST} is too large")));
    }
    let mut text = String::new();
    entry
        .take(MAX_MANIFEST_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("{MANIFEST} is unreadable: {e}")))?;
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| bad(format!("{MANIFEST} is invalid: {e}")))?;
    if m.format != FORMAT {
        return Err(bad(format!(
            "format {:?} is not {FORMAT:?}, the one this build reads",
            m.format
        )));
    }
    Ok(m)
}

/// The manifest's own claims must agree with its member list.
fn check_consistent(path: &Path, m: &Manifest) -> Result<()> {
    let has_db = m.members.iter().any(|x| x.name == DB_MEMBER);
    if has_db != m.database_in_archive {
        return Err(mismatch(
            path,
            format!(
                "database_in_archive is {} but the database member is {}",
                m.database_in_archive,
                if has_db { "present" } else { "absent" }
            ),
        ));
    }
    if has_db != (m.dialect == "sqlite") {
        return Err(mismatch(
            path,
            format!("a {} backup cannot hold {DB_MEMBER}", m.dialect),
        ));
    }
    let kek_members: BTreeSet<String> = m
        .members
        .iter()
        .filter(|x| x.name.starts_with(KEYSTORE_PREFIX))
        .map(|x| x.name.clone())
        .collect();
    let kek_listed: BTreeSet<String> = m
        .kek_versions
        .iter()
        .map(|k| kek_member(k.version))
        .collect();
    if kek_members != kek_listed {
        return Err(mismatch(
            path,
            format!(
                "kek_versions lists {kek_listed:?} but the keystore members are {kek_members:?}"
            ),
        ));
    }
    if !m
        .kek_versions
        .iter()
        .any(|k| k.version == m.active_kek_version && k.state == "active")
    {
        return Err(mismatch(
            path,
            format!(
                "active KEK version {} is not an active keystore member",
                m.active_kek_version
            ),
        ));
    }
    if let Some(v) = m
        .facts
        .rows_by_kek_version
        .keys()
        .find(|v| !m.kek_versions.iter().any(|k| k.version == **v))
    {
        return Err(mismatch(
            path,
            format!("rows use KEK version {v}, which the keystore part does not hold"),
        ));
    }
    let by_kek: u64 = m.facts.rows_by_kek_version.values().sum();
    if m.facts.rows.get("secrets").copied().unwrap_or(0) != by_kek {
        return Err(mismatch(
            path,
            "the secrets count differs from the sum of rows per KEK version".into(),
        ));
    }
    Ok(())
}

/// Write every member for which `dest` names a path (a new file, mode
/// 0600), checking each hash again while writing. The caller removes the
/// outputs on error.
pub fn extract(
    path: &Path,
    manifest: &Manifest,
    dest: &dyn Fn(&str) -> Option<PathBuf>,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut written = 0u64;
    for entry in tar.entries().map_err(io_err(path))? {
        let entry = entry.map_err(io_err(path))?;
        let name = entry_name(path, &entry)?;
        let Some(out) = dest(&name) else { continue };
        let expected = manifest
            .members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| mismatch(path, format!("member {name} is not listed")))?;
        let mut f = super::create_private(&out)?;
        let base = written;
        let report = |n: u64| progress(base + n);
        let mut r = Counting {
            inner: HashingReader::new(entry),
            done: 0,
            progress: &report,
        };
        std::io::copy(&mut r, &mut f).map_err(io_err(&out))?;
        f.sync_all().map_err(io_err(&out))?;
        let (n, digest) = r.inner.finish();
        if n != expected.size || digest != expected.sha256 {
            return Err(OpsError::BadMember {
                path: path.to_path_buf(),
                member: name,
                reason: "changed since it was verified".into(),
            });
        }
        written += n;
    }
    Ok(())
}
