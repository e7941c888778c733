//! Scenarios b and e: deleting a session restores the pod template exactly, including a
//! `shareProcessNamespace: true` that the user had set.

use anyhow::{Context as _, Result};
use kube::ResourceExt as _;
use shellcar::crd::TargetKind;
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::session::session;
use shellcar_e2e::workload::{
    nginx_deployment, pod_containers, pod_shares_processes, pretty, shellcar_traces,
    template_containers, template_shares_processes,
};

const HASH_LABEL: &str = "pod-template-hash";

#[tokio::test]
async fn deleting_a_session_restores_the_template_exactly() -> Result<()> {
    let f = Fixture::new("revert").await?;
    f.workloads
        .create_deployment(&nginx_deployment("web", 2)?)
        .await?;
    let before = f.workloads.template("web").await?;
    let pods_before = f.workloads.live_pods("app=web").await?;
    let hash = pods_before
        .first()
        .and_then(|p| p.labels().get(HASH_LABEL).cloned())
        .context("web's pods have no pod-template-hash")?;

    f.sessions
        .create(&session("revert", TargetKind::Deployment, "web", "30m")?)
        .await?;
    f.sessions.wait_active("revert").await?;
    let container = naming::container_name("revert");
    let during = f.workloads.template("web").await?;
    assert!(
        template_containers(&during).contains(&container)
            && template_shares_processes(&during) == Some(true),
        "the session did not change the template:\n{}",
        pretty(&during)
    );

    f.sessions.delete_and_wait_gone("revert").await?;
    let after = f.workloads.template("web").await?;
    assert_eq!(
        after,
        before,
        "the template after the session differs from the one before\n--- before ---\n{}\n--- after ---\n{}",
        pretty(&before),
        pretty(&after)
    );

    // The pods roll back: the original ReplicaSet's pods, without the debugger.
    f.workloads.wait_rollout("web").await?;
    f.workloads
        .wait_pods(
            "app=web",
            2,
            "of the original template, without debugger",
            |p| {
                p.labels().get(HASH_LABEL) == Some(&hash)
                    && !pod_containers(p).contains(&container)
                    && !pod_shares_processes(p)
            },
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_users_share_process_namespace_survives_teardown() -> Result<()> {
    let f = Fixture::new("usershare").await?;
    let mut web = nginx_deployment("web", 1)?;
    web.spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .context("no pod spec")?
        .share_process_namespace = Some(true);
    f.workloads.create_deployment(&web).await?;
    let before = f.workloads.template("web").await?;
    assert_eq!(template_shares_processes(&before), Some(true));

    f.sessions
        .create(&session("usershare", TargetKind::Deployment, "web", "30m")?)
        .await?;
    f.sessions.wait_active("usershare").await?;
    let container = naming::container_name("usershare");
    let during = f.workloads.template("web").await?;
    assert!(
        template_containers(&during).contains(&container),
        "the session did not add its container:\n{}",
        pretty(&during)
    );

    f.sessions.delete_and_wait_gone("usershare").await?;
    let after = f.workloads.template("web").await?;
    assert_eq!(
        template_shares_processes(&after),
        Some(true),
        "the user's shareProcessNamespace was removed:\n{}",
        pretty(&after)
    );
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
        .wait_pods("app=web", 1, "sharing processes, without debugger", |p| {
            !pod_containers(p).contains(&container) && pod_shares_processes(p)
        })
        .await?;
    Ok(())
}
