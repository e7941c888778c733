//! A Sidecar session on Deployment web: applied and reported, then left alone while
//! nothing changes, applied again when its debugger does.

use std::time::Duration;

use http::Method;
use kube::runtime::controller::Action;
use serde_json::json;

use crate::crd::{Mode, Phase, TargetKind};
use crate::naming;
use crate::session::fixtures::{
    APPLY, DEPLOYMENT, DEPLOYMENT_UID, REQUESTER, SESSION, SESSION_APPLY, applied_deployment,
    caches, condition, container, context_with, deployment, pod, session, start,
};
use crate::session::status::{INJECTED, READY};

#[tokio::test]
async fn a_new_sidecar_session_is_applied_then_reported() {
    let (ctx, mut server) =
        context_with(caches(Vec::new(), vec![pod("web-5d8b-k2v9p", Some(false))]));
    let session = session("target: {kind: Deployment, name: web}", 600);
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.access_review(true).await;
    server
        .expect(Method::GET, DEPLOYMENT)
        .await
        .ok(&deployment(false));

    let apply = server
        .expect(Method::PATCH, &format!("{DEPLOYMENT}{SESSION_APPLY}"))
        .await;
    assert_eq!(apply.content_type.as_deref(), Some(APPLY));
    let intent = &apply.body;
    assert_eq!(
        (&intent["apiVersion"], &intent["kind"], &intent["metadata"]),
        (
            &json!("apps/v1"),
            &json!("Deployment"),
            &json!({"name": "web"})
        )
    );
    let template = &intent["spec"]["template"];
    assert_eq!(
        template["metadata"],
        json!({
            "labels": {"debug.shellcar.dev/debugged": "true"},
            "annotations": {
                format!("debug.shellcar.dev/{}", container()): SESSION,
                naming::requester_annotation(&container()): REQUESTER,
            },
        })
    );
    assert_eq!(template["spec"]["shareProcessNamespace"], true);
    let containers = template["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "only the debugger: {containers:?}");
    assert_eq!(containers[0]["name"], container().as_str());
    assert_eq!(containers[0]["image"], "busybox");
    apply.ok(&deployment(true));

    // The debugged pods come from the watch cache.
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Injecting));
    assert_eq!(status.mode, Some(Mode::Sidecar));
    let target = status.target.as_ref().unwrap();
    assert_eq!(
        (target.kind, target.name.as_str(), target.uid.as_deref()),
        (TargetKind::Deployment, "web", Some(DEPLOYMENT_UID))
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, READY), ("False", "WaitingForPods"));
    assert_eq!(condition(&status, INJECTED), ("True", "Applied"));
    let created = session.metadata.creation_timestamp.clone().unwrap().0;
    assert_eq!(
        status.expires_at.as_ref().map(|t| t.0),
        Some(
            created
                .checked_add(jiff::SignedDuration::from_hours(1))
                .unwrap()
        )
    );
    let pods: Vec<(&str, bool)> = status
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.ready))
        .collect();
    assert_eq!(pods, [("web-5d8b-k2v9p", false)]);

    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .ends_with("; requested by jane"),
        "{:?}",
        status.message
    );

    let note = server.event("Normal", "Injected").await;
    assert_eq!(Some(note), status.message);

    let action = server.finish(reconciling).await.unwrap();
    // Requeued to check the requester's permissions again in a minute.
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn a_settled_session_sends_no_request_at_all() {
    let (ctx, mut server) = context_with(caches(
        vec![applied_deployment()],
        vec![pod("web-5d8b-k2v9p", Some(true))],
    ));
    let mut session = session("target: {kind: Deployment, name: web}", 600);

    // The first pass finds the change in place (read from the caches): it asks only what
    // it has not asked before (discovery, the access review), and writes the status.
    let reconciling = start(&session, &ctx);
    server.discovery().await;
    server.access_review(true).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(condition(&status, READY), ("True", "DebuggerRunning"));
    let target = status.target.clone().unwrap();
    assert_eq!(target.uid.as_deref(), Some(DEPLOYMENT_UID));
    server.event("Normal", "Active").await;
    server.finish(reconciling).await.unwrap();

    // The next pass over the same state: nothing to read, apply or write.
    session.status = Some(status);
    let again = start(&session, &ctx);
    assert_eq!(
        server.finish(again).await.unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
}

#[tokio::test]
async fn a_changed_debugger_is_applied_again() {
    let mut changed = applied_deployment();
    changed["spec"]["template"]["spec"]["containers"][1]["image"] = json!("alpine");
    let (ctx, mut server) = context_with(caches(vec![changed], Vec::new()));
    let session = session("target: {kind: Deployment, name: web}", 600);
    let reconciling = start(&session, &ctx);
    server.discovery().await;
    server.access_review(true).await;
    let apply = server
        .expect(Method::PATCH, &format!("{DEPLOYMENT}{SESSION_APPLY}"))
        .await;
    assert_eq!(
        apply.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
    apply.ok(&applied_deployment());
    server.status_patch(&session).await;
    server.event("Normal", "Injected").await;
    server.finish(reconciling).await.unwrap();
}
