//! Approvals: an approver annotates a session, and the mutating webhook turns the
//! annotation into `spec.approval` once it has checked who they are, and that they saw
//! this very session.
//!
//! Pure: [`judge`] decides what an update asks for and what must be checked, with the
//! rules of [`crate::rules::approval`] and the approvers of the session's policy
//! ([`crate::rules::policy::approvers`]); [`record`] and [`restore`] return the JSON
//! Patch operations; [`ttl_change`] keeps an approved ttl as the approver saw it.

use jiff::Timestamp;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::Seen;
use crate::crd::{Approval, DebugSession, DebugSessionSpec, Decision, Phase, Requester};
use crate::k8s::access::{Check, Permission};
use crate::naming::{APPROVE_ANNOTATION, REJECT_ANNOTATION};
use crate::rules::Policy;
use crate::rules::approval::may_decide;
use crate::rules::govern::Surroundings;
use crate::rules::policy;

/// An approver's request, read from the annotation on the new object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub decision: Decision,
    /// The session as the approver saw it, and their reason.
    pub seen: Seen,
    /// The annotation that carried it, removed once recorded.
    pub annotation: &'static str,
}

/// The verb an RBAC rule must grant on `debugsessions` for `decision`.
fn verb(decision: Decision) -> &'static str {
    match decision {
        Decision::Approved => "approve",
        Decision::Rejected => "reject",
    }
}

fn word(decision: Decision) -> &'static str {
    match decision {
        Decision::Approved => "approved",
        Decision::Rejected => "rejected",
    }
}

/// The approval or rejection `session` carries as an annotation, if any; refused when it
/// carries both, or a value that does not say which session the approver saw.
pub fn requested(session: &DebugSession) -> Result<Option<Request>, String> {
    let annotations = session.annotations();
    let approve = annotations.get(APPROVE_ANNOTATION);
    let reject = annotations.get(REJECT_ANNOTATION);
    let (decision, annotation, value) = match (approve, reject) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "annotate {APPROVE_ANNOTATION} or {REJECT_ANNOTATION}, not both"
            ));
        }
        (Some(value), None) => (Decision::Approved, APPROVE_ANNOTATION, value),
        (None, Some(value)) => (Decision::Rejected, REJECT_ANNOTATION, value),
        (None, None) => return Ok(None),
    };
    let seen = Seen::parse(value).map_err(|e| {
        format!(
            r#"{annotation} must name the session as you saw it, as JSON {{"uid": "<metadata.uid>", "generation": <metadata.generation>, "reason": "<why>"}}, so that the decision holds for nothing else (shellcar {} writes it): {e}"#,
            verb(decision)
        )
    })?;
    Ok(Some(Request {
        decision,
        seen,
        annotation,
    }))
}

/// What an update that carries `request` still needs: the permission `approver` must hold
/// (a SubjectAccessReview), or why it is refused outright. `old` is the stored session,
/// `around` what surrounds it in `namespace` (the policies, the namespace's labels), and
/// `defaults` the operator's flags.
///
/// Refused: a session already decided or not awaiting approval; its requester; a decision
/// for another session than the stored one (deleted and created again, or changed since);
/// someone the approvers of the policy that holds it (`status.policy`) do not include, and
/// every ServiceAccount that policy does not name.
pub fn judge(
    request: &Request,
    old: &DebugSession,
    approver: &Requester,
    around: &Surroundings,
    defaults: &Policy,
    namespace: &str,
) -> Result<Check, String> {
    let name = old.name_any();
    let verb = verb(request.decision);
    if let Some(done) = &old.spec.approval {
        return Err(format!(
            "session {name} was already {} by {}",
            word(done.decision),
            done.approver
        ));
    }
    let status = old.status.as_ref();
    let phase = status.and_then(|s| s.phase);
    if phase != Some(Phase::AwaitingApproval) {
        let phase = phase.map_or("not judged yet", Phase::as_str);
        return Err(format!(
            "session {name} is not awaiting approval (phase: {phase}); only a session whose DebugPolicy requires approval can be {}",
            word(request.decision)
        ));
    }
    let requester = old.spec.requester.as_ref().map(|r| r.username.as_str());
    if requester == Some(approver.username.as_str()) {
        return Err(format!(
            "session {name} was requested by {}, who may not {verb} it: someone else must",
            approver.username
        ));
    }
    request.seen.binds(old).map_err(|stale| stale.to_string())?;
    let held_by = status.and_then(|s| s.policy.as_deref());
    let approvers = policy::approvers(
        &around.policies,
        held_by,
        namespace,
        &around.labels,
        defaults,
    )
    .map_err(|unknown| unknown.to_string())?;
    may_decide(
        approvers.as_ref(),
        held_by.unwrap_or_default(),
        approver,
        verb,
        &name,
    )
    .map_err(|not| not.to_string())?;
    Ok(Check {
        permission: Permission {
            verb,
            group: "debug.shellcar.dev",
            resource: "debugsessions",
            subresource: None,
            name: Some(name),
            namespace: namespace.to_owned(),
        },
        needed_by: format!(
            "{} {verb}s sessions; bind the ClusterRole shellcar-approver with a RoleBinding",
            request.annotation
        ),
    })
}

fn approval_path() -> PointerBuf {
    PointerBuf::from_tokens(["spec", "approval"])
}

/// Records the decision of `approver` at `now`, and removes the annotation.
pub fn record(
    request: &Request,
    approver: &str,
    now: Timestamp,
) -> Result<Vec<PatchOperation>, serde_json::Error> {
    let approval = Approval {
        decision: request.decision,
        approver: approver.to_owned(),
        reason: request.seen.reason.clone(),
        time: Time(Timestamp::from_second(now.as_second()).unwrap_or(now)),
    };
    Ok(vec![
        PatchOperation::Add(AddOperation {
            path: approval_path(),
            value: serde_json::to_value(approval)?,
        }),
        PatchOperation::Remove(RemoveOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", request.annotation]),
        }),
    ])
}

/// On any other UPDATE (and on CREATE, with `old` absent): `spec.approval` stays what the
/// stored object has, so that nobody writes their own.
pub fn restore(
    old: Option<&Approval>,
    new: Option<&Approval>,
) -> Result<Vec<PatchOperation>, serde_json::Error> {
    match (old, new) {
        (Some(old), Some(new)) if old == new => Ok(Vec::new()),
        (Some(old), _) => Ok(vec![PatchOperation::Add(AddOperation {
            path: approval_path(),
            value: serde_json::to_value(old)?,
        })]),
        (None, Some(_)) => Ok(vec![PatchOperation::Remove(RemoveOperation {
            path: approval_path(),
        })]),
        (None, None) => Ok(Vec::new()),
    }
}

/// An approved session keeps the ttl its approver saw: raising it would extend what they
/// approved. Before approval, and where none is needed, the ttl may change.
pub fn ttl_change(old: &DebugSessionSpec, new: &DebugSessionSpec) -> Result<(), String> {
    match &old.approval {
        Some(approval) if old.ttl != new.ttl && approval.decision == Decision::Approved => {
            Err(format!(
                "spec.ttl cannot change after {} approved the session for {}: create a new session and have it approved",
                approval.approver, old.ttl
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
