//! The status of each DebugPolicy: Ready, or why it is malformed (a malformed policy admits
//! nothing, so its authors must see why).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::warn;

use crate::crd::conditions::READY;
use crate::crd::{DebugPolicy, DebugPolicyStatus};
use crate::rules::policy::Rules;
use crate::runtime::error_chain;
use crate::session::context::Context;
use crate::session::error::Error;
use crate::session::report::{self, Stamp};

/// The status `policy` should have at `now`, given its current one.
fn next(
    policy: &DebugPolicy,
    rules: Result<(), String>,
    reason: &str,
    now: Timestamp,
) -> DebugPolicyStatus {
    let old = policy.status.clone().unwrap_or_default();
    let message = match &rules {
        Ok(()) => "the policy is in force".to_owned(),
        Err(message) => format!("{message}; the policy admits no session"),
    };
    let stamp = Stamp {
        generation: policy.metadata.generation,
        now,
    };
    DebugPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: vec![stamp.condition(&old.conditions, READY, rules.is_ok(), reason, &message)],
    }
}

/// Writes the status of `policy` when it changed.
pub async fn reconcile(policy: Arc<DebugPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (rules, reason) = match Rules::compile(&policy, &ctx.policy) {
        Ok(_) => (Ok(()), "Valid"),
        Err(fault) => (Err(fault.to_string()), fault.reason()),
    };
    let new = next(&policy, rules, reason, report::now());
    if policy.status.as_ref() == Some(&new) {
        return Ok(Action::await_change());
    }
    let api: Api<DebugPolicy> = Api::all(ctx.client.clone());
    report::write_status(&api, &policy.name_any(), &new).await?;
    Ok(Action::await_change())
}

/// Retries a failed status write after a pause.
pub fn error_policy(policy: Arc<DebugPolicy>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(policy = %policy.name_any(), error = %error_chain(error), "writing the policy status failed");
    Action::requeue(Duration::from_secs(10))
}

#[cfg(test)]
mod tests;
