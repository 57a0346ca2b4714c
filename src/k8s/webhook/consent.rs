//! What a labelled pod consents to receive (docs/design.md §8, "The pod
//! consents", "Containers"): which bindings, and which containers get
//! them. Pure, no I/O. The binding rule itself is [`crate::inject::select`],
//! shared with `run`; this module reads the pod's side of it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

pub use crate::inject::Offered;
use crate::inject::{SelectError, Wanted, select};
use crate::k8s::{ANNOTATION_BINDINGS, ANNOTATION_CONTAINERS};

/// Why the pod does not consent to (or may not receive) the bindings.
/// Names bindings, ServiceAccounts, containers and variables; never a
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// The binding selection shared with `run` refused ([`select`]).
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("annotation {ANNOTATION_CONTAINERS} names container {0}, which the pod does not have")]
    NoSuchContainer(String),
    #[error(
        "annotation {ANNOTATION_CONTAINERS} is empty: name the containers that get the bindings, or remove it"
    )]
    EmptyContainers,
}

/// A comma-separated annotation as a set of trimmed, non-empty names.
/// `None` when the annotation is absent.
fn name_list(pod: &Pod, key: &str) -> Option<BTreeSet<String>> {
    let v = pod.metadata.annotations.as_ref()?.get(key)?;
    Some(
        v.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// The pod's ServiceAccount (`default` when unset, as the API server's
/// ServiceAccount admission sets it).
pub fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// What the pod consents to receive, from what the store offers (docs/design.md
/// §8, "The pod consents", "Containers"): the binding names to inject and
/// the containers that get them.
///
/// The bindings are chosen by [`select`], the rule `run` uses too, with the
/// `secrets.mlflow.org/bindings` annotation as the list of names and the
/// pod's ServiceAccount. `secrets.mlflow.org/containers` present: those
/// containers only, each of which must exist.
pub fn consent(
    pod: &Pod,
    offered: &BTreeMap<String, Offered>,
) -> Result<(BTreeSet<String>, Option<BTreeSet<String>>), ConsentError> {
    let listed = name_list(pod, ANNOTATION_BINDINGS);
    let sa = service_account(pod);
    let origin = format!("annotation {ANNOTATION_BINDINGS}");
    let chosen = select(
        offered,
        &Wanted {
            names: listed.as_ref(),
            origin: &origin,
            place: "namespace",
            service_account: Some(&sa),
        },
    )?;
    let containers = match name_list(pod, ANNOTATION_CONTAINERS) {
        None => None,
        Some(l) if l.is_empty() => return Err(ConsentError::EmptyContainers),
        Some(l) => {
            let have: BTreeSet<&str> = pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .map(|c| c.name.as_str())
                .collect();
            if let Some(missing) = l.iter().find(|n| !have.contains(n.as_str())) {
                return Err(ConsentError::NoSuchContainer(missing.clone()));
            }
            Some(l)
        }
    };
    Ok((chosen, containers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::test_offered as offered;
    use serde_json::{Value, json};

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The rule itself is tested in `crate::inject`; here, that the pod's
    /// annotation and ServiceAccount reach it.
    #[test]
    fn consent_passes_the_annotation_and_service_account_to_select() {
        let offer = offered(&[("A", &[]), ("B", &["scorer-sa"])]);
        let listed = pod(
            json!({"metadata": {"annotations": {ANNOTATION_BINDINGS: " A ,"}},
            "spec": {"containers": [{"name": "c"}]}}),
        );
        assert_eq!(consent(&listed, &offer).unwrap(), (names(&["A"]), None));
        let missing = pod(
            json!({"metadata": {"annotations": {ANNOTATION_BINDINGS: "A,C"}},
            "spec": {"containers": [{"name": "c"}]}}),
        );
        let e = consent(&missing, &offer).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("annotation {ANNOTATION_BINDINGS} lists C,"))
                && e.ends_with("in this namespace"),
            "{e}"
        );
        let default_sa = pod(json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}}));
        assert!(matches!(
            consent(&default_sa, &offer).unwrap_err(),
            ConsentError::Select(SelectError::ServiceAccount { .. })
        ));
        let scorer = pod(json!({"metadata": {},
            "spec": {"serviceAccountName": "scorer-sa", "containers": [{"name": "c"}]}}));
        assert_eq!(consent(&scorer, &offer).unwrap().0, names(&["A", "B"]));
    }

    #[test]
    fn consent_limits_containers_to_existing_ones() {
        let offer = offered(&[("A", &[])]);
        let p = pod(
            json!({"metadata": {"annotations": {ANNOTATION_CONTAINERS: "main,init"}},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "main"}, {"name": "side"}]}}),
        );
        assert_eq!(
            consent(&p, &offer).unwrap().1,
            Some(names(&["init", "main"]))
        );
        let bad = pod(
            json!({"metadata": {"annotations": {ANNOTATION_CONTAINERS: "main,ghost"}},
            "spec": {"containers": [{"name": "main"}]}}),
        );
        assert_eq!(
            consent(&bad, &offer).unwrap_err(),
            ConsentError::NoSuchContainer("ghost".into())
        );
        let empty = pod(
            json!({"metadata": {"annotations": {ANNOTATION_CONTAINERS: ""}},
            "spec": {"containers": [{"name": "main"}]}}),
        );
        assert_eq!(
            consent(&empty, &offer).unwrap_err(),
            ConsentError::EmptyContainers
        );
    }
}
