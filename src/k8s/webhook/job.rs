//! "The Job is real" (docs/design.md §8): the pod's owning Job exists with
//! the owner reference's uid, its template carries the inject label, and
//! the pod's injection annotations and ServiceAccount are the template's.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use super::WebhookState;
use super::admission::{Deny, kube_reason};
use super::cache::JobFacts;
use super::consent::service_account;
use super::secret::OwningJob;
use super::stages::JobSource;
use crate::k8s::LABEL_INJECT;

/// The owning Job must be real (docs/design.md §8, "The Job is real"): it exists in
/// the pod's namespace with the owner reference's uid, its pod template
/// carries the inject label, and the pod's injection annotations and
/// ServiceAccount are the template's. The watch cache answers when it
/// knows the Job with that uid; otherwise (a Job created a moment ago, or
/// a forged reference) one GET decides. Returns which of the two answered,
/// for the stage metrics.
pub(super) async fn verify_job(
    state: &WebhookState,
    ns: &str,
    job: &OwningJob,
    pod: &Pod,
) -> Result<JobSource, Deny> {
    let cached = state
        .job_cache
        .then(|| state.view.job(ns, &job.name))
        .flatten()
        .filter(|f| f.uid == job.uid);
    let source = if cached.is_some() {
        JobSource::Cache
    } else {
        JobSource::Api
    };
    let facts = match cached {
        Some(f) => Some(f),
        None => {
            let api: Api<Job> = Api::namespaced(state.client.clone(), ns);
            let got = api.get_opt(&job.name).await.map_err(|e| {
                Deny::error(format!(
                    "could not read Job {ns}/{}: {}",
                    job.name,
                    kube_reason(&e)
                ))
            })?;
            match got {
                None => {
                    return Err(Deny::policy(format!(
                        "Job {ns}/{} named in the pod's owner reference does not exist",
                        job.name
                    )));
                }
                Some(j) if j.metadata.uid.as_deref() != Some(job.uid.as_str()) => {
                    return Err(Deny::policy(format!(
                        "Job {ns}/{} has another uid than the pod's owner reference ({})",
                        job.name, job.uid
                    )));
                }
                Some(j) => JobFacts::of(&j),
            }
        }
    };
    let Some(facts) = facts else {
        return Err(Deny::policy(format!(
            "Job {ns}/{}'s pod template does not carry the label {LABEL_INJECT}=true",
            job.name
        )));
    };
    match_template(&facts, pod).map_err(|why| {
        Deny::policy(format!(
            "pod does not match the pod template of Job {ns}/{}: {why}",
            job.name
        ))
    })?;
    Ok(source)
}

/// The pod's injection annotations and ServiceAccount against its Job's
/// template (pure). `Err` names the first difference.
fn match_template(facts: &JobFacts, pod: &Pod) -> Result<(), String> {
    let ann = pod.metadata.annotations.as_ref();
    for (key, want) in &facts.annotations {
        let have = ann.and_then(|a| a.get(*key));
        if have != want.as_ref() {
            return Err(format!("annotation {key} differs"));
        }
    }
    let sa = service_account(pod);
    if sa != facts.service_account {
        return Err(format!(
            "ServiceAccount {sa}, the template's is {}",
            facts.service_account
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::ANNOTATION_RESOURCE_ID;

    #[test]
    fn a_pod_must_match_its_jobs_template() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"annotations": {ANNOTATION_RESOURCE_ID: "r"}},
            "spec": {"containers": [{"name": "c"}]}
        }))
        .unwrap();
        let mut facts = JobFacts {
            uid: "u".into(),
            annotations: super::super::cache::MATCHED_ANNOTATIONS
                .iter()
                .map(|k| (*k, None))
                .collect(),
            service_account: "default".into(),
        };
        facts.annotations[0].1 = Some("r".into());
        match_template(&facts, &pod).unwrap();
        facts.annotations[0].1 = Some("other".into());
        let e = match_template(&facts, &pod).unwrap_err();
        assert!(e.contains(ANNOTATION_RESOURCE_ID), "{e}");
        facts.annotations[0].1 = Some("r".into());
        facts.annotations[3].1 = Some("A".into());
        assert!(
            match_template(&facts, &pod).is_err(),
            "bindings annotation differs"
        );
        facts.annotations[3].1 = None;
        facts.service_account = "scorer-sa".into();
        let e = match_template(&facts, &pod).unwrap_err();
        assert!(e.contains("ServiceAccount default"), "{e}");
    }
}
