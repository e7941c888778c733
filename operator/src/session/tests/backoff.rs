//! A transient error: no status is written, and the session is retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kube::runtime::controller::Action;

use crate::mock_api::status_body;
use crate::session::fixtures::{DEPLOYMENT, context, session, start};
use crate::session::reconcile::error_policy;

#[tokio::test]
async fn a_transient_error_writes_no_status_and_backs_off() {
    let (ctx, mut server) = context();
    let session = session("target: {kind: Deployment, name: web}", 600);
    let shared = Arc::new(session.clone());
    let unavailable = status_body(500, "InternalError", "etcdserver: request timed out");

    let reconciling = start(&session, &ctx);
    server.discovery().await;
    server.access_review(true).await;
    server
        .expect(Method::GET, DEPLOYMENT)
        .await
        .reply(500, &unavailable);
    let error = server.finish(reconciling).await.unwrap_err();
    assert_eq!(error.category(), "TargetReadFailed");
    assert_eq!(
        error_policy(Arc::clone(&shared), &error, Arc::clone(&ctx)),
        Action::requeue(Duration::from_secs(2))
    );

    // Neither discovery nor the access review is repeated: the context keeps both.
    let reconciling = start(&session, &ctx);
    server
        .expect(Method::GET, DEPLOYMENT)
        .await
        .reply(500, &unavailable);
    let error = server.finish(reconciling).await.unwrap_err();
    assert_eq!(
        error_policy(shared, &error, Arc::clone(&ctx)),
        Action::requeue(Duration::from_secs(4))
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("shellcar_reconcile_failures_total{category=\"TargetReadFailed\"} 2"),
        "{metrics}"
    );
}
