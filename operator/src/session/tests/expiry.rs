//! A session whose TTL is over: torn down once, then left alone.

use kube::runtime::controller::Action;

use crate::crd::Phase;
use crate::session::fixtures::{active, condition, context, session, start};
use crate::session::status::{EXPIRED, INJECTED};

#[tokio::test]
async fn an_expired_session_is_torn_down_once_then_left_alone() {
    let (ctx, mut server) = context();
    let mut session = session("{target: {kind: Deployment, name: web}, ttl: 1h}", 2 * 3600);
    session.status = Some(active(&session));
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    // Status says Sidecar: no copy or ephemeral container to look for.
    server.sidecar_teardown(true).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Expired));
    assert_eq!(condition(&status, EXPIRED), ("True", "TTLReached"));
    assert_eq!(condition(&status, INJECTED), ("False", "Removed"));
    assert!(status.pods.is_empty(), "{:?}", status.pods);
    assert!(status.ended_at.is_some());
    server.event("Normal", "Expired").await;
    assert_eq!(
        server.finish(reconciling).await.unwrap(),
        Action::await_change()
    );

    // The next pass sees the Expired status it wrote and sends nothing at all.
    session.status = Some(status);
    let again = start(&session, &ctx);
    assert_eq!(server.finish(again).await.unwrap(), Action::await_change());
}
