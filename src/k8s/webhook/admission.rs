//! The admission decision for one Pod CREATE (docs/design.md §8, injection
//! contract): who is asking, which bindings, decrypt, write the per-Job
//! Secret, patch — or deny with one line that says why.
//!
//! Every failure is a [`Deny`]: the pod is refused (fail closed for
//! labelled pods), the reason reaches the Job's events through the API
//! server, and the metric result says whether it was policy (`denied`) or
//! an outage (`error`). Reasons never contain a value: they are built from
//! names and store errors, which carry none.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

use super::WebhookState;
use super::consent::{Offered, consent, service_account};
use super::inject::{InjectMode, InjectedBinding, Injection, build_patch};
use super::job::verify_job;
use super::secret::{self, OwningJob};
use super::stages::Stages;
use crate::k8s::{
    ANNOTATION_INJECT_MODE, ANNOTATION_RESOURCE_ID, ANNOTATION_RESOURCE_TYPE,
    DEFAULT_RESOURCE_TYPE, LABEL_INJECT, LABEL_NAMESPACE_INJECTION, NAMESPACE_INJECTION_ENABLED,
};
use crate::model::ResourceRef;
use crate::store::audit::{AuditAction, AuditRecord};
use crate::store::{BoundMeta, StoreError, incident, timing};

/// Metric `result` label values.
pub const RESULT_INJECTED: &str = "injected";
pub const RESULT_DRY_RUN: &str = "dry_run";
pub const RESULT_DENIED: &str = "denied";
pub const RESULT_SKIPPED: &str = "skipped";
pub const RESULT_ERROR: &str = "error";

/// A refusal: the one-line reason and the metric result.
#[derive(Debug)]
pub(super) struct Deny {
    pub reason: String,
    /// [`RESULT_DENIED`] or [`RESULT_ERROR`].
    pub result: &'static str,
    /// Whether no further audit row is to be written: the store already
    /// wrote one, or the request's namespace is not one to audit into.
    pub audited: bool,
}

impl Deny {
    pub(super) fn policy(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            result: RESULT_DENIED,
            audited: false,
        }
    }

    pub(super) fn error(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            result: RESULT_ERROR,
            audited: false,
        }
    }
}

/// The identity of the pod under review, for logs, audit and reasons.
pub(super) struct Subject {
    pub namespace: String,
    /// The pod's name, or `<generateName>*` (Job pods are named by the API
    /// server after admission).
    pub pod: String,
    pub job: Option<OwningJob>,
    pub resource_type: String,
    pub resource_id: Option<String>,
}

impl Subject {
    /// The audit principal: `webhook:<ns>/<job>/<pod>`. It names pod, Job
    /// and namespace in every row the store writes for this admission.
    pub fn actor(&self) -> String {
        let job = self.job.as_ref().map(|j| j.name.as_str()).unwrap_or("-");
        format!("webhook:{}/{}/{}", self.namespace, job, self.pod)
    }
}

/// What a review produced.
pub(super) enum Verdict {
    /// Not ours (not a labelled pod CREATE): allowed untouched.
    Skip,
    Allow {
        patch: json_patch::Patch,
        dry_run: bool,
        injection: Injection,
    },
    Deny(Deny),
}

/// Review one request. Never panics on input and never hangs past the
/// state's deadline.
pub(super) async fn review(
    state: &WebhookState,
    req: &AdmissionRequest<Pod>,
    stages: &mut Stages,
) -> (Verdict, Option<Subject>) {
    let Some(pod) = req.object.as_ref() else {
        return (Verdict::Skip, None);
    };
    let labelled = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_INJECT))
        .is_some_and(|v| v == "true");
    if req.operation != Operation::Create || !labelled || req.kind.kind != "Pod" {
        return (Verdict::Skip, None);
    }
    let ann = pod.metadata.annotations.as_ref();
    let get_ann = |k: &str| ann.and_then(|a| a.get(k)).map(|s| s.trim().to_string());
    let subject = Subject {
        namespace: req
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_default(),
        pod: match (&pod.metadata.name, &pod.metadata.generate_name) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(g)) if !g.is_empty() => format!("{g}*"),
            _ if !req.name.is_empty() => req.name.clone(),
            _ => "<unnamed>".into(),
        },
        job: OwningJob::of(pod.metadata.owner_references.as_deref()),
        resource_type: get_ann(ANNOTATION_RESOURCE_TYPE)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEFAULT_RESOURCE_TYPE.to_string()),
        resource_id: get_ann(ANNOTATION_RESOURCE_ID).filter(|t| !t.is_empty()),
    };
    let verdict = match decide(state, req, pod, &subject, stages).await {
        Ok(v) => v,
        Err(d) => Verdict::Deny(d),
    };
    (verdict, Some(subject))
}

