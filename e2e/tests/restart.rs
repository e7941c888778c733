//! Scenario g: the operator is killed while a session is being injected, and again while
//! one is being torn down; the replacement converges and leaves nothing behind.
//!
//! The only test in this binary, so that no other test runs while the operator is down
//! (cargo runs test binaries one after another).

use anyhow::Result;
use shellcar::crd::TargetKind;
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::session::session;
use shellcar_e2e::workload::{
    nginx_deployment, pod_containers, pod_shares_processes, pretty, shellcar_traces,
    template_containers, template_shares_processes,
};

#[tokio::test]
async fn operator_restarts_converge_and_leave_nothing_behind() -> Result<()> {
    let f = Fixture::new("restart").await?;
    f.workloads
        .create_deployment(&nginx_deployment("web", 1)?)
        .await?;
    let before = f.workloads.template("web").await?;
    let container = naming::container_name("survivor");

    // Kill the operator right after creating the session, while it injects.
    f.sessions
        .create(&session("survivor", TargetKind::Deployment, "web", "30m")?)
        .await?;
    let killed = f.cluster.kill_operator().await?;
    let replacement = f.cluster.wait_operator_ready(&killed).await?;
    eprintln!("operator replaced by {replacement}");
    f.sessions.wait_active("survivor").await?;
    let during = f.workloads.template("web").await?;
    let count = template_containers(&during)
        .iter()
        .filter(|c| **c == container)
        .count();
    assert_eq!(count, 1, "{}", pretty(&during));
    assert_eq!(template_shares_processes(&during), Some(true));

    // Kill it again right after deleting the session, while it tears down.
    let uid = f.sessions.delete("survivor").await?;
    let killed = f.cluster.kill_operator().await?;
    let replacement = f.cluster.wait_operator_ready(&killed).await?;
    eprintln!("operator replaced by {replacement}");
    f.sessions.wait_gone("survivor", &uid).await?;

    let after = f.workloads.template("web").await?;
    assert!(
        shellcar_traces(&after).is_empty(),
        "{:?}",
        shellcar_traces(&after)
    );
    assert_eq!(
        after,
        before,
        "--- before ---\n{}\n--- after ---\n{}",
        pretty(&before),
        pretty(&after)
    );
    f.workloads.wait_rollout("web").await?;
    f.workloads
        .wait_pods("app=web", 1, "without debugger or sharing", |p| {
            !pod_containers(p).contains(&container) && !pod_shares_processes(p)
        })
        .await?;
    Ok(())
}
