//! Two operator replicas, one leader: SIGKILLing the leader during injection and again
//! during teardown hands the work to the other replica, which finishes it exactly once;
//! while the leader is dead, sessions can still be created, because every replica serves
//! the admission webhook. The failover times are printed, not asserted.
//!
//! The only test in this binary, so that no other test runs while a replica is down
//! (cargo runs test binaries one after another).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kube::api::PostParams;
use shellcar::crd::TargetKind;
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::cluster::is_ready;
use shellcar_e2e::session::session;

/// How long a create may keep failing right after the kill, while the API server still
/// routes some webhook calls to the dead replica's endpoint (until its readiness drops).
const ENDPOINT_GRACE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_other_replica_takes_over_injection_and_teardown() -> Result<()> {
    let (f, before) = Fixture::with_deployment("failover", "web", 1).await?;
    let container = naming::container_name("survivor");
    let replicas = f.cluster.operator_pods().await?;
    if replicas.iter().filter(|p| is_ready(p)).count() < 2 {
        bail!(
            "this test needs two Ready operator replicas: {}",
            replicas.len()
        );
    }

    // Kill the leader right after creating the session, while it injects.
    let leader = f.cluster.wait_leader().await?;
    f.sessions
        .create(&session("survivor", TargetKind::Deployment, "web", "30m")?)
        .await?;
    let killed_at = Instant::now();
    f.cluster.sigkill_operator(&leader).await?;

    // The webhook answers from the other replica meanwhile.
    let mut refused = 0;
    let second = session("meanwhile", TargetKind::Deployment, "web", "30m")?;
    let created_after = loop {
        match f.sessions.api.create(&PostParams::default(), &second).await {
            Ok(_) => break killed_at.elapsed(),
            Err(e) if killed_at.elapsed() < ENDPOINT_GRACE => {
                refused += 1;
                eprintln!("create while the leader is dead, attempt {refused}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => bail!("no session could be created while the leader was dead: {e}"),
        }
    };
    let (new_leader, failover) = f.cluster.wait_new_leader(&leader, killed_at).await?;
    f.sessions.wait_active("survivor").await?;
    f.sessions.wait_active("meanwhile").await?;
    // Injected once each, not twice by the old and the new leader.
    let meanwhile = naming::container_name("meanwhile");
    f.workloads
        .assert_debugged("web", &[&container, &meanwhile])
        .await?;
    println!(
        "injection: {leader} SIGKILLed; a session was admitted after {:.1} s ({refused} refused before); {new_leader} took the Lease after {:.1} s",
        created_after.as_secs_f64(),
        failover.as_secs_f64()
    );

    // Kill the new leader right after deleting the sessions, while it tears down.
    let uids = [
        f.sessions.delete("survivor").await?,
        f.sessions.delete("meanwhile").await?,
    ];
    let killed_at = Instant::now();
    f.cluster.sigkill_operator(&new_leader).await?;
    let (third, failover) = f.cluster.wait_new_leader(&new_leader, killed_at).await?;
    f.sessions.wait_gone("survivor", &uids[0]).await?;
    f.sessions.wait_gone("meanwhile", &uids[1]).await?;
    println!(
        "teardown: {new_leader} SIGKILLed; {third} took the Lease after {:.1} s; torn down after {:.1} s",
        failover.as_secs_f64(),
        killed_at.elapsed().as_secs_f64()
    );
    f.workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}
