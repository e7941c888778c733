//! Pods belong to sessions by owner UID: a pod that matches a workload's selector, or
//! sits under a Copy session's name, or carries a session's annotation, is neither
//! listed, debugged, adopted nor deleted unless the owner chain says it is the session's.

use http::Method;
use serde_json::{Value, json};

use crate::crd::Phase;
use crate::naming;
use crate::session::fixtures::{
    DEPLOYMENT, PODS, SESSION, SESSION_APPLY, caches, condition, container, context_with,
    deployment, pod, pod_list, session, start,
};
use crate::session::status::{READY, STALLED};

/// ReplicaSet `web-other` of another Deployment, whose pods carry `app: web` too.
const OTHER_REPLICA_SETS: &str = "/apis/apps/v1/namespaces/shop/replicasets/web-other";

/// A running pod named to sort first, matching Deployment web's selector and marked for
/// session dbg, with a running container named as its debugger; controlled by
/// ReplicaSet web-other, which Deployment web does not own.
fn decoy() -> Value {
    let mut decoy = pod("a-decoy", Some(true));
    decoy["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
        "kind": "ReplicaSet", "name": "web-other", "uid": "r0-other", "controller": true}]);
    decoy
}

/// ReplicaSet web-other, controlled by Deployment shop-front.
fn other_replica_set() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-other", "namespace": "shop", "uid": "r0-other",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                "name": "shop-front", "uid": "d0-other", "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "x", "image": "x"}]}}},
    })
}

#[tokio::test]
async fn ephemeral_debugs_and_lists_only_pods_its_deployment_owns() {
    let (ctx, mut server) = context_with(caches(vec![deployment(false)], vec![decoy()]));
    let session = session(
        "{target: {kind: Deployment, name: web}, mode: Ephemeral}",
        600,
    );
    let reconciling = start(&session, &ctx);
    server.discovery().await;
    let asked = server.any_access_review(true).await;
    assert_eq!(asked["subresource"], "ephemeralcontainers");

    server
        .expect(Method::GET, DEPLOYMENT)
        .await
        .ok(&deployment(false));
    let real = pod("web-5d8b-k2v9p", None);
    server
        .expect(Method::GET, &format!("{PODS}?&labelSelector=app%3Dweb"))
        .await
        .ok(&pod_list(vec![decoy(), real.clone()]));
    // web-5d8b is in the cache; web-other is read, and found to be someone else's.
    server
        .expect(Method::GET, OTHER_REPLICA_SETS)
        .await
        .ok(&other_replica_set());

    // Only the Deployment's own pod is marked and gets the debugger, though the decoy
    // sorts first and carries the session's mark already.
    let real_pod = format!("{PODS}/web-5d8b-k2v9p");
    let mark = server
        .expect(Method::PATCH, &format!("{real_pod}{SESSION_APPLY}"))
        .await;
    assert_eq!(mark.body["metadata"]["name"], "web-5d8b-k2v9p");
    mark.ok(&real);
    let add = server
        .expect(Method::PATCH, &format!("{real_pod}/ephemeralcontainers?"))
        .await;
    assert_eq!(
        add.body["spec"]["ephemeralContainers"][0]["name"],
        container().as_str()
    );
    add.ok(&real);

    // Listing the debugged pods (from the cache) reads web-other again: still not web's.
    server
        .expect(Method::GET, OTHER_REPLICA_SETS)
        .await
        .ok(&other_replica_set());
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Injecting));
    assert!(
        status.pods.iter().all(|p| p.name != "a-decoy"),
        "{:?}",
        status.pods
    );
    server.event("Normal", "Injected").await;
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn a_pod_under_the_copys_name_is_neither_adopted_nor_deleted() {
    let copy = naming::copy_name(SESSION);
    // Made by a user while the session waited: the session's marks, its debugger's
    // name, but not owned by the session.
    let mut taken = pod(&copy, Some(true));
    taken["metadata"]["ownerReferences"] = json!(null);
    taken["metadata"]["annotations"][naming::COPY_OF_ANNOTATION] = json!("web-5d8b-k2v9p");
    let (ctx, mut server) = context_with(caches(Vec::new(), vec![taken.clone()]));
    let session = session(
        "{target: {kind: Pod, name: web-5d8b-k2v9p}, mode: Copy}",
        600,
    );
    let reconciling = start(&session, &ctx);
    server.discovery().await;
    server.any_access_review(true).await;
    server.any_access_review(true).await;

    let copy_path = format!("{PODS}/{copy}");
    server.expect(Method::GET, &copy_path).await.ok(&taken);
    // The refusal's teardown reads the pod again and leaves it: no DELETE.
    server.expect(Method::GET, &copy_path).await.ok(&taken);
    server
        .expect(Method::GET, &format!("{PODS}?"))
        .await
        .ok(&pod_list(vec![taken.clone()]));

    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, READY), ("False", "NameTaken"));
    assert_eq!(condition(&status, STALLED), ("True", "NameTaken"));
    assert!(status.pods.is_empty(), "{:?}", status.pods);
    let note = server.event("Warning", "NameTaken").await;
    assert!(
        note.starts_with(&format!(
            "pod {copy} already exists and is not this session's copy"
        )),
        "{note}"
    );
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn a_copy_owned_by_another_session_of_the_same_name_is_not_adopted() {
    let copy = naming::copy_name(SESSION);
    // A copy of an earlier session named dbg, whose owner reference names the earlier
    // session's UID.
    let mut earlier = pod(&copy, Some(true));
    earlier["metadata"]["ownerReferences"] = json!([{"apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugSession", "name": SESSION, "uid": "5e55-0999", "controller": true}]);
    let (ctx, mut server) = context_with(caches(Vec::new(), vec![earlier.clone()]));
    let session = session(
        "{target: {kind: Pod, name: web-5d8b-k2v9p}, mode: Copy}",
        600,
    );
    let reconciling = start(&session, &ctx);
    server.discovery().await;
    server.any_access_review(true).await;
    server.any_access_review(true).await;
    let copy_path = format!("{PODS}/{copy}");
    server.expect(Method::GET, &copy_path).await.ok(&earlier);
    server.expect(Method::GET, &copy_path).await.ok(&earlier);
    server
        .expect(Method::GET, &format!("{PODS}?"))
        .await
        .ok(&pod_list(vec![earlier.clone()]));
    let status = server.status_patch(&session).await;
    assert_eq!(condition(&status, READY), ("False", "NameTaken"));
    server.event("Warning", "NameTaken").await;
    server.finish(reconciling).await.unwrap();
}
