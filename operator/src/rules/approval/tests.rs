use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::crd::Approvers;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn admitted(deadline: Option<u64>) -> Admitted {
    Admitted {
        policy: "prod".to_owned(),
        approval: deadline.map(Duration::from_secs),
        access: crate::crd::Access::Direct,
    }
}

fn decided(decision: Decision, time: &str) -> Approval {
    Approval {
        decision,
        approver: "ops-lead".to_owned(),
        reason: "incident 42".to_owned(),
        time: Time(at(time)),
    }
}

const CREATED: &str = "2026-11-24T10:00:00Z";

#[test]
fn without_a_rule_the_ttl_counts_from_creation() {
    assert_eq!(
        gate(
            &admitted(None),
            None,
            at(CREATED),
            at("2026-11-24T10:05:00Z")
        ),
        Gate::Open { start: at(CREATED) }
    );
}

#[test]
fn a_session_waits_until_its_deadline_then_fails() {
    let rule = admitted(Some(3600));
    assert_eq!(
        gate(&rule, None, at(CREATED), at("2026-11-24T10:59:59Z")),
        Gate::Awaiting {
            due: at("2026-11-24T11:00:00Z")
        }
    );
    let Gate::Closed(late) = gate(&rule, None, at(CREATED), at("2026-11-24T11:00:00Z")) else {
        panic!("still open at the deadline");
    };
    assert_eq!(late.reason(), "NotApproved");
    assert_eq!(
        late.to_string(),
        "nobody approved the session within 1h, the approval deadline of policy prod"
    );
}

#[test]
fn an_approval_starts_the_ttl_and_a_rejection_closes_for_good() {
    let rule = admitted(Some(3600));
    let approved = decided(Decision::Approved, "2026-11-24T10:20:00Z");
    assert_eq!(
        gate(
            &rule,
            Some(&approved),
            at(CREATED),
            at("2026-11-24T12:00:00Z")
        ),
        Gate::Open {
            start: at("2026-11-24T10:20:00Z")
        }
    );
    // The policy changed and no longer asks: the approval still starts the ttl.
    assert_eq!(
        gate(
            &admitted(None),
            Some(&approved),
            at(CREATED),
            at("2026-11-24T10:30:00Z")
        ),
        Gate::Open {
            start: at("2026-11-24T10:20:00Z")
        }
    );
    let rejected = decided(Decision::Rejected, "2026-11-24T10:20:00Z");
    for rule in [admitted(Some(3600)), admitted(None)] {
        let Gate::Closed(refusal) = gate(&rule, Some(&rejected), at(CREATED), at(CREATED)) else {
            panic!("a rejected session may not run");
        };
        assert_eq!(refusal.reason(), "ApprovalRejected");
        assert_eq!(
            refusal.to_string(),
            "ops-lead rejected the session: incident 42"
        );
    }
}

fn who(name: &str, groups: &[&str]) -> Requester {
    Requester {
        username: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Requester::default()
    }
}

