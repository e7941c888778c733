//! The operator is killed while a session is being injected, and again while
//! one is being torn down; the replacement converges and leaves nothing behind.
//!
//! The only test in this binary, so that no other test runs while the operator is down
//! (cargo runs test binaries one after another).

use anyhow::Result;
use shellcar::crd::TargetKind;
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::session::session;

#[tokio::test]
async fn operator_restarts_converge_and_leave_nothing_behind() -> Result<()> {
    let (f, before) = Fixture::with_deployment("restart", "web", 1).await?;
    let container = naming::container_name("survivor");

    // Kill the operator right after creating the session, while it injects.
    f.sessions
        .create(&session("survivor", TargetKind::Deployment, "web", "30m")?)
        .await?;
    let killed = f.cluster.kill_operator().await?;
    let replacement = f.cluster.wait_operator_ready(&killed).await?;
    eprintln!("operator replaced by {replacement}");
    f.sessions.wait_active("survivor").await?;
    // Injected once, not twice by the operator and its replacement.
    f.workloads.assert_debugged("web", &[&container]).await?;

    // Kill it again right after deleting the session, while it tears down.
    let uid = f.sessions.delete("survivor").await?;
    let killed = f.cluster.kill_operator().await?;
    let replacement = f.cluster.wait_operator_ready(&killed).await?;
    eprintln!("operator replaced by {replacement}");
    f.sessions.wait_gone("survivor", &uid).await?;

    f.workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}
