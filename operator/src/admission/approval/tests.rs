use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::admission::requester::patched;
use crate::crd::DebugPolicy;

fn session(annotations: serde_json::Value, phase: Option<&str>) -> DebugSession {
    let mut value = json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugSession",
        "metadata": {
            "name": "dbg", "namespace": "shop", "uid": "uid-1", "generation": 1,
            "annotations": annotations,
        },
        "spec": {
            "target": {"kind": "Deployment", "name": "web"},
            "requester": {"username": "jane"},
        },
    });
    if let Some(phase) = phase {
        value["status"] = json!({"phase": phase, "policy": "prod"});
    }
    serde_json::from_value(value).unwrap()
}

/// The annotation value for the session above as first stored (uid-1, generation 1).
fn seen(reason: &str) -> String {
    json!({"uid": "uid-1", "generation": 1, "reason": reason}).to_string()
}

fn approve(reason: &str) -> serde_json::Value {
    json!({ APPROVE_ANNOTATION: seen(reason) })
}

fn defaults() -> Policy {
    Policy {
        default_image: "busybox".to_owned(),
        max_ttl: Duration::from_secs(24 * 3600),
        allowed_images: vec![],
        stopper: None,
        start_deadline: Duration::from_secs(300),
        namespaces: crate::rules::namespaces::Namespaces::new("shellcar-system", Vec::new()),
    }
}

/// Namespace shop labelled `env: prod`, and policy prod (selecting it, requiring
/// approval) with `approvers` (YAML, or none).
fn around(approvers: Option<&str>) -> Surroundings {
    let mut spec = json!({
        "namespaceSelector": {"matchLabels": {"env": "prod"}},
        "approval": {"required": true},
    });
    if let Some(yaml) = approvers {
        spec["approval"]["approvers"] = serde_yaml::from_str(yaml).unwrap();
    }
    let policy: DebugPolicy = serde_json::from_value(json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": {"name": "prod"},
        "spec": spec,
    }))
    .unwrap();
    Surroundings {
        policies: vec![Arc::new(policy)],
        labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
        live_sessions: None,
    }
}

fn user(name: &str, groups: &[&str]) -> Requester {
    Requester {
        username: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Requester::default()
    }
}

const BOT: &str = "system:serviceaccount:shop:bot";
const SA_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:shop",
    "system:authenticated",
];

/// `judge` of an approval by `who` of the waiting session, under `around`.
fn judged(who: &Requester, around: &Surroundings) -> Result<Check, String> {
    let waiting = session(json!({}), Some("AwaitingApproval"));
    let request = requested(&session(approve("ok"), None)).unwrap().unwrap();
    judge(&request, &waiting, who, around, &defaults(), "shop")
}

#[test]
fn the_annotation_names_the_session_seen_the_decision_and_its_reason() {
    let s = session(approve("incident 42"), None);
    assert_eq!(
        requested(&s).unwrap(),
        Some(Request {
            decision: Decision::Approved,
            seen: Seen {
                uid: "uid-1".to_owned(),
                generation: 1,
                reason: "incident 42".to_owned(),
            },
            annotation: APPROVE_ANNOTATION,
        })
    );
    let both = session(
        json!({APPROVE_ANNOTATION: seen(""), REJECT_ANNOTATION: seen("")}),
        None,
    );
    assert!(requested(&both).is_err());
    assert_eq!(requested(&session(json!({}), None)).unwrap(), None);
    // A bare reason binds to nothing: refused, saying what to write.
    let bare = session(json!({REJECT_ANNOTATION: "incident 42"}), None);
    let refusal = requested(&bare).unwrap_err();
    assert!(
        refusal.starts_with(
            r#"debug.shellcar.dev/reject must name the session as you saw it, as JSON {"uid": "<metadata.uid>", "generation": <metadata.generation>, "reason": "<why>"}"#
        ),
        "{refusal}"
    );
    assert!(refusal.contains("shellcar reject writes it"), "{refusal}");
}

