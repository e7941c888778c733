//! The finalizer comes first: nothing changes before the API server holds it.

use http::Method;
use serde_json::json;

use crate::crd::Phase;
use crate::mock_api::status_body;
use crate::session::fixtures::{
    APPLY, DEPLOYMENT, JSON_PATCH, SESSION_APPLY, SESSIONS, context, deployment, session, start,
};

#[tokio::test]
async fn the_first_reconcile_adds_the_finalizer_and_applies_in_the_same_pass() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.metadata.finalizers = None;
    let reconciling = start(&session, &ctx);

    // The finalizer first: nothing is changed before the API server has it.
    let add = server.expect(Method::PATCH, &format!("{SESSIONS}?")).await;
    assert_eq!(add.content_type.as_deref(), Some(JSON_PATCH));
    assert_eq!(
        add.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["debug.shellcar.dev/teardown"]},
        ])
    );
    let mut added = session.clone();
    added.metadata.finalizers = Some(vec!["debug.shellcar.dev/teardown".to_owned()]);
    add.ok(&serde_json::to_value(&added).unwrap());

    // Then, in the same pass, the change itself and the status that reports it.
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
    apply.ok(&deployment(true));
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Injecting));
    server.event("Normal", "Injected").await;
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn a_refused_finalizer_stops_the_pass_before_any_change() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.metadata.finalizers = None;
    let reconciling = start(&session, &ctx);
    server
        .expect(Method::PATCH, &format!("{SESSIONS}?"))
        .await
        .reply(
            422,
            &status_body(422, "Invalid", "the test operation failed"),
        );
    let error = server.finish(reconciling).await.unwrap_err();
    assert_eq!(error.category(), "FinalizerFailed");
}
