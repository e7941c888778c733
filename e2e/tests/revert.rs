//! Deleting a session restores the pod template exactly, including a
//! `shareProcessNamespace: true` that the user had set.

use anyhow::{Context as _, Result};
use kube::ResourceExt as _;
use shellcar_e2e::Fixture;
use shellcar_e2e::workload::{nginx_deployment, template_shares_processes};

const HASH_LABEL: &str = "pod-template-hash";

#[tokio::test]
async fn deleting_a_session_restores_the_template_exactly() -> Result<()> {
    let (f, before) = Fixture::with_deployment("revert", "web", 2).await?;
    let pods_before = f.workloads.live_pods("app=web").await?;
    let hash = pods_before
        .first()
        .and_then(|p| p.labels().get(HASH_LABEL).cloned())
        .context("web's pods have no pod-template-hash")?;

    let container = f.debug_deployment("revert", "web", "30m").await?;
    f.workloads.assert_debugged("web", &[&container]).await?;

    f.sessions.delete_and_wait_gone("revert").await?;
    let pods = f.workloads.assert_restored("web", &before, 2).await?;
    // The pods rolled back are the original ReplicaSet's.
    for pod in &pods {
        assert_eq!(
            pod.labels().get(HASH_LABEL),
            Some(&hash),
            "pod {} is not of the original ReplicaSet",
            pod.name_any()
        );
    }
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

    let container = f.debug_deployment("usershare", "web", "30m").await?;
    f.workloads.assert_debugged("web", &[&container]).await?;

    // The user's shareProcessNamespace stays; the pods keep sharing processes.
    f.sessions.delete_and_wait_gone("usershare").await?;
    f.workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}