#[test]
fn only_someone_else_may_decide_and_only_while_the_session_waits() {
    let waiting = session(json!({}), Some("AwaitingApproval"));
    let request = requested(&session(approve("ok"), None)).unwrap().unwrap();
    let lead = user("ops-lead", &["oncall"]);
    let check = judge(
        &request,
        &waiting,
        &lead,
        &around(None),
        &defaults(),
        "shop",
    )
    .unwrap();
    assert_eq!(check.permission.verb, "approve");
    assert_eq!(check.permission.resource, "debugsessions");
    assert_eq!(check.permission.name.as_deref(), Some("dbg"));
    assert_eq!(check.permission.namespace, "shop");

    let jane = user("jane", &["oncall"]);
    let own = judge(
        &request,
        &waiting,
        &jane,
        &around(None),
        &defaults(),
        "shop",
    )
    .unwrap_err();
    assert_eq!(
        own,
        "session dbg was requested by jane, who may not approve it: someone else must"
    );
    let active = session(json!({}), Some("Active"));
    assert!(
        judge(&request, &active, &lead, &around(None), &defaults(), "shop")
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
        judge(
            &request,
            &decided,
            &lead,
            &around(None),
            &defaults(),
            "shop"
        )
        .unwrap_err(),
        "session dbg was already rejected by sec"
    );
}

#[test]
fn a_decision_holds_only_for_the_session_seen() {
    let request = requested(&session(approve("ok"), None)).unwrap().unwrap();
    let lead = user("ops-lead", &[]);
    let decide =
        |stored: &DebugSession| judge(&request, stored, &lead, &around(None), &defaults(), "shop");
    let mut recreated = session(json!({}), Some("AwaitingApproval"));
    recreated.metadata.uid = Some("uid-2".to_owned());
    assert_eq!(
        decide(&recreated).unwrap_err(),
        "the decision names session dbg with uid uid-1, which no longer exists: a session of that name was created again since; look at it again (shellcar approve dbg)"
    );
    let mut changed = session(json!({}), Some("AwaitingApproval"));
    changed.metadata.generation = Some(2);
    assert_eq!(
        decide(&changed).unwrap_err(),
        "session dbg changed after it was seen (generation 1, now 2); look at it again (shellcar approve dbg)"
    );
    assert!(decide(&session(json!({}), Some("AwaitingApproval"))).is_ok());
}

#[test]
fn the_approvers_of_the_policy_holding_the_session_decide() {
    let listed = around(Some("{users: [ops-lead], groups: [oncall]}"));
    assert!(judged(&user("ops-lead", &[]), &listed).is_ok());
    assert!(judged(&user("sam", &["oncall", "dev"]), &listed).is_ok());
    assert_eq!(
        judged(&user("sam", &["dev"]), &listed).unwrap_err(),
        r#"user "sam" may not approve session dbg: policy prod names who may in approval.approvers, and neither the user nor any of their groups is among them"#
    );
    // Without a list: anyone but the requester (who holds the verb).
    assert!(judged(&user("sam", &["dev"]), &around(None)).is_ok());
}

#[test]
fn a_service_account_decides_only_where_the_policy_names_it() {
    let bot = user(BOT, SA_GROUPS);
    let refusal = judged(&bot, &around(None)).unwrap_err();
    assert_eq!(
        refusal,
        format!(
            r#"user "{BOT}" may not approve session dbg: a ServiceAccount decides only where the session's DebugPolicy names it in approval.approvers.users, and policy prod does not (group membership does not count)"#
        )
    );
    let by_group = around(Some(
        "{groups: [system:serviceaccounts, 'system:serviceaccounts:shop', system:authenticated]}",
    ));
    assert_eq!(judged(&bot, &by_group).unwrap_err(), refusal);
    let named = around(Some(&format!("{{users: ['{BOT}']}}")));
    assert!(judged(&bot, &named).is_ok());
}

#[test]
fn nobody_decides_where_the_policy_is_unknown() {
    let lead = user("ops-lead", &[]);
    let gone = Surroundings {
        policies: vec![],
        ..around(None)
    };
    assert!(judged(&lead, &gone).unwrap_err().starts_with(
        "DebugPolicy prod, which holds the session for approval (status.policy), no longer exists"
    ));
    let elsewhere = Surroundings {
        labels: BTreeMap::new(),
        ..around(None)
    };
    assert!(
        judged(&lead, &elsewhere)
            .unwrap_err()
            .contains("no longer selects namespace shop")
    );
    let empty = around(Some("{users: [], groups: []}"));
    assert!(
        judged(&lead, &empty)
            .unwrap_err()
            .contains("is malformed (approval.approvers names no user and no group")
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
