use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;
use crate::crd::Decision;

fn key(byte: u8) -> Key {
    Key::from_bytes(&[byte; KEY_LEN]).unwrap()
}

fn jane() -> Requester {
    Requester {
        username: "jane".to_owned(),
        uid: Some("u-1".to_owned()),
        groups: vec!["dev".to_owned(), "system:authenticated".to_owned()],
        extra: Some(BTreeMap::from([(
            "scopes".to_owned(),
            vec!["a".to_owned()],
        )])),
    }
}

fn approval(approver: &str) -> Approval {
    Approval {
        decision: Decision::Approved,
        approver: approver.to_owned(),
        reason: "incident 42".to_owned(),
        time: Time("2026-12-04T10:00:00Z".parse().unwrap()),
    }
}

/// A session as the API server stores it: read back from JSON, with a uid.
fn stored(requester: &Requester, approval: Option<&Approval>, stamp: Option<&str>) -> DebugSession {
    let mut object = json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugSession",
        "metadata": {"name": "s", "namespace": "shop", "uid": "uid-1"},
        "spec": {"target": {"kind": "Deployment", "name": "web"}, "requester": requester},
    });
    if let Some(a) = approval {
        object["spec"]["approval"] = serde_json::to_value(a).unwrap();
    }
    if let Some(s) = stamp {
        object["metadata"]["annotations"] = json!({STAMP_ANNOTATION: s});
    }
    serde_json::from_value(object).unwrap()
}

#[test]
fn a_stamp_sealed_at_creation_holds_on_the_stored_session() {
    let k = key(7);
    // On CREATE the webhook knows no uid yet.
    let s = seal(&k, "shop", None, &jane(), None);
    assert_eq!(verify(&k, &stored(&jane(), None, Some(&s))), Ok(()));
}

#[test]
fn no_stamp_is_missing() {
    assert_eq!(
        verify(&key(7), &stored(&jane(), None, None)),
        Err(Unstamped::Missing)
    );
}

#[test]
fn another_requester_or_namespace_or_key_breaks_the_seal() {
    let k = key(7);
    let s = seal(&k, "shop", None, &jane(), None);
    let mut admin = jane();
    admin.groups.push("system:masters".to_owned());
    assert_eq!(
        verify(&k, &stored(&admin, None, Some(&s))),
        Err(Unstamped::Forged)
    );
    let other_ns = seal(&k, "staging", None, &jane(), None);
    assert_eq!(
        verify(&k, &stored(&jane(), None, Some(&other_ns))),
        Err(Unstamped::Forged)
    );
    assert_eq!(
        verify(&key(8), &stored(&jane(), None, Some(&s))),
        Err(Unstamped::Forged)
    );
    assert_eq!(
        verify(&k, &stored(&jane(), None, Some("not base64 !"))),
        Err(Unstamped::Forged)
    );
}

#[test]
fn an_approval_is_sealed_with_the_sessions_uid() {
    let k = key(7);
    let a = approval("ops-lead");
    let s = seal(&k, "shop", Some("uid-1"), &jane(), Some(&a));
    assert_eq!(verify(&k, &stored(&jane(), Some(&a), Some(&s))), Ok(()));
    // The same decision, sealed for another session, does not carry over.
    let elsewhere = seal(&k, "shop", Some("uid-2"), &jane(), Some(&a));
    assert_eq!(
        verify(&k, &stored(&jane(), Some(&a), Some(&elsewhere))),
        Err(Unstamped::Forged)
    );
    // An approval added without the webhook breaks the creation stamp.
    let created = seal(&k, "shop", None, &jane(), None);
    assert_eq!(
        verify(&k, &stored(&jane(), Some(&a), Some(&created))),
        Err(Unstamped::Forged)
    );
    // Nor may the approver be changed afterwards.
    assert_eq!(
        verify(&k, &stored(&jane(), Some(&approval("jane")), Some(&s))),
        Err(Unstamped::Forged)
    );
}

#[test]
fn keys_have_exactly_32_bytes_and_never_print() {
    assert!(Key::from_bytes(&[0; 31]).is_none());
    assert!(Key::from_bytes(&[0; 33]).is_none());
    assert_eq!(format!("{:?}", key(1)), "Key(..)");
}
