//! The local cluster has two nodes: a session on a DaemonSet puts its debugger on both,
//! and the operator's two replicas run on different nodes, as the anti-affinity of
//! config/manager asks, so that losing one node leaves a replica.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use shellcar::crd::{Mode, TargetKind};
use shellcar::naming;
use shellcar_e2e::cluster::{OPERATOR_DEPLOYMENT, is_ready, pod_summary, ready_nodes};
use shellcar_e2e::exec::{assert_sees_shared_nginx, ps};
use shellcar_e2e::session::{condition, ready_pods, session};
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::{Workloads, as_user, nginx_daemonset};
use shellcar_e2e::{Cluster, Fixture, OPERATOR_NAMESPACE, TIMEOUT};

/// How many nodes the local cluster has (e2e/cluster).
const NODES: usize = 2;

/// The node a pod runs on.
fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone()
}

/// Waits until DaemonSet `name` has a Ready, up-to-date pod on each of `nodes` nodes.
async fn wait_daemonset(api: &Api<DaemonSet>, name: &str, nodes: usize) -> Result<()> {
    let want = i32::try_from(nodes)?;
    poll(
        &format!("DaemonSet {name} on {nodes} nodes"),
        TIMEOUT,
        || async {
            let ds = api.get(name).await?;
            let status = ds.status.clone().unwrap_or_default();
            let done = status.observed_generation == ds.metadata.generation
                && status.desired_number_scheduled == want
                && status.number_ready == want
                && status.updated_number_scheduled == Some(want);
            Ok(if done {
                Polled::Done(())
            } else {
                Polled::NotYet(serde_json::to_string(&status)?)
            })
        },
    )
    .await
}

/// A session on a DaemonSet runs its debugger in the DaemonSet's pod on every node: status
/// lists both pods Ready and says the debugger "is running in 2 of 2 pods", the pods are
/// on the two nodes, and in each the debugger sees that pod's nginx.
#[tokio::test]
async fn a_daemonset_session_runs_its_debugger_on_both_nodes() -> Result<()> {
    let f = Fixture::new("two-nodes-ds").await?;
    let nodes = ready_nodes(&f.cluster.client).await?;
    ensure!(
        nodes.len() == NODES,
        "the local cluster must have {NODES} Ready nodes: {nodes:?}"
    );
    let daemonsets: Api<DaemonSet> = Api::namespaced(f.cluster.client.clone(), f.ns());
    daemonsets
        .create(&as_user(), &nginx_daemonset("agent")?)
        .await
        .context("creating DaemonSet agent")?;
    wait_daemonset(&daemonsets, "agent", NODES).await?;

    f.sessions
        .create(&session("ds", TargetKind::DaemonSet, "agent", "30m")?)
        .await?;
    let container = naming::container_name("ds");
    let running = format!("is running in {NODES} of {NODES} pods");
    let s = f
        .sessions
        .wait("ds", &format!("Ready: debugger {running}"), |s| {
            ready_pods(s).len() == NODES
                && condition(s, "Ready")
                    .is_some_and(|c| c.status == "True" && c.message.contains(&running))
        })
        .await?;
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.mode, Some(Mode::Sidecar), "{status:#?}");
    assert_eq!(status.pods.len(), NODES, "{status:#?}");

    let mut on = BTreeSet::new();
    for listed in &status.pods {
        let pod = f.workloads.pods.get(&listed.name).await?;
        assert!(is_ready(&pod), "{}", pod_summary(&pod));
        on.insert(node_of(&pod).with_context(|| format!("pod {} is on no node", listed.name))?);
        let processes = ps(&f.workloads.pods, &listed.name, &container).await?;
        assert_sees_shared_nginx(&processes);
    }
    assert_eq!(on, nodes, "the debugged pods must be on every node");
    Ok(())
}

/// The operator's two replicas are Ready on different nodes: config/manager's
/// anti-affinity spreads them by `kubernetes.io/hostname`.
#[tokio::test]
async fn the_operator_replicas_run_on_different_nodes() -> Result<()> {
    let cluster = Cluster::connect().await?;
    let nodes = ready_nodes(&cluster.client).await?;
    ensure!(
        nodes.len() == NODES,
        "the local cluster must have {NODES} Ready nodes: {nodes:?}"
    );
    Workloads::new(&cluster.client, OPERATOR_NAMESPACE)
        .wait_rollout(OPERATOR_DEPLOYMENT)
        .await?;
    let pods: Vec<Pod> = cluster
        .operator_pods()
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let summary: Vec<String> = pods
        .iter()
        .map(|p| format!("{} on {:?}", pod_summary(p), node_of(p)))
        .collect();
    assert_eq!(pods.len(), NODES, "operator pods: {summary:?}");
    assert!(pods.iter().all(is_ready), "operator pods: {summary:?}");
    let on: BTreeSet<String> = pods.iter().filter_map(node_of).collect();
    assert_eq!(
        on, nodes,
        "the operator's replicas must run on different nodes: {summary:?}"
    );
    Ok(())
}
