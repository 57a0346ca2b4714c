//! The SHA-256 hash chain of the audit log. Each row's `row_hash` covers
//! its own fields and the previous row's hash, and the head row remembers
//! the tail, so an edited, deleted or truncated row is detected; an
//! exported head ([`ExportedHead`]) also catches a re-hashed chain.

use sha2::{Digest, Sha256};

use crate::model::AuditEntry;

/// The `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hash one row: a length-prefixed encoding of every field, so that no two
/// different rows encode the same bytes.
#[allow(clippy::too_many_arguments)]
pub fn row_hash(
    prev_hash: &str,
    seq: i64,
    occurred_at: i64,
    principal: Option<&str>,
    action: &str,
    workspace: Option<&str>,
    secret_id: Option<&str>,
    secret_name: Option<&str>,
    resource: Option<&str>,
    outcome: &str,
    detail: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    h.update(b"mlflow-secrets-audit-v1");
    let seq_s = seq.to_string();
    let at_s = occurred_at.to_string();
    for field in [
        Some(prev_hash),
        Some(seq_s.as_str()),
        Some(at_s.as_str()),
        principal,
        Some(action),
        workspace,
        secret_id,
        secret_name,
        resource,
        Some(outcome),
        detail,
    ] {
        match field {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// The hash a row's fields give ([`row_hash`] of an [`AuditEntry`]).
pub fn entry_hash(e: &AuditEntry) -> String {
    row_hash(
        &e.prev_hash,
        e.seq,
        e.occurred_at,
        e.principal.as_deref(),
        &e.action,
        e.workspace.as_deref(),
        e.secret_id.as_deref(),
        e.secret_name.as_deref(),
        e.resource.as_deref(),
        &e.outcome,
        e.detail.as_deref(),
    )
}

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditVerifyReport {
    pub rows: u64,
    pub ok: bool,
    /// The first row where the chain breaks, and why.
    pub first_broken_seq: Option<i64>,
    pub reason: Option<String>,
}

/// A head exported outside the database: `audit head seq=N hash=H`, as
/// logged by `serve` and the operator, and given to `audit verify --head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedHead {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for ExportedHead {
    type Err = String;
    /// `SEQ:HASH`, as `audit verify --head` takes it.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "--head must be SEQ:HASH (the numbers of an `audit head seq=N hash=H` log line), not {s:?}"
            )
        };
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.trim().parse().map_err(|_| bad())?;
        let hash = hash.trim().to_ascii_lowercase();
        if seq < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Self { seq, hash })
    }
}

impl std::fmt::Display for ExportedHead {
    /// The log line's text (docs/design.md §2).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit head seq={} hash={}", self.seq, self.hash)
    }
}

/// Incremental chain checker; feed it rows in `seq` order.
#[derive(Debug)]
pub struct ChainChecker {
    expected_seq: i64,
    prev_hash: String,
    rows: u64,
    broken: Option<(i64, String)>,
    /// An exported head the chain must still reach unchanged, and whether
    /// it was seen.
    anchor: Option<(ExportedHead, bool)>,
}

impl Default for ChainChecker {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            rows: 0,
            broken: None,
            anchor: None,
        }
    }
}

impl ChainChecker {
    /// Also require that row `head.seq` has hash `head.hash`. Each row's
    /// hash covers the one before it, so a chain that verifies and still
    /// has that row with that hash has not been rewritten up to it: a
    /// database writer who deleted or edited rows and re-hashed the chain
    /// with the public algorithm cannot reproduce an exported hash.
    pub fn anchored(head: ExportedHead) -> Self {
        Self {
            anchor: Some((head, false)),
            ..Self::default()
        }
    }

    /// Check one row. Returns false once the chain is broken.
    pub fn push(&mut self, e: &AuditEntry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.rows += 1;
        let problem = if e.seq != self.expected_seq {
            Some(format!(
                "expected row {} but found row {}: row(s) deleted",
                self.expected_seq, e.seq
            ))
        } else if e.prev_hash != self.prev_hash {
            Some(
                "prev_hash does not match the previous row: a row before it was changed or deleted"
                    .into(),
            )
        } else if entry_hash(e) != e.row_hash {
            Some("row_hash does not match the row's contents: the row was edited".into())
        } else {
            None
        };
        if let Some(p) = problem {
            self.broken = Some((self.expected_seq.min(e.seq), p));
            return false;
        }
        if let Some((head, seen)) = &mut self.anchor
            && head.seq == e.seq
        {
            *seen = true;
            if head.hash != e.row_hash {
                self.broken = Some((
                    e.seq,
                    format!(
                        "row {} does not have the exported head hash {}: the chain was rewritten up to it",
                        e.seq, head.hash
                    ),
                ));
                return false;
            }
        }
        self.expected_seq += 1;
        self.prev_hash = e.row_hash.clone();
        true
    }

    /// Compare with the head row and finish.
    pub fn finish(mut self, head_seq: i64, head_hash: &str) -> AuditVerifyReport {
        if let (None, Some((head, false))) = (&self.broken, &self.anchor) {
            self.broken = Some((
                head.seq.min(self.expected_seq),
                format!(
                    "the log ends at row {} and never reaches the exported head row {}: rows were deleted",
                    self.expected_seq - 1,
                    head.seq
                ),
            ));
        }
        if self.broken.is_none()
            && (head_seq != self.expected_seq - 1 || head_hash != self.prev_hash)
        {
            self.broken = Some((
                self.expected_seq,
                format!(
                    "the log ends at row {} but the head records row {head_seq}: rows at the end were deleted or changed",
                    self.expected_seq - 1
                ),
            ));
        }
        AuditVerifyReport {
            rows: self.rows,
            ok: self.broken.is_none(),
            first_broken_seq: self.broken.as_ref().map(|b| b.0),
            reason: self.broken.map(|b| b.1),
        }
    }
}
