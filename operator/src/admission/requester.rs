//! Who asked: `spec.requester`, stamped on CREATE from the AdmissionReview's `userInfo` and
//! restored from the stored object on every UPDATE.
//!
//! Pure: the functions return JSON Patch operations, which the mutating webhook returns.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation};
use k8s_openapi::api::authentication::v1::UserInfo;
use serde_json::Value;

use crate::crd::{DebugSessionSpec, Requester};

/// The requester as the API server authenticated the user who sent the request.
pub fn from_user_info(user: &UserInfo) -> Requester {
    Requester {
        username: user.username.clone().unwrap_or_default(),
        uid: user.uid.clone().filter(|u| !u.is_empty()),
        groups: user.groups.clone().unwrap_or_default(),
        extra: user.extra.clone().filter(|e| !e.is_empty()),
    }
}

fn requester_path() -> PointerBuf {
    PointerBuf::from_tokens(["spec", "requester"])
}

fn set(requester: &Requester) -> Result<Vec<PatchOperation>, serde_json::Error> {
    // "add" replaces an existing member (RFC 6902, 4.1), so one operation covers both cases.
    Ok(vec![PatchOperation::Add(AddOperation {
        path: requester_path(),
        value: serde_json::to_value(requester)?,
    })])
}

/// On CREATE: `spec.requester` becomes the user who sent the request, whatever the author
/// wrote there.
pub fn stamp(user: &UserInfo) -> Result<Vec<PatchOperation>, serde_json::Error> {
    set(&from_user_info(user))
}

/// On UPDATE: `spec.requester` goes back to what the stored object (`old`) has, so that
/// nobody can change it and a re-sync that omits it changes nothing. A session stored
/// without one (created while the webhook was away) keeps having none: an update must not
/// let its author adopt it.
pub fn restore(
    old: &DebugSessionSpec,
    new: &DebugSessionSpec,
) -> Result<Vec<PatchOperation>, serde_json::Error> {
    match (&old.requester, &new.requester) {
        (Some(old), Some(new)) if old == new => Ok(Vec::new()),
        (Some(old), _) => set(old),
        (None, Some(_)) => Ok(vec![PatchOperation::Remove(RemoveOperation {
            path: requester_path(),
        })]),
        (None, None) => Ok(Vec::new()),
    }
}

/// The object `object` with `ops` applied, as the API server would store it; for tests and
/// for checks that must see the mutated object.
pub fn patched(mut object: Value, ops: &[PatchOperation]) -> Result<Value, json_patch::PatchError> {
    json_patch::patch(&mut object, ops)?;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let claimed = session(
            "spec: {target: {kind: Deployment, name: app}, requester: {username: mallory}}",
        );
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
}
