//! The one binding-selection rule of the webhook and `run`.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::BoundMeta;

/// What the store holds for one binding name of the resource, as far as
/// selection is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offered {
    /// The binding's `serviceAccountNames`; empty: any ServiceAccount.
    pub service_accounts: Vec<String>,
}

/// What the consumer asks for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The binding names it accepts (the pod's `secrets.mlflow.org/bindings`
    /// annotation, `run --only`); `None`: every offered binding.
    pub names: Option<&'a BTreeSet<String>>,
    /// Where `names` came from, for error messages (`annotation
    /// secrets.mlflow.org/bindings`, `--only`).
    pub origin: &'a str,
    /// What the workspace is called where the consumer lives (`namespace`
    /// on Kubernetes, `workspace` elsewhere), for error messages.
    pub place: &'a str,
    /// The receiving pod's ServiceAccount. `None` outside Kubernetes, where
    /// there is no ServiceAccount: the grant there is the runner token (its
    /// one resource) or the keystore itself, and a binding's ServiceAccount
    /// list does not apply.
    pub service_account: Option<&'a str>,
}

/// Why the consumer may not receive the bindings it asked for. Names
/// bindings and ServiceAccounts; never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error(
        "{origin} lists {name}, but no secret is bound under that name to this resource in this {place}"
    )]
    NotBound {
        origin: String,
        place: String,
        name: String,
    },
    #[error("{origin} is empty: list the binding names to inject, or remove it")]
    Empty { origin: String },
    #[error(
        "binding {binding} is restricted to ServiceAccounts {allowed}; this pod runs as ServiceAccount {actual}"
    )]
    ServiceAccount {
        binding: String,
        allowed: String,
        actual: String,
    },
}

/// The offered bindings of a resource from the rows' metadata, as the
/// store's chosen-read hands them over (`SqlStore::get_chosen_bound_values`).
pub fn offered_from_meta(meta: &[BoundMeta<'_>]) -> BTreeMap<String, Offered> {
    meta.iter()
        .map(|m| {
            (
                m.binding_name.to_string(),
                Offered {
                    service_accounts: m.service_accounts.to_vec(),
                },
            )
        })
        .collect()
}

/// The binding names the consumer receives, from what the store offers.
///
/// - `wanted.names` present: only those names, and each must be offered
///   (a missing one is refused, not skipped: the scorer would run without
///   a secret it expects); an empty list is refused as a mistake. Absent:
///   every offered binding.
/// - A chosen binding restricted to ServiceAccounts reaches only a pod of
///   one of them; any other pod is refused.
pub fn select(
    offered: &BTreeMap<String, Offered>,
    wanted: &Wanted<'_>,
) -> Result<BTreeSet<String>, SelectError> {
    let chosen = match wanted.names {
        None => offered.keys().cloned().collect(),
        Some(l) if l.is_empty() => {
            return Err(SelectError::Empty {
                origin: wanted.origin.to_string(),
            });
        }
        Some(l) => {
            if let Some(missing) = l.iter().find(|n| !offered.contains_key(*n)) {
                return Err(SelectError::NotBound {
                    origin: wanted.origin.to_string(),
                    place: wanted.place.to_string(),
                    name: missing.clone(),
                });
            }
            l.clone()
        }
    };
    if let Some(sa) = wanted.service_account {
        for name in &chosen {
            let allowed = &offered[name].service_accounts;
            if !allowed.is_empty() && !allowed.iter().any(|a| a == sa) {
                return Err(SelectError::ServiceAccount {
                    binding: name.clone(),
                    allowed: allowed.join(", "),
                    actual: sa.to_string(),
                });
            }
        }
    }
    Ok(chosen)
}

/// An offer from `(binding name, ServiceAccounts)` pairs, for the tests
/// here and in `k8s::webhook::consent`.
#[cfg(test)]
pub(crate) fn test_offered(entries: &[(&str, &[&str])]) -> BTreeMap<String, Offered> {
    entries
        .iter()
        .map(|(n, sas)| {
            (
                n.to_string(),
                Offered {
                    service_accounts: sas.iter().map(|s| s.to_string()).collect(),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn wanted<'a>(l: Option<&'a BTreeSet<String>>, sa: Option<&'a str>) -> Wanted<'a> {
        Wanted {
            names: l,
            origin: "--only",
            place: "workspace",
            service_account: sa,
        }
    }

    #[test]
    fn takes_only_listed_bindings_and_refuses_unbound_names() {
        let offer = test_offered(&[("A", &[]), ("B", &[]), ("OPENAI_BASE_URL", &[])]);
        assert_eq!(
            select(&offer, &wanted(None, None)).unwrap(),
            names(&["A", "B", "OPENAI_BASE_URL"])
        );
        let ab = names(&["A", "B"]);
        assert_eq!(select(&offer, &wanted(Some(&ab), None)).unwrap(), ab);
        let ac = names(&["A", "C"]);
        let e = select(&offer, &wanted(Some(&ac), None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--only lists C, but no secret is bound under that name to this resource in this workspace"
        );
        let empty = BTreeSet::new();
        assert!(matches!(
            select(&offer, &wanted(Some(&empty), None)).unwrap_err(),
            SelectError::Empty { .. }
        ));
    }

    #[test]
    fn restricts_bindings_to_their_service_accounts_on_kubernetes_only() {
        let offer = test_offered(&[("KEY", &["scorer-sa", "other-sa"]), ("OPEN", &[])]);
        let e = select(&offer, &wanted(None, Some("default"))).unwrap_err();
        assert_eq!(
            e,
            SelectError::ServiceAccount {
                binding: "KEY".into(),
                allowed: "scorer-sa, other-sa".into(),
                actual: "default".into()
            }
        );
        assert!(e.to_string().contains("scorer-sa, other-sa"), "{e}");
        assert_eq!(
            select(&offer, &wanted(None, Some("scorer-sa"))).unwrap(),
            names(&["KEY", "OPEN"])
        );
        // A pod that does not take the restricted binding is fine.
        let open = names(&["OPEN"]);
        assert_eq!(
            select(&offer, &wanted(Some(&open), Some("default"))).unwrap(),
            open
        );
        // Outside Kubernetes there is no ServiceAccount to check.
        assert_eq!(
            select(&offer, &wanted(None, None)).unwrap(),
            names(&["KEY", "OPEN"])
        );
    }

    #[test]
    fn offered_comes_from_row_metadata() {
        let sas = vec!["sa".to_string()];
        let meta = [
            BoundMeta {
                binding_name: "A",
                service_accounts: &sas,
            },
            BoundMeta {
                binding_name: "B",
                service_accounts: &[],
            },
        ];
        assert_eq!(
            offered_from_meta(&meta),
            test_offered(&[("A", &["sa"]), ("B", &[])])
        );
    }
}
