//! The import rules of `valueFrom` (docs/design.md §8), as one pure decision.
//!
//! The operator may read every Secret of a namespace; the user who writes an
//! `MlflowSecret` may not. So a source Secret must consent with the
//! annotation [`ANNOTATION_IMPORTABLE`]` = "true"` before its value is
//! read: the decision is made on the Secret's *metadata*, and the value is
//! fetched only when it says [`Step::Import`] or [`Step::Reimport`] (and
//! checked again on the fetched object, so a consent withdrawn in between
//! still wins).

use std::collections::BTreeMap;

use crate::k8s::ANNOTATION_IMPORTABLE;
use crate::k8s::crd::ImportedSource;

/// Whether a Secret's annotations consent to import: exactly `"true"`.
pub fn is_importable(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(ANNOTATION_IMPORTABLE))
        .is_some_and(|v| v == "true")
}

/// The source Secret as seen in its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMeta {
    pub importable: bool,
    /// name, key, uid, resourceVersion now.
    pub current: ImportedSource,
}

/// What to do with the value of an object this reconciler may write (the
/// conflict and revocation rules come first, in the reconciler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No source Secret: `SourceNotFound` (an existing row keeps its value).
    SourceMissing,
    /// The source does not consent: `SourceNotImportable`, the value is not
    /// read. With a row, the row keeps the value imported last and is no
    /// longer re-imported.
    NotImportable { row_kept: bool },
    /// No row yet: read the value and create it.
    Import,
    /// The source changed since the last import: read it and update the row
    /// (a new DEK).
    Reimport,
    /// The row holds what the source holds: nothing to do.
    InSync,
}

/// `have_row`: the object's own row exists. `last`: `status.source`, the
/// source as it was when it was last imported.
pub fn decide(have_row: bool, source: Option<&SourceMeta>, last: Option<&ImportedSource>) -> Step {
    let Some(src) = source else {
        return Step::SourceMissing;
    };
    if !src.importable {
        return Step::NotImportable { row_kept: have_row };
    }
    if !have_row {
        Step::Import
    } else if last == Some(&src.current) {
        Step::InSync
    } else {
        Step::Reimport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(importable: bool, rv: &str) -> SourceMeta {
        SourceMeta {
            importable,
            current: ImportedSource {
                name: "src".into(),
                key: "k".into(),
                uid: "u1".into(),
                resource_version: rv.into(),
            },
        }
    }

    #[test]
    fn consent_is_exactly_true() {
        let ann = |v: &str| BTreeMap::from([(ANNOTATION_IMPORTABLE.to_string(), v.to_string())]);
        assert!(is_importable(Some(&ann("true"))));
        for v in ["", "True", "yes", "1", "false"] {
            assert!(!is_importable(Some(&ann(v))), "{v:?}");
        }
        assert!(!is_importable(None));
        assert!(!is_importable(Some(&BTreeMap::new())));
    }

    #[test]
    fn a_source_without_consent_is_never_read() {
        assert_eq!(
            decide(false, Some(&meta(false, "1")), None),
            Step::NotImportable { row_kept: false }
        );
        // Consent withdrawn after an import: the row stays, no re-import,
        // even though the source changed.
        let last = meta(true, "1").current;
        assert_eq!(
            decide(true, Some(&meta(false, "2")), Some(&last)),
            Step::NotImportable { row_kept: true }
        );
    }

    #[test]
    fn imports_reimports_on_change_and_settles() {
        assert_eq!(decide(false, None, None), Step::SourceMissing);
        assert_eq!(decide(true, None, None), Step::SourceMissing);
        assert_eq!(decide(false, Some(&meta(true, "1")), None), Step::Import);
        let last = meta(true, "1").current;
        assert_eq!(
            decide(true, Some(&meta(true, "1")), Some(&last)),
            Step::InSync
        );
        assert_eq!(
            decide(true, Some(&meta(true, "2")), Some(&last)),
            Step::Reimport
        );
        // No status.source yet (a crash after the insert): re-import.
        assert_eq!(decide(true, Some(&meta(true, "1")), None), Step::Reimport);
    }
}
