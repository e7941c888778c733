//! Refused sessions: a refusal tears down whatever the session may have changed, fails
//! the session with a condition and an Event, and waits for a change to the spec.

use std::sync::Arc;

use kube::runtime::controller::Action;

use crate::crd::{DebugPolicy, Phase};
use crate::rules::namespaces::Namespaces;
use crate::session::fixtures::{
    caches_with_sessions, condition, context, context_with, session, start,
};
use crate::session::status::{READY, STALLED};

#[tokio::test]
async fn a_requester_without_the_permission_is_refused_and_nothing_is_applied() {
    let (ctx, mut server) = context();
    let session = session("target: {kind: Deployment, name: web}", 600);
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.access_review(false).await;
    server.teardown(false).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, READY), ("False", "Forbidden"));
    assert_eq!(condition(&status, STALLED), ("True", "Forbidden"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "user \"jane\" may not patch deployments.apps \"web\" in namespace \"shop\" (needed by mode Sidecar); requested by jane"
        )
    );
    server.event("Warning", "Forbidden").await;
    let action = server.finish(reconciling).await.unwrap();
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_session_without_a_requester_is_refused_without_asking() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.spec.requester = None;
    let reconciling = start(&session, &ctx);

    // Refused before anything is asked, even what the cluster serves.
    server.teardown(false).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, READY), ("False", "NoRequester"));
    server.event("Warning", "NoRequester").await;
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn a_session_the_webhook_did_not_stamp_is_refused_without_asking() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    // Written while the webhook was away: a requester with more groups than sealed.
    let requester = session.spec.requester.as_mut().unwrap();
    requester.groups.push("system:masters".to_owned());
    let reconciling = start(&session, &ctx);

    server.teardown(false).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, READY), ("False", "NotAdmitted"));
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("stamp does not match"),
        "{:?}",
        status.message
    );
    server.event("Warning", "NotAdmitted").await;
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn a_refused_session_is_torn_down_and_failed() {
    let (ctx, mut server) = context();
    let session = session("{target: {kind: Deployment, name: web}, ttl: 48h}", 60);
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.teardown(false).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        status.message.as_deref(),
        Some("ttl \"48h\" is longer than the maximum of 1day; requested by jane")
    );
    assert_eq!(condition(&status, READY), ("False", "TTLTooLong"));
    assert_eq!(condition(&status, STALLED), ("True", "TTLTooLong"));
    assert_eq!(status.expires_at, None);
    server.event("Warning", "TTLTooLong").await;

    let action = server.finish(reconciling).await.unwrap();
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_sidecar_on_a_pod_is_refused_without_reading_any_workload() {
    let (ctx, mut server) = context();
    let session = session(
        "{target: {kind: Pod, name: web-7c9f-x2x8q}, mode: Sidecar}",
        60,
    );
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.pod_teardown().await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, STALLED), ("True", "NotSupported"));
    server.event("Warning", "NotSupported").await;

    assert_eq!(
        server.finish(reconciling).await.unwrap(),
        Action::await_change()
    );
}

#[tokio::test]
async fn the_leader_holds_the_policys_limit_in_creation_order() {
    let policy: DebugPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": {"name": "one-at-a-time"},
        "spec": {"maxSessionsPerNamespace": 1},
    }))
    .unwrap();
    // Two webhook replicas admitted both into the last slot; "earlier" came first.
    let mut earlier = session("target: {kind: Deployment, name: web}", 1200);
    earlier.metadata.name = Some("earlier".to_owned());
    let (ctx, mut server) = context_with(caches_with_sessions(
        Vec::new(),
        Vec::new(),
        vec![earlier.clone()],
        vec![policy],
    ));
    let later = session("target: {kind: Deployment, name: web}", 600);
    let reconciling = start(&later, &ctx);

    server.discovery().await;
    server.teardown(false).await;
    let status = server.status_patch(&later).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, READY), ("False", "PolicyDenied"));
    assert!(
        status.message.as_deref().unwrap().contains("one-at-a-time"),
        "{:?}",
        status.message
    );
    server.event("Warning", "PolicyDenied").await;
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn a_session_in_a_protected_namespace_is_refused_and_nothing_is_applied() {
    // The operator's own namespace is shop, and a policy selects every namespace.
    let everything: DebugPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": {"name": "everything"},
        "spec": {"namespaceSelector": {}},
    }))
    .unwrap();
    let (mut ctx, mut server) = context_with(caches_with_sessions(
        Vec::new(),
        Vec::new(),
        Vec::new(),
        vec![everything],
    ));
    Arc::get_mut(&mut ctx).unwrap().policy.namespaces = Namespaces::new("shop", Vec::new());
    let session = session("target: {kind: Deployment, name: web}", 60);
    let reconciling = start(&session, &ctx);

    // No access review, no apply: only the teardown's read of what is in place.
    server.discovery().await;
    server.teardown(false).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, READY), ("False", "NamespaceProtected"));
    assert_eq!(condition(&status, STALLED), ("True", "NamespaceProtected"));
    let message = status.message.as_deref().unwrap();
    assert!(
        message.starts_with("namespace shop is protected: shellcar changes nothing in kube-system or in its own namespace unless a DebugPolicy names the namespace"),
        "{message}"
    );
    server.event("Warning", "NamespaceProtected").await;
    assert_eq!(
        server.finish(reconciling).await.unwrap(),
        Action::await_change()
    );
}
