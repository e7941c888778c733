//! Two sessions on one Deployment are independent; the shared process
//! namespace stays until the last one ends.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use kube::ResourceExt as _;
use shellcar::crd::{Phase, TargetKind};
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::exec::{self, ps};
use shellcar_e2e::session::{phase, ready_pods, session};
use shellcar_e2e::workload::{
    pod_containers, pod_shares_processes, pretty, template_containers, template_shares_processes,
};

#[tokio::test]
async fn ending_one_session_leaves_the_other_working() -> Result<()> {
    let (f, before) = Fixture::with_deployment("two", "web", 1).await?;
    let (alpha, beta) = (
        naming::container_name("alpha"),
        naming::container_name("beta"),
    );

    for name in ["alpha", "beta"] {
        f.sessions
            .create(&session(name, TargetKind::Deployment, "web", "30m")?)
            .await?;
    }
    f.sessions.wait_active("alpha").await?;
    f.sessions.wait_active("beta").await?;
    f.workloads.assert_debugged("web", &[&alpha, &beta]).await?;

    // End alpha: beta's container, annotation and the sharing stay.
    f.sessions.delete_and_wait_gone("alpha").await?;
    let one = f.workloads.template("web").await?;
    let containers = template_containers(&one);
    assert!(
        !containers.contains(&alpha) && containers.contains(&beta),
        "{}",
        pretty(&one)
    );
    assert_eq!(
        template_shares_processes(&one),
        Some(true),
        "shareProcessNamespace went away while beta still runs:\n{}",
        pretty(&one)
    );
    let annotations = one["metadata"]["annotations"]
        .as_object()
        .context("no annotations left")?;
    assert!(annotations.contains_key(&naming::session_annotation(&beta)));
    assert!(!annotations.contains_key(&naming::session_annotation(&alpha)));

    // The pods roll out to carry only beta, and beta still works in them.
    f.workloads.wait_rollout("web").await?;
    let pods = f
        .workloads
        .wait_pods("app=web", 1, "with beta only", |p| {
            let cs = pod_containers(p);
            cs.contains(&beta) && !cs.contains(&alpha) && pod_shares_processes(p)
        })
        .await?;
    let current: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
    let s = f
        .sessions
        .wait("beta", "Active on the new pod", |s| {
            let ready = ready_pods(s);
            !ready.is_empty() && ready.iter().all(|p| current.contains(&p.name))
        })
        .await?;
    assert_eq!(phase(&s), Some(Phase::Active));
    let pod = &ready_pods(&s)[0];
    let processes = ps(&f.workloads.pods, &pod.name, &beta).await?;
    assert!(
        !exec::find(&processes, exec::NGINX_MASTER).is_empty(),
        "beta does not see nginx: {processes:#?}"
    );

    // End beta: everything is as before, sharing included.
    f.sessions.delete_and_wait_gone("beta").await?;
    f.workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}
