//! A session whose ttl runs out is torn down and stays as an audit record.

use std::time::Duration;

use anyhow::{Context as _, Result};
use shellcar::crd::Phase;
use shellcar_e2e::Fixture;
use shellcar_e2e::session::phase;
use shellcar_e2e::workload::assert_template_restored;

#[tokio::test]
async fn an_expired_session_is_reverted_and_kept() -> Result<()> {
    let (f, before) = Fixture::with_deployment("ttl", "web", 1).await?;

    // It works first: the debugger runs within the 20 s.
    let container = f.debug_deployment("short", "web", "20s").await?;
    f.workloads.assert_debugged("web", &[&container]).await?;

    let s = f.sessions.wait_expired("short").await?;
    let status = s.status.clone().context("no status")?;
    let created = s
        .metadata
        .creation_timestamp
        .as_ref()
        .context("no creationTimestamp")?
        .0;
    let expires = status.expires_at.as_ref().context("no expiresAt")?.0;
    assert_eq!(
        expires.duration_since(created),
        jiff::SignedDuration::from_secs(20),
        "expiresAt must be creation + ttl"
    );
    let ended = status.ended_at.as_ref().context("no endedAt")?.0;
    assert!(
        ended >= expires,
        "ended at {ended}, before expiry at {expires}"
    );

    f.workloads.assert_restored("web", &before, 1).await?;
    f.events
        .wait_for("DebugSession", "short", "Normal", "Expired")
        .await?;

    // The object stays, still Expired, and nothing is injected again (the rollback's pod
    // changes have woken the operator in the meantime).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = f.sessions.api.get("short").await?;
    assert_eq!(phase(&kept), Some(Phase::Expired));
    assert!(kept.metadata.deletion_timestamp.is_none());
    assert_template_restored(&before, &f.workloads.template("web").await?);
    Ok(())
}
