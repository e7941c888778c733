//! Scenario c: a session whose ttl runs out is torn down and stays as an audit record.

use std::time::Duration;

use anyhow::{Context as _, Result};
use shellcar::crd::{Phase, TargetKind};
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::session::{condition_is, phase, session};
use shellcar_e2e::workload::{
    nginx_deployment, pod_containers, pretty, shellcar_traces, template_containers,
};

#[tokio::test]
async fn an_expired_session_is_reverted_and_kept() -> Result<()> {
    let f = Fixture::new("ttl").await?;
    f.workloads
        .create_deployment(&nginx_deployment("web", 1)?)
        .await?;
    let before = f.workloads.template("web").await?;
    let container = naming::container_name("short");

    f.sessions
        .create(&session("short", TargetKind::Deployment, "web", "20s")?)
        .await?;
    // It works first: the debugger runs within the 20 s.
    f.sessions.wait_active("short").await?;
    let during = f.workloads.template("web").await?;
    assert!(
        template_containers(&during).contains(&container),
        "{}",
        pretty(&during)
    );

    let s = f
        .sessions
        .wait("short", "phase Expired", |s| {
            phase(s) == Some(Phase::Expired)
        })
        .await?;
    let status = s.status.clone().context("no status")?;
    assert!(condition_is(&s, "Expired", "True"), "{status:#?}");
    assert!(condition_is(&s, "Ready", "False"), "{status:#?}");
    assert!(
        status.pods.is_empty(),
        "an expired session lists pods: {status:#?}"
    );
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

    let after = f.workloads.template("web").await?;
    assert_eq!(
        after,
        before,
        "--- before ---\n{}\n--- after ---\n{}",
        pretty(&before),
        pretty(&after)
    );
    f.workloads.wait_rollout("web").await?;
    f.workloads
        .wait_pods("app=web", 1, "without debugger", |p| {
            !pod_containers(p).contains(&container)
        })
        .await?;
    f.events
        .wait_for("DebugSession", "short", "Normal", "Expired")
        .await?;

    // The object stays, still Expired, and nothing is injected again (the rollback's pod
    // changes have woken the operator in the meantime).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = f.sessions.api.get("short").await?;
    assert_eq!(phase(&kept), Some(Phase::Expired));
    assert!(kept.metadata.deletion_timestamp.is_none());
    let later = f.workloads.template("web").await?;
    assert!(shellcar_traces(&later).is_empty(), "{}", pretty(&later));
    assert_eq!(later, before);
    Ok(())
}
