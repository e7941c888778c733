use json_patch::jsonptr::PointerBuf;
use serde_json::json;

use super::*;
use crate::rules::stamp::KEY_LEN;

fn key() -> Key {
    Key::from_bytes(&[3; KEY_LEN]).unwrap()
}

fn session(annotations: Option<Value>) -> DebugSession {
    let mut object = json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugSession",
        "metadata": {"name": "dbg", "namespace": "shop", "uid": "s-1"},
        "spec": {"target": {"kind": "Deployment", "name": "app"}, "requester": {"username": "jane"}},
    });
    if let Some(a) = annotations {
        object["metadata"]["annotations"] = a;
    }
    serde_json::from_value(object).unwrap()
}

/// `session` with `ops` applied, as the API server stores it.
fn applied(session: &DebugSession, ops: &[PatchOperation]) -> DebugSession {
    let mut value = serde_json::to_value(session).unwrap();
    json_patch::patch(&mut value, ops).unwrap();
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_create_is_sealed_beside_its_other_annotations() {
    let created = session(Some(json!({"team": "shop"})));
    let ops = ops(&key(), "shop", None, &created, &[]).unwrap();
    let stored = applied(&created, &ops);
    assert_eq!(stamp::verify(&key(), &stored), Ok(()));
    assert_eq!(stored.annotations()["team"], "shop");
    // Without annotations, the map is added whole.
    let bare = session(None);
    let ops = super::ops(&key(), "shop", None, &bare, &[]).unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(stamp::verify(&key(), &applied(&bare, &ops)), Ok(()));
}

#[test]
fn the_seal_covers_what_the_webhooks_own_operations_settle() {
    // The author wrote a requester; the webhook's operation replaces it.
    let created = session(None);
    let requester = PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(["spec", "requester"]),
        value: json!({"username": "dev"}),
    });
    let mut all = vec![requester];
    all.extend(ops(&key(), "shop", None, &created, &all).unwrap());
    let stored = applied(&created, &all);
    assert_eq!(stored.spec.requester.as_ref().unwrap().username, "dev");
    assert_eq!(stamp::verify(&key(), &stored), Ok(()));
}

#[test]
fn an_update_of_an_unstamped_session_keeps_what_it_had() {
    let old = session(None);
    let forged_seal = json!({STAMP_ANNOTATION: "AAAA"});
    let new = session(Some(forged_seal.clone()));
    // The update tried to add a stamp: it is removed again.
    let ops = ops(&key(), "shop", Some(&old), &new, &[]).unwrap();
    assert_eq!(
        ops,
        vec![PatchOperation::Remove(RemoveOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", STAMP_ANNOTATION]),
        })]
    );
    assert_eq!(
        stamp::verify(&key(), &applied(&new, &ops)),
        Err(stamp::Unstamped::Missing)
    );
}

#[test]
fn an_update_of_a_stamped_session_keeps_its_seal_or_puts_it_back() {
    let created = session(None);
    let old = applied(&created, &ops(&key(), "shop", None, &created, &[]).unwrap());
    // Unchanged: nothing to do.
    assert!(
        ops(&key(), "shop", Some(&old), &old, &[])
            .unwrap()
            .is_empty()
    );
    // A sync that dropped the annotation gets it back.
    let dropped = session(Some(json!({})));
    let ops = ops(&key(), "shop", Some(&old), &dropped, &[]).unwrap();
    assert_eq!(stamp::verify(&key(), &applied(&dropped, &ops)), Ok(()));
}
