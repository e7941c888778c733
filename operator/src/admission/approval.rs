//! Approvals: an approver annotates a session, and the mutating webhook turns the
//! annotation into `spec.approval` once it has checked who they are.
//!
//! Pure: [`judge`] decides what an update asks for and what must be checked;
//! [`record`] and [`restore`] return the JSON Patch operations; [`ttl_change`] keeps an
//! approved ttl as the approver saw it.

use jiff::Timestamp;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::access::{Check, Permission};
use crate::crd::{Approval, DebugSession, DebugSessionSpec, Decision, Phase};
use crate::naming::{APPROVE_ANNOTATION, REJECT_ANNOTATION};

/// An approver's request, read from the annotation on the new object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub decision: Decision,
    pub reason: String,
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
/// carries both.
pub fn requested(session: &DebugSession) -> Result<Option<Request>, String> {
    let annotations = session.annotations();
    let approve = annotations.get(APPROVE_ANNOTATION);
    let reject = annotations.get(REJECT_ANNOTATION);
    match (approve, reject) {
        (Some(_), Some(_)) => Err(format!(
            "annotate {APPROVE_ANNOTATION} or {REJECT_ANNOTATION}, not both"
        )),
        (Some(reason), None) => Ok(Some(Request {
            decision: Decision::Approved,
            reason: reason.clone(),
            annotation: APPROVE_ANNOTATION,
        })),
        (None, Some(reason)) => Ok(Some(Request {
            decision: Decision::Rejected,
            reason: reason.clone(),
            annotation: REJECT_ANNOTATION,
        })),
        (None, None) => Ok(None),
    }
}

/// What an update that carries `request` still needs: the permission `approver` must hold
/// (a SubjectAccessReview), or why it is refused outright.
pub fn judge(
    request: &Request,
    old: &DebugSession,
    approver: &str,
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
    let phase = old.status.as_ref().and_then(|s| s.phase);
    if phase != Some(Phase::AwaitingApproval) {
        let phase = phase.map_or("not judged yet", Phase::as_str);
        return Err(format!(
            "session {name} is not awaiting approval (phase: {phase}); only a session whose DebugPolicy requires approval can be {}",
            word(request.decision)
        ));
    }
    let requester = old.spec.requester.as_ref().map(|r| r.username.as_str());
    if requester == Some(approver) {
        return Err(format!(
            "session {name} was requested by {approver}, who may not {verb} it: someone else must"
        ));
    }
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
        reason: request.reason.clone(),
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
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::requester::patched;

    fn session(annotations: serde_json::Value, phase: Option<&str>) -> DebugSession {
        let mut value = json!({
            "apiVersion": "debug.shellcar.dev/v1alpha1",
            "kind": "DebugSession",
            "metadata": {"name": "dbg", "namespace": "shop", "annotations": annotations},
            "spec": {
                "target": {"kind": "Deployment", "name": "web"},
                "requester": {"username": "jane"},
            },
        });
        if let Some(phase) = phase {
            value["status"] = json!({"phase": phase});
        }
        serde_json::from_value(value).unwrap()
    }

    fn approve(reason: &str) -> serde_json::Value {
        json!({ APPROVE_ANNOTATION: reason })
    }

    #[test]
    fn the_annotation_names_the_decision_and_its_reason() {
        let s = session(approve("incident 42"), None);
        assert_eq!(
            requested(&s).unwrap(),
            Some(Request {
                decision: Decision::Approved,
                reason: "incident 42".to_owned(),
                annotation: APPROVE_ANNOTATION,
            })
        );
        let both = session(json!({APPROVE_ANNOTATION: "", REJECT_ANNOTATION: ""}), None);
        assert!(requested(&both).is_err());
        assert_eq!(requested(&session(json!({}), None)).unwrap(), None);
    }

    #[test]
    fn only_someone_else_may_decide_and_only_while_the_session_waits() {
        let waiting = session(json!({}), Some("AwaitingApproval"));
        let request = requested(&session(approve("ok"), None)).unwrap().unwrap();
        let check = judge(&request, &waiting, "ops-lead", "shop").unwrap();
        assert_eq!(check.permission.verb, "approve");
        assert_eq!(check.permission.resource, "debugsessions");
        assert_eq!(check.permission.name.as_deref(), Some("dbg"));
        assert_eq!(check.permission.namespace, "shop");

        let own = judge(&request, &waiting, "jane", "shop").unwrap_err();
        assert_eq!(
            own,
            "session dbg was requested by jane, who may not approve it: someone else must"
        );
        let active = session(json!({}), Some("Active"));
        assert!(
            judge(&request, &active, "ops-lead", "shop")
                .unwrap_err()
                .contains("is not awaiting approval (phase: Active)")
        );
        let mut decided = waiting.clone();
        decided.spec.approval = Some(Approval {
            decision: Decision::Rejected,
            approver: "sec".to_owned(),
            reason: String::new(),
            time: Time("2026-11-24T10:00:00Z".parse().unwrap()),
        });
        assert_eq!(
            judge(&request, &decided, "ops-lead", "shop").unwrap_err(),
            "session dbg was already rejected by sec"
        );
    }

    #[test]
    fn recording_sets_the_approval_and_drops_the_annotation() {
        let s = session(approve("incident 42"), Some("AwaitingApproval"));
        let request = requested(&s).unwrap().unwrap();
        let ops = record(
            &request,
            "ops-lead",
            "2026-11-24T10:00:00.5Z".parse().unwrap(),
        )
        .unwrap();
        let out = patched(serde_json::to_value(&s).unwrap(), &ops).unwrap();
        assert_eq!(
            out["spec"]["approval"],
            json!({"decision": "Approved", "approver": "ops-lead", "reason": "incident 42", "time": "2026-11-24T10:00:00Z"})
        );
        assert_eq!(out["metadata"]["annotations"], json!({}));
    }

    #[test]
    fn an_approved_ttl_stays_what_the_approver_saw() {
        let mut old = session(json!({}), Some("Active")).spec;
        let mut longer = old.clone();
        longer.ttl = "8h".to_owned();
        assert!(
            ttl_change(&old, &longer).is_ok(),
            "no approval: the ttl may change"
        );
        old.approval = Some(Approval {
            decision: Decision::Approved,
            approver: "ops-lead".to_owned(),
            reason: String::new(),
            time: Time("2026-11-24T10:00:00Z".parse().unwrap()),
        });
        assert_eq!(
            ttl_change(&old, &longer).unwrap_err(),
            "spec.ttl cannot change after ops-lead approved the session for 1h: create a new session and have it approved"
        );
        assert!(ttl_change(&old, &old.clone()).is_ok());
    }

    #[test]
    fn nobody_writes_an_approval_by_hand() {
        let forged = Approval {
            decision: Decision::Approved,
            approver: "me".to_owned(),
            reason: String::new(),
            time: Time("2026-11-24T10:00:00Z".parse().unwrap()),
        };
        let s = session(json!({}), None);
        let mut with = serde_json::to_value(&s).unwrap();
        with["spec"]["approval"] = serde_json::to_value(&forged).unwrap();
        let ops = restore(None, Some(&forged)).unwrap();
        assert!(
            patched(with.clone(), &ops).unwrap()["spec"]
                .get("approval")
                .is_none()
        );
        let real = Approval {
            approver: "ops-lead".to_owned(),
            ..forged.clone()
        };
        let ops = restore(Some(&real), Some(&forged)).unwrap();
        assert_eq!(
            patched(with, &ops).unwrap()["spec"]["approval"]["approver"],
            "ops-lead"
        );
        assert!(restore(Some(&real), Some(&real)).unwrap().is_empty());
    }
}