fn listed(users: &[&str], groups: &[&str]) -> Approvers {
    Approvers {
        users: users.iter().map(|u| (*u).to_owned()).collect(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

const BOT: &str = "system:serviceaccount:shop:bot";

#[test]
fn listed_users_and_members_of_listed_groups_decide() {
    let approvers = listed(&["ana"], &["oncall"]);
    let decide = |w: &Requester| may_decide(Some(&approvers), "prod", w, "approve", "dbg");
    assert_eq!(decide(&who("ana", &[])), Ok(()));
    assert_eq!(decide(&who("bob", &["dev", "oncall"])), Ok(()));
    let refused = decide(&who("bob", &["dev"])).unwrap_err();
    assert_eq!(
        refused.to_string(),
        r#"user "bob" may not approve session dbg: policy prod names who may in approval.approvers, and neither the user nor any of their groups is among them"#
    );
    // A name is matched whole, never as a prefix or a group.
    assert!(decide(&who("ana2", &["ana"])).is_err());
    // Without a list, any person: RBAC's verb decides.
    assert_eq!(
        may_decide(None, "prod", &who("bob", &[]), "reject", "dbg"),
        Ok(())
    );
}

#[test]
fn a_service_account_decides_only_when_named() {
    let groups = ["system:serviceaccounts", "system:serviceaccounts:shop"];
    let bot = who(BOT, &groups);
    assert!(is_service_account(BOT));
    assert!(!is_service_account("system:serviceaccounts"));
    for approvers in [
        None,
        Some(listed(&[], &groups)),
        Some(listed(&["ana"], &[])),
    ] {
        let refused = may_decide(approvers.as_ref(), "prod", &bot, "reject", "dbg").unwrap_err();
        assert!(
            matches!(refused, NotApprover::ServiceAccount { .. }),
            "{approvers:?}: {refused}"
        );
        assert!(
            refused.to_string().starts_with(&format!(
                r#"user "{BOT}" may not reject session dbg: a ServiceAccount"#
            )),
            "{refused}"
        );
    }
    let named = listed(&[BOT], &[]);
    assert_eq!(
        may_decide(Some(&named), "prod", &bot, "approve", "dbg"),
        Ok(())
    );
}

fn stored(uid: Option<&str>, generation: Option<i64>) -> DebugSession {
    let mut s = DebugSession::new(
        "dbg",
        serde_yaml::from_str("{target: {kind: Pod, name: p}}").unwrap(),
    );
    s.metadata.uid = uid.map(str::to_owned);
    s.metadata.generation = generation;
    s
}

#[test]
fn a_decision_binds_to_the_uid_and_generation_seen() {
    let session = stored(Some("u-1"), Some(3));
    let seen = Seen::of(&session, "incident 42").unwrap();
    assert_eq!(
        seen,
        Seen {
            uid: "u-1".to_owned(),
            generation: 3,
            reason: "incident 42".to_owned()
        }
    );
    let value = seen.to_annotation().unwrap();
    assert_eq!(
        value,
        r#"{"uid":"u-1","generation":3,"reason":"incident 42"}"#
    );
    assert_eq!(Seen::parse(&value).unwrap(), seen);
    assert_eq!(seen.binds(&session), Ok(()));
    assert_eq!(
        seen.binds(&stored(Some("u-2"), Some(3))),
        Err(Stale::Recreated {
            name: "dbg".to_owned(),
            seen: "u-1".to_owned()
        })
    );
    assert_eq!(
        seen.binds(&stored(Some("u-1"), Some(4))),
        Err(Stale::Changed {
            name: "dbg".to_owned(),
            seen: 3,
            now: 4
        })
    );
    assert!(seen.binds(&stored(None, None)).is_err());
    assert_eq!(Seen::of(&stored(None, Some(1)), ""), None);

    // The reason may be left out; the uid and generation may not, nor anything be added.
    assert_eq!(
        Seen::parse(r#"{"uid":"u-1","generation":3}"#)
            .unwrap()
            .reason,
        ""
    );
    for bad in [
        "incident 42",
        r#"{"uid":"u-1","reason":"x"}"#,
        r#"{"generation":3}"#,
        r#"{"uid":"u-1","generation":"3"}"#,
        r#"{"uid":"u-1","generation":3,"approver":"boss"}"#,
    ] {
        assert!(Seen::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_approval_dated_in_the_future_closes_the_gate() {
    let now = at("2026-11-24T10:05:00Z");
    let later = decided(Decision::Approved, "2026-11-24T11:00:00Z");
    assert_eq!(
        gate(&admitted(Some(3600)), Some(&later), at(CREATED), now),
        Gate::Closed(Invalid::ApprovalInFuture {
            time: "2026-11-24T11:00:00Z".to_owned()
        })
    );
    // Within the clock skew between two nodes, it opens it.
    let skewed = decided(Decision::Approved, "2026-11-24T10:05:30Z");
    assert_eq!(
        gate(&admitted(Some(3600)), Some(&skewed), at(CREATED), now),
        Gate::Open {
            start: at("2026-11-24T10:05:30Z")
        }
    );
}