async fn decide(
    state: &WebhookState,
    req: &AdmissionRequest<Pod>,
    pod: &Pod,
    s: &Subject,
    stages: &mut Stages,
) -> Result<Verdict, Deny> {
    let deadline = Instant::now() + state.deadline;
    if s.namespace.is_empty() {
        return Err(Deny::policy("pod has no namespace"));
    }
    // The namespace first: nothing from an unknown or opted-out namespace
    // reaches the store, a rate-limit key or a metric label.
    // These two refusals write no audit row: the namespace is a request
    // string not yet known to be real, and a forged request must not grow
    // the audit log of a namespace (or create one).
    if !state.view.namespaces_synced() {
        let mut d = Deny::error(
            "the webhook has not yet listed the namespaces that opted in to injection; retry",
        );
        d.audited = true;
        return Err(d);
    }
    if !state.view.opted_in(&s.namespace) {
        let mut d = Deny::policy(format!(
            "namespace '{}' has not opted in to injection: it needs the label {LABEL_NAMESPACE_INJECTION}={NAMESPACE_INJECTION_ENABLED}",
            s.namespace
        ));
        d.audited = true;
        return Err(d);
    }
    let Some(resource_id) = s.resource_id.as_deref() else {
        return Err(Deny::policy(format!(
            "labelled pod has no {ANNOTATION_RESOURCE_ID} annotation: say which resource's secrets to inject"
        )));
    };
    let mode = InjectMode::parse(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_INJECT_MODE))
            .map(String::as_str),
    )
    .map_err(Deny::policy)?;
    let Some(job) = s.job.as_ref() else {
        return Err(Deny::policy(
            "labelled pod has no owning Job: secrets are injected only into pods a Job creates, \
             because the per-Job Secret needs the Job as its owner",
        ));
    };
    let (ns, rtype) = (s.namespace.as_str(), s.resource_type.as_str());
    let verify_started = Instant::now();
    let source = within(
        deadline,
        state.deadline,
        "Kubernetes API",
        verify_job(state, ns, job, pod),
    )
    .await??;
    stages.job_verify = Some((source, verify_started.elapsed()));

    let secret_name = secret::secret_name(&job.name);
    if req.dry_run {
        // Metadata only: which bindings, which secrets, none revoked. No
        // decrypt and no Secret; audited as the metadata read it is.
        let (bindings, offered) = within(
            deadline,
            state.deadline,
            "store",
            metadata(state, ns, rtype, resource_id),
        )
        .await??;
        let (chosen, containers) =
            consent(pod, &offered).map_err(|e| Deny::policy(e.to_string()))?;
        let injection = Injection {
            secret_name,
            mode,
            bindings: bindings
                .into_iter()
                .filter(|(k, _)| chosen.contains(k))
                .collect(),
            containers,
        };
        let patch = build_patch(pod, &injection).map_err(|e| Deny::policy(e.to_string()))?;
        let rec = AuditRecord::new(AuditAction::ListBindings, &s.actor())
            .workspace(ns)
            .resource(rtype, resource_id)
            .detail(format!(
                "dryRun admission: metadata only, no value read; bindings {}",
                injection
                    .bindings
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.append_audit(&rec).await {
                tracing::warn!(error = %e, "could not audit a dryRun admission");
            }
        });
        return Ok(Verdict::Allow {
            patch,
            dry_run: true,
            injection,
        });
    }

    // Consent first, on the rows' metadata: which bindings the pod accepts
    // and may receive (docs/design.md §8, "The pod consents"), and the
    // ServiceAccount's decrypt budget for them. Only then does the store
    // decrypt, and only the chosen rows; it refuses revoked secrets,
    // undecryptable rows and exhausted namespace limits itself, and audits
    // the attempt either way. The same read names each value's secret and
    // version, for the `injected` annotation. A refusal here decrypts
    // nothing (the deny gets an audit row of its own).
    let actor = s.actor();
    let sa = service_account(pod);
    let mut containers = None;
    let mut choose = |meta: &[BoundMeta<'_>]| -> Result<BTreeSet<String>, Deny> {
        if meta.is_empty() {
            return Ok(BTreeSet::new());
        }
        let offered = crate::inject::offered_from_meta(meta);
        let (chosen, c) = consent(pod, &offered).map_err(|e| Deny::policy(e.to_string()))?;
        state
            .check_service_account_limit(ns, &sa, chosen.len() as u32)
            .map_err(|e| Deny::policy(e.to_string()))?;
        containers = c;
        Ok(chosen)
    };
    // The store takes a boxed chooser; a refusal's reason waits here.
    let mut refused = None;
    let slot = &mut refused;
    let pick =
        Box::new(move |meta: &[BoundMeta<'_>]| choose(meta).map_err(|d| *slot = Some(d)).ok());
    let store_started = Instant::now();
    let (bound, timing) = within(
        deadline,
        state.deadline,
        "store",
        timing::measured(state.store.choose_bound_values(
            ResourceRef::new(ns, rtype, resource_id),
            &actor,
            pick,
        )),
    )
    .await?;
    stages.store(store_started.elapsed(), timing.audit);
    let bound = bound.map_err(|e| {
        let mut d = store_deny(&e);
        d.audited = true;
        d
    })?;
    let Some(bound) = bound else {
        return Err(refused.unwrap_or_else(|| Deny::error("the store refused the read")));
    };
    state
        .metrics
        .decrypts
        .with_label_values(&[state.namespace_label(ns).as_str()])
        .inc_by(bound.len() as u64);
    if bound.is_empty() {
        return Err(no_bindings(ns, rtype, resource_id));
    }
    let mut values = BTreeMap::new();
    let mut bindings = BTreeMap::new();
    let mut secret_ids = BTreeMap::new();
    for (name, b) in bound {
        secret_ids.insert(name.clone(), b.secret_id.clone());
        bindings.insert(
            name.clone(),
            InjectedBinding {
                secret_id: b.secret_id,
                version: b.last_updated_at,
            },
        );
        values.insert(name, b.value);
    }
    let injection = Injection {
        secret_name,
        mode,
        bindings,
        containers,
    };
    // Check the pod can be patched before any value leaves the process.
    let patch_started = Instant::now();
    let patch = build_patch(pod, &injection).map_err(|e| Deny::policy(e.to_string()))?;
    stages.add_patch(patch_started.elapsed());
    let write_started = Instant::now();
    let written = within(
        deadline,
        state.deadline,
        "Kubernetes API",
        secret::apply(
            &state.client,
            ns,
            job,
            rtype,
            resource_id,
            &values,
            &secret_ids,
        ),
    )
    .await;
    stages.secret_write = Some(write_started.elapsed());
    let written = written?;
    drop(values);
    written.map_err(|e| match e {
        secret::WriteError::NotOurs { .. } => Deny::policy(e.to_string()),
        secret::WriteError::Kube(e) => Deny::error(format!(
            "could not write Secret {ns}/{}: {}",
            injection.secret_name,
            kube_reason(&e)
        )),
    })?;
    Ok(Verdict::Allow {
        patch,
        dry_run: false,
        injection,
    })
}

/// Run `fut` until `deadline`; past it, deny naming what did not answer.
async fn within<T>(
    deadline: Instant,
    budget: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Deny> {
    tokio::time::timeout_at(deadline.into(), fut)
        .await
        .map_err(|_| {
            Deny::error(format!(
                "{what} did not answer within {}s",
                budget.as_secs_f64()
            ))
        })
}

/// Bindings of the resource with their secrets' metadata, for a dryRun
/// admission: the query of the decrypting read, nothing decrypted. Denies
/// when there are none or one is revoked.
#[allow(clippy::type_complexity)]
async fn metadata(
    state: &WebhookState,
    ns: &str,
    rtype: &str,
    rid: &str,
) -> Result<(BTreeMap<String, InjectedBinding>, BTreeMap<String, Offered>), Deny> {
    let bound = state
        .store
        .bound_metadata(ResourceRef::new(ns, rtype, rid))
        .await
        .map_err(|e| store_deny(&e))?;
    if bound.is_empty() {
        return Err(no_bindings(ns, rtype, rid));
    }
    let mut out = BTreeMap::new();
    let mut offered = BTreeMap::new();
    for b in bound {
        if b.revoked {
            return Err(Deny::policy(format!(
                "secret '{}' (bound as {}) in namespace '{ns}' is revoked",
                b.secret_name, b.binding_name
            )));
        }
        out.insert(
            b.binding_name.clone(),
            InjectedBinding {
                secret_id: b.secret_id,
                version: b.last_updated_at,
            },
        );
        offered.insert(
            b.binding_name,
            Offered {
                service_accounts: b.service_accounts,
            },
        );
    }
    Ok((out, offered))
}

fn no_bindings(ns: &str, rtype: &str, rid: &str) -> Deny {
    Deny::policy(format!(
        "no secrets are bound to {rtype}/{rid} in namespace '{ns}'"
    ))
}

/// A store error as a deny reason. Store messages carry no values; an
/// outage's (which may carry database or driver text, and reaches every
/// pod creator through the Job's events) is logged under an incident id,
/// and the reason carries only the id.
fn store_deny(e: &StoreError) -> Deny {
    match e {
        StoreError::RateLimited { .. } => Deny::policy(e.to_string()),
        StoreError::Conflict(_) | StoreError::InvalidParameter(_) | StoreError::NotFound(_) => {
            Deny::policy(e.to_string())
        }
        StoreError::Crypto { .. } | StoreError::Keystore(_) => {
            Deny::error(format!("cannot decrypt: {e}"))
        }
        StoreError::Unavailable(_) | StoreError::Database(_) | StoreError::Schema(_) => {
            Deny::error(incident::record("secrets store is unavailable", e))
        }
        _ => Deny::error(incident::record("secrets store failed", e)),
    }
}

/// A kube error in one line, without echoing a request body.
pub(super) fn kube_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// An audit row for a refusal the store did not record itself (pod
/// without annotation or Job, no bindings, Secret write failure, timeout).
pub(super) fn deny_record(s: &Subject, d: &Deny) -> AuditRecord {
    let mut rec =
        AuditRecord::new(AuditAction::ReadResourceValues, &s.actor()).workspace(&s.namespace);
    if let Some(rid) = &s.resource_id {
        rec = rec.resource(&s.resource_type, rid);
    }
    let err = if d.result == RESULT_ERROR {
        StoreError::Unavailable(format!("injection failed: {}", d.reason))
    } else {
        StoreError::PermissionDenied(format!("injection denied: {}", d.reason))
    };
    rec.failed(&err)
}

/// The AdmissionResponse for a verdict.
pub(super) fn response(req: &AdmissionRequest<Pod>, verdict: &Verdict) -> AdmissionResponse {
    let base = AdmissionResponse::from(req);
    match verdict {
        Verdict::Skip => base,
        Verdict::Deny(d) => base.deny(&d.reason),
        Verdict::Allow { patch, .. } => match base.clone().with_patch(patch.clone()) {
            Ok(r) => r,
            Err(_) => base.deny("could not serialize the injection patch"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_policy_or_outage() {
        let limited = StoreError::RateLimited {
            message: "decrypt rate limit exceeded for workspace 'ns': retry in 3 s".into(),
            retry_after: Duration::from_secs(3),
        };
        let d = store_deny(&limited);
        assert_eq!(d.result, RESULT_DENIED);
        assert!(d.reason.contains("rate limit exceeded for workspace 'ns'"));
        assert_eq!(
            store_deny(&StoreError::Conflict("x is revoked".into())).result,
            RESULT_DENIED
        );
        let down = store_deny(&StoreError::Unavailable("timed out".into()));
        assert_eq!(down.result, RESULT_ERROR);
        assert!(
            down.reason
                .starts_with("secrets store is unavailable (incident ")
        );
        // Driver text stays in the log; the reason has the incident id only.
        let driver =
            "error returned from database: relation \"secrets\" does not exist at host db-7";
        for e in [
            StoreError::Database(driver.into()),
            StoreError::Schema(driver.into()),
            StoreError::Unavailable(driver.into()),
        ] {
            let d = store_deny(&e);
            assert!(
                !d.reason.contains("relation") && !d.reason.contains("db-7"),
                "{}",
                d.reason
            );
            assert!(d.reason.contains("incident "), "{}", d.reason);
        }
    }

    #[test]
    fn actor_names_namespace_job_and_pod() {
        let s = Subject {
            namespace: "team-a".into(),
            pod: "score-42-*".into(),
            job: Some(OwningJob {
                name: "score-42".into(),
                uid: "u".into(),
                api_version: "batch/v1".into(),
            }),
            resource_type: DEFAULT_RESOURCE_TYPE.into(),
            resource_id: Some("r".into()),
        };
        assert_eq!(s.actor(), "webhook:team-a/score-42/score-42-*");
        let rec = deny_record(&s, &Deny::policy("no secrets are bound"));
        assert_eq!(rec.outcome, crate::model::AuditOutcome::Denied);
        assert_eq!(rec.resource.as_deref(), Some("SCORER_JOB/r"));
        assert!(
            rec.detail
                .unwrap()
                .contains("injection denied: no secrets are bound")
        );
        let rec = deny_record(&s, &Deny::error("store did not answer within 5s"));
        assert_eq!(rec.outcome, crate::model::AuditOutcome::Failed);
    }
}
