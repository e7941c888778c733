//! The status of each DebugPolicy: Ready, or why it is malformed (a malformed policy admits
//! nothing, so its authors must see why).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::Rules;
use crate::context::{Context, Error, error_chain};
use crate::crd::{DebugPolicy, DebugPolicyStatus};
use crate::naming;

/// The status `policy` should have at `now`, given its current one.
pub fn next(
    policy: &DebugPolicy,
    rules: Result<(), String>,
    reason: &str,
    now: Timestamp,
) -> DebugPolicyStatus {
    let old = policy.status.clone().unwrap_or_default();
    let (status, message) = match &rules {
        Ok(()) => ("True", "the policy is in force".to_owned()),
        Err(message) => ("False", format!("{message}; the policy admits no session")),
    };
    let last_transition_time = old
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    DebugPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: vec![Condition {
            type_: "Ready".to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: policy.metadata.generation,
            last_transition_time,
        }],
    }
}

/// Writes the status of `policy` when it changed.
pub async fn reconcile(policy: Arc<DebugPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (rules, reason) = match Rules::compile(&policy, &ctx.policy) {
        Ok(_) => (Ok(()), "Valid"),
        Err(fault) => (Err(fault.to_string()), fault.reason()),
    };
    let now =
        Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    let new = next(&policy, rules, reason, now);
    if policy.status.as_ref() == Some(&new) {
        return Ok(Action::await_change());
    }
    let api: Api<DebugPolicy> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": DebugPolicy::api_version(&()),
        "kind": DebugPolicy::kind(&()),
        "status": new,
    });
    api.patch_status(
        &policy.name_any(),
        &PatchParams::apply(naming::CONTROLLER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    Ok(Action::await_change())
}

/// Retries a failed status write after a pause.
pub fn error_policy(policy: Arc<DebugPolicy>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(policy = %policy.name_any(), error = %error_chain(error), "writing the policy status failed");
    Action::requeue(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> DebugPolicy {
        let mut p = DebugPolicy::new("prod", serde_yaml::from_str(yaml).unwrap());
        p.metadata.generation = Some(3);
        p
    }

    #[test]
    fn a_bad_glob_makes_the_policy_not_ready_with_its_reason() {
        let p = policy("{images: ['reg/[abc']}");
        let fault = Rules::compile(
            &p,
            &crate::context::Policy {
                default_image: "busybox".to_owned(),
                max_ttl: Duration::from_secs(3600),
                allowed_images: vec![],
                start_deadline: Duration::from_secs(300),
            },
        )
        .unwrap_err();
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let status = next(&p, Err(fault.to_string()), fault.reason(), now);
        assert_eq!(status.observed_generation, Some(3));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidGlob")
        );
        assert!(
            ready
                .message
                .starts_with("images[0] \"reg/[abc\" is not a glob"),
            "{}",
            ready.message
        );
        assert!(ready.message.ends_with("; the policy admits no session"));
        // Fixed: Ready, with a new transition time; unchanged: the time is kept.
        let mut fixed = policy("{images: ['reg/*']}");
        fixed.status = Some(status);
        let later: Timestamp = "2026-11-24T10:05:00Z".parse().unwrap();
        let ready = next(&fixed, Ok(()), "Valid", later);
        assert_eq!(ready.conditions[0].status, "True");
        assert_eq!(ready.conditions[0].last_transition_time, Time(later));
        fixed.status = Some(ready.clone());
        let again = next(
            &fixed,
            Ok(()),
            "Valid",
            "2026-11-24T11:00:00Z".parse().unwrap(),
        );
        assert_eq!(again, ready);
    }
}
