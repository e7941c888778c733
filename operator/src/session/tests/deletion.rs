//! A deleted session: its change is torn down, then its finalizer released.

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use serde_json::json;

use crate::crd::Phase;
use crate::session::fixtures::{
    DEPLOYMENT, JSON_PATCH, SESSION_APPLY, SESSIONS, active, ago, applied_deployment, caches,
    condition, context, context_with, deployment, session, start,
};
use crate::session::status::INJECTED;

#[tokio::test]
async fn a_deleted_session_is_torn_down_then_released() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.status = Some(active(&session));
    session.metadata.deletion_timestamp = Some(Time(ago(1)));
    let reconciling = start(&session, &ctx);

    // No discovery: cleanup needs no capabilities.
    server.sidecar_teardown(true).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Ended));
    assert_eq!(condition(&status, INJECTED), ("False", "Removed"));
    server.event("Normal", "Ended").await;

    let release = server.expect(Method::PATCH, &format!("{SESSIONS}?")).await;
    assert_eq!(release.content_type.as_deref(), Some(JSON_PATCH));
    assert_eq!(
        release.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "debug.shellcar.dev/teardown"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    let mut released = session.clone();
    released.metadata.finalizers = None;
    released.status = Some(status);
    release.ok(&serde_json::to_value(&released).unwrap());

    assert_eq!(
        server.finish(reconciling).await.unwrap(),
        Action::await_change()
    );
}

#[tokio::test]
async fn teardown_trusts_a_cache_that_shows_the_sessions_fields() {
    let (ctx, mut server) = context_with(caches(vec![applied_deployment()], Vec::new()));
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.status = Some(active(&session));
    session.metadata.deletion_timestamp = Some(Time(ago(1)));
    let reconciling = start(&session, &ctx);

    // No read of the Deployment: the cache shows what the session owns.
    let call = server
        .expect(Method::PATCH, &format!("{DEPLOYMENT}{SESSION_APPLY}"))
        .await;
    assert_eq!(
        call.body,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}})
    );
    call.ok(&deployment(false));
    server.status_patch(&session).await;
    server.event("Normal", "Ended").await;
    server
        .expect(Method::PATCH, &format!("{SESSIONS}?"))
        .await
        .ok(&serde_json::to_value(&session).unwrap());
    server.finish(reconciling).await.unwrap();
}
