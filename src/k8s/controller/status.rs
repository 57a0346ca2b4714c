//! Status conditions and the server-side apply that writes them.
//!
//! `lastTransitionTime` only moves when a condition's `status` changes, so
//! a reconcile that finds nothing new computes exactly the status the object
//! already has and skips the write: without that, every status write would
//! trigger another reconcile and the controllers would never settle.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Result;
use crate::k8s::FIELD_MANAGER;
use crate::k8s::crd::Condition;

use super::conditions::READY;

/// The verdict on one condition type, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    pub fn yes(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason,
            message: message.into(),
        }
    }

    pub fn no(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason,
            message: message.into(),
        }
    }
}

/// Build a condition, keeping the previous `lastTransitionTime` when the
/// status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    v: &Verdict,
    generation: Option<i64>,
) -> Condition {
    let status = if v.ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now_rfc3339);
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: v.reason.to_string(),
        message: v.message.clone(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the Ready condition changed status or reason: the moments worth
/// an Event (a repeat of the same failure is not news).
pub fn ready_changed(old: &[Condition], new: &[Condition]) -> bool {
    let key = |c: Option<&Condition>| c.map(|c| (c.status.clone(), c.reason.clone()));
    key(find(old, READY)) != key(find(new, READY))
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Write `status` with server-side apply under [`FIELD_MANAGER`]. Forced:
/// the operator is the only writer of these status fields.
pub async fn apply<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_status() {
        let first = condition(&[], READY, &Verdict::no("SourceNotFound", "x"), Some(1));
        let mut old = first.clone();
        old.last_transition_time = "2020-01-01T00:00:00Z".into();
        let same = condition(
            std::slice::from_ref(&old),
            READY,
            &Verdict::no("Other", "y"),
            Some(2),
        );
        assert_eq!(same.last_transition_time, "2020-01-01T00:00:00Z");
        let flipped = condition(&[old], READY, &Verdict::yes("Active", "z"), Some(2));
        assert_ne!(flipped.last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(flipped.status, "True");
    }
}
