use super::*;

use serde_json::{Value, json};

fn user() -> UserInfo {
    serde_json::from_value(json!({
        "username": "system:serviceaccount:shop:dev",
        "uid": "u-1",
        "groups": ["system:serviceaccounts", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/pod-name": ["dev-0"]},
    }))
    .unwrap()
}

fn session(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).unwrap()
}

fn spec(object: &Value) -> DebugSessionSpec {
    serde_json::from_value(object["spec"].clone()).unwrap()
}

#[test]
fn create_stamps_the_authenticated_user() {
    let object = session("spec: {target: {kind: Deployment, name: app}}");
    let after = patched(object, &stamp(&user()).unwrap()).unwrap();
    assert_eq!(
        after["spec"]["requester"],
        json!({
            "username": "system:serviceaccount:shop:dev",
            "uid": "u-1",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/pod-name": ["dev-0"]},
        })
    );
}

#[test]
fn create_replaces_a_hand_written_requester() {
    let object = session(
        "spec: {target: {kind: Deployment, name: app}, requester: {username: admin, groups: [system:masters]}}",
    );
    let after = patched(object, &stamp(&user()).unwrap()).unwrap();
    let requester = spec(&after).requester.unwrap();
    assert_eq!(requester.username, "system:serviceaccount:shop:dev");
    assert!(!requester.groups.contains(&"system:masters".to_owned()));
}

#[test]
fn empty_uid_and_extra_are_left_out() {
    let user = UserInfo {
        username: Some("dev".to_owned()),
        uid: Some(String::new()),
        extra: Some(Default::default()),
        groups: None,
    };
    let requester = from_user_info(&user);
    assert_eq!(
        serde_json::to_value(requester).unwrap(),
        json!({"username": "dev"})
    );
}

#[test]
fn update_restores_the_stored_requester() {
    let old = patched(
        session("spec: {target: {kind: Deployment, name: app}}"),
        &stamp(&user()).unwrap(),
    )
    .unwrap();
    // a GitOps re-sync that omits it
    let resync = session("spec: {target: {kind: Deployment, name: app}, ttl: 2h}");
    let ops = restore(&spec(&old), &spec(&resync)).unwrap();
    let after = patched(resync, &ops).unwrap();
    assert_eq!(after["spec"]["requester"], old["spec"]["requester"]);
    assert_eq!(after["spec"]["ttl"], "2h");
    // someone claiming it
    let claimed =
        session("spec: {target: {kind: Deployment, name: app}, requester: {username: mallory}}");
    let ops = restore(&spec(&old), &spec(&claimed)).unwrap();
    let after = patched(claimed, &ops).unwrap();
    assert_eq!(after["spec"]["requester"], old["spec"]["requester"]);
    // unchanged: nothing to do
    assert!(restore(&spec(&old), &spec(&old)).unwrap().is_empty());
}

#[test]
fn a_session_without_requester_cannot_be_adopted_by_an_update() {
    let old = session("spec: {target: {kind: Deployment, name: app}}");
    let claimed =
        session("spec: {target: {kind: Deployment, name: app}, requester: {username: dev}}");
    let ops = restore(&spec(&old), &spec(&claimed)).unwrap();
    let after = patched(claimed, &ops).unwrap();
    assert!(after["spec"].get("requester").is_none());
    assert!(restore(&spec(&old), &spec(&old)).unwrap().is_empty());
}
