use super::*;
use crate::crd::{DebugSessionSpec, Resolved};
use crate::rules::access::checks;
use serde_json::json;

fn spec(yaml: &str) -> DebugSessionSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn dev() -> Requester {
    Requester {
        username: "dev".to_owned(),
        uid: Some("u-1".to_owned()),
        groups: vec!["system:authenticated".to_owned()],
        extra: Some([("scopes".to_owned(), vec!["a".to_owned()])].into()),
    }
}

#[test]
fn the_review_carries_the_whole_identity() {
    let check = &checks(
        &spec("target: {kind: Pod, name: web-1}"),
        Resolved::Ephemeral,
        "shop",
    )[0];
    let review = serde_json::to_value(review(&dev(), &check.permission)).unwrap();
    assert_eq!(
        review["spec"],
        json!({
            "user": "dev",
            "uid": "u-1",
            "groups": ["system:authenticated"],
            "extra": {"scopes": ["a"]},
            "resourceAttributes": {
                "verb": "patch",
                "group": "",
                "resource": "pods",
                "subresource": "ephemeralcontainers",
                "name": "web-1",
                "namespace": "shop",
            },
        })
    );
    assert_eq!(review["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(review["kind"], "SubjectAccessReview");
}

#[test]
fn a_denial_names_user_verb_resource_namespace_and_mode() {
    let checks = checks(
        &spec(
            "{target: {kind: Deployment, name: app}, debugger: {env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}]}}",
        ),
        Resolved::Sidecar,
        "shop",
    );
    let yes = Answer {
        allowed: true,
        reason: None,
    };
    let no = Answer {
        allowed: false,
        reason: Some("no RBAC policy matched".to_owned()),
    };
    let denied = first_denied(&dev(), &checks, vec![no.clone(), no.clone()]).unwrap();
    assert_eq!(
        denied.to_string(),
        r#"user "dev" may not patch deployments.apps "app" in namespace "shop" (needed by mode Sidecar)"#
    );
    assert_eq!(denied.reason.as_deref(), Some("no RBAC policy matched"));
    let denied = first_denied(&dev(), &checks, vec![yes.clone(), no]).unwrap();
    assert_eq!(
        denied.to_string(),
        r#"user "dev" may not get secrets "db" in namespace "shop" (needed by debugger.env PW)"#
    );
    assert!(first_denied(&dev(), &checks, vec![yes.clone(), yes]).is_none());
}

#[test]
fn the_cache_keeps_answers_for_its_ttl_per_requester() {
    let cache = AccessCache::new(Duration::from_secs(30));
    let permission = checks(
        &spec("target: {kind: Deployment, name: app}"),
        Resolved::Sidecar,
        "shop",
    )
    .remove(0)
    .permission;
    let t0 = Instant::now();
    let yes = Answer {
        allowed: true,
        reason: None,
    };
    assert_eq!(cache.get(&dev(), &permission, t0), None);
    cache.insert(&dev(), &permission, yes.clone(), t0);
    assert_eq!(
        cache.get(&dev(), &permission, t0 + Duration::from_secs(29)),
        Some(yes.clone())
    );
    assert_eq!(
        cache.get(&dev(), &permission, t0 + Duration::from_secs(30)),
        None
    );
    let other = Requester {
        username: "other".to_owned(),
        ..Default::default()
    };
    assert_eq!(cache.get(&other, &permission, t0), None);
    // a later insert drops what expired
    cache.insert(&other, &permission, yes, t0 + Duration::from_secs(31));
    assert_eq!(cache.len(), 1);
}

impl AccessCache {
    /// How many answers are kept.
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[test]
fn any_one_alternative_held_in_full_suffices_and_a_refusal_names_the_first() {
    let s = spec("{target: {kind: Deployment, name: web}}");
    let alternatives =
        crate::rules::access::required(&s, Resolved::Sidecar, "shop", crate::crd::Access::Either);
    let answer = |allowed| Answer {
        allowed,
        reason: None,
    };
    // debug, then patch
    assert!(verdict(&dev(), &alternatives, vec![answer(true), answer(false)]).is_ok());
    assert!(verdict(&dev(), &alternatives, vec![answer(false), answer(true)]).is_ok());
    let Err(Error::Denied(denied)) =
        verdict(&dev(), &alternatives, vec![answer(false), answer(false)])
    else {
        panic!("neither alternative is held");
    };
    assert_eq!(
        denied.to_string(),
        r#"user "dev" may not debug deployments.apps "web" in namespace "shop" (needed by access Delegated)"#
    );
}
