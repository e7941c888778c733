use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::crd::DebugSessionStatus;

fn made(name: &str, ns: &str, at: &str, phase: Option<Phase>) -> DebugSession {
    let mut s = DebugSession::new(
        name,
        serde_json::from_value(
            serde_json::json!({"target": {"kind": "Deployment", "name": "web"}}),
        )
        .unwrap(),
    );
    s.metadata.namespace = Some(ns.to_owned());
    s.metadata.creation_timestamp = Some(Time(at.parse().unwrap()));
    s.status = phase.map(|phase| DebugSessionStatus {
        phase: Some(phase),
        ..Default::default()
    });
    s
}

#[test]
fn only_live_sessions_of_the_namespace_created_earlier_count() {
    let t = "2026-12-04T10:00:00Z";
    let sessions = [
        made("a", "shop", t, Some(Phase::Active)),
        // Same second: the name breaks the tie.
        made("b", "shop", t, None),
        made("c", "shop", "2026-12-04T10:05:00Z", Some(Phase::Active)),
        made("ended", "shop", t, Some(Phase::Ended)),
        made("failed", "shop", t, Some(Phase::Failed)),
        made("elsewhere", "other", t, Some(Phase::Active)),
    ];
    let of = |name: &str| {
        sessions
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
    };
    assert_eq!(live_before(&sessions, "shop", of("a")), 0);
    assert_eq!(live_before(&sessions, "shop", of("b")), 1);
    assert_eq!(live_before(&sessions, "shop", of("c")), 2);
    // A create comes after all of them.
    assert_eq!(live_before(&sessions, "shop", None), 3);
    let mut deleting = made("d", "shop", t, Some(Phase::Active));
    deleting.metadata.deletion_timestamp = Some(Time(t.parse().unwrap()));
    assert!(!is_live(&deleting));
}

#[test]
fn a_protected_namespace_refuses_and_revokes_in_its_own_words() {
    use std::time::Duration;

    use crate::crd::Resolved;
    use crate::rules::namespaces::Namespaces;

    let session = made("dbg", "kube-system", "2026-12-04T10:00:00Z", None);
    let plan = Plan {
        mode: Resolved::Sidecar,
        ttl: Duration::from_secs(600),
        image: "busybox".to_owned(),
    };
    let defaults = Policy {
        default_image: "busybox".to_owned(),
        max_ttl: Duration::from_secs(3600),
        start_deadline: Duration::from_secs(300),
        allowed_images: Vec::new(),
        stopper: None,
        namespaces: Namespaces::new("shellcar-system", Vec::new()),
    };
    let around = Surroundings::default();
    let judge = |admitted_before| {
        govern(
            &session.spec,
            &plan,
            "kube-system",
            &around,
            &defaults,
            admitted_before,
        )
    };
    let refused = judge(false).unwrap_err();
    assert_eq!(refused.reason(), "NamespaceProtected");
    // A session some policy admitted before: revoked for good, saying why.
    let revoked = judge(true).unwrap_err();
    assert_eq!(revoked.reason(), "PolicyRevoked");
    assert!(
        revoked.to_string().starts_with(
            "no DebugPolicy allows this session any more: namespace kube-system is protected"
        ),
        "{revoked}"
    );
    // Elsewhere the built-in default judges, as before.
    assert!(govern(&session.spec, &plan, "shop", &around, &defaults, false).is_ok());
}
