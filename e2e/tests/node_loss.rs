//! Losing the node the operator's leader runs on: the other replica, on the other node,
//! takes the Lease, finishes a session created just before the loss and serves one
//! created after it.
//!
//! Only the second node can be lost (the first also runs the control plane), so the test
//! first makes the leader the replica on node 2: while it runs elsewhere, the operator is
//! scaled down by the leader's pod, and the replica on node 2 takes over. Then node 2's kubelet and containerd are
//! SIGKILLed and its pods force-deleted, as `kubectl delete pod --force --grace-period=0`
//! does for a node that is gone for good. Killing containerd leaves the containers'
//! shims, and so the old leader's process, running: what stops it is the force deletion,
//! which invalidates its pod-bound token, so it can no longer renew the Lease. At the end
//! `e2e/cluster up` starts node 2's kubelet and containerd again (it starts what is
//! missing), even when the test fails.
//!
//! The only test in this binary: it takes a node down, so no other test may run
//! meanwhile (cargo runs test binaries one after another). It runs the cluster script
//! itself (`e2e/cluster kill`, `up`), as root, from the cluster's network namespace like
//! every test. The failover time is printed, not asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use shellcar::crd::TargetKind;
use shellcar::naming;
use shellcar_e2e::cluster::{OPERATOR_DEPLOYMENT, is_ready, pod_summary, ready_nodes};
use shellcar_e2e::leader::pod_of;
use shellcar_e2e::script::{NODE_2, cluster_script, up_keeping_state};
use shellcar_e2e::session::session;
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::{Workloads, nginx_deployment};
use shellcar_e2e::{Cluster, Fixture, OPERATOR_NAMESPACE, TIMEOUT};

/// How many handovers may be tried before the replica on node 2 leads (one does it).
const MAX_HANDOVERS: usize = 2;
/// The annotation that ranks a ReplicaSet's pods for deletion when it scales down.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The Lease holder and the node its pod runs on.
async fn leader_and_node(cluster: &Cluster) -> Result<(String, String)> {
    let holder = cluster.wait_leader().await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    let pod = pods
        .get(pod_of(&holder))
        .await
        .with_context(|| format!("reading the leader's pod ({holder})"))?;
    let node = pod
        .spec
        .and_then(|s| s.node_name)
        .with_context(|| format!("the leader's pod ({holder}) is on no node"))?;
    Ok((holder, node))
}

/// Waits until the operator has rolled out with a Ready replica on each node.
async fn wait_spread(cluster: &Cluster, nodes: &BTreeSet<String>) -> Result<()> {
    Workloads::new(&cluster.client, OPERATOR_NAMESPACE)
        .wait_rollout(OPERATOR_DEPLOYMENT)
        .await?;
    poll("a Ready operator replica on each node", TIMEOUT, || async {
        let pods = cluster.operator_pods().await?;
        let on: BTreeSet<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        Ok(if &on == nodes {
            Polled::Done(())
        } else {
            Polled::NotYet(format!(
                "{:?}",
                pods.iter()
                    .map(|p| format!(
                        "{} on {:?}",
                        pod_summary(p),
                        p.spec.as_ref().and_then(|s| s.node_name.clone())
                    ))
                    .collect::<Vec<_>>()
            ))
        })
    })
    .await
}

/// Makes the replica on node 2 the leader. While the leader runs on another node, the
/// operator is scaled down to one replica, the leader's pod chosen to go (the lowest
/// `controller.kubernetes.io/pod-deletion-cost`): it releases the Lease and the replica on
/// node 2, alone, takes it; then the operator is scaled back up. Deleting the leader's pod
/// would not do: its replacement may win the released Lease. Returns the leader's
/// identity.
async fn lead_from_node_2(cluster: &Cluster, nodes: &BTreeSet<String>) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    for _ in 0..MAX_HANDOVERS {
        wait_spread(cluster, nodes).await?;
        let (holder, node) = leader_and_node(cluster).await?;
        if node == NODE_2 {
            return Ok(holder);
        }
        eprintln!("the leader {holder} runs on {node}: scaling it away");
        let replicas = deployments
            .get_scale(OPERATOR_DEPLOYMENT)
            .await?
            .spec
            .and_then(|s| s.replicas)
            .context("the operator's Deployment has no replicas")?;
        pods.patch(
            pod_of(&holder),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {DELETION_COST: "-1000"}}})),
        )
        .await
        .with_context(|| format!("marking the leader's pod ({holder}) to go first"))?;
        let scale = |n: i32| json!({"spec": {"replicas": n}});
        deployments
            .patch_scale(
                OPERATOR_DEPLOYMENT,
                &PatchParams::default(),
                &Patch::Merge(scale(replicas - 1)),
            )
            .await?;
        let taken = cluster.wait_new_leader(&holder, Instant::now()).await;
        deployments
            .patch_scale(
                OPERATOR_DEPLOYMENT,
                &PatchParams::default(),
                &Patch::Merge(scale(replicas)),
            )
            .await?;
        taken?;
    }
    bail!("the replica on {NODE_2} did not become the leader after {MAX_HANDOVERS} handovers")
}

/// Force-deletes every pod bound to `node`, as `kubectl delete pod --force
/// --grace-period=0` does; returns their names.
async fn force_delete_pods_on(client: &Client, node: &str) -> Result<Vec<String>> {
    let all: Api<Pod> = Api::all(client.clone());
    let pods = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    let mut deleted = Vec::new();
    for pod in pods {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        Api::<Pod>::namespaced(client.clone(), &ns)
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await
            .with_context(|| format!("force-deleting pod {ns}/{name}"))?;
        deleted.push(format!("{ns}/{name}"));
    }
    Ok(deleted)
}

/// The test with node 2 down; the caller brings it back.
async fn lose_the_leaders_node(f: &Fixture, nodes: &BTreeSet<String>, node_1: &str) -> Result<()> {
    let old = lead_from_node_2(&f.cluster, nodes).await?;
    eprintln!("the leader {old} runs on {NODE_2}");

    // A session created just before the loss: the old leader may have begun it.
    f.sessions
        .create(&session("before", TargetKind::Deployment, "web", "30m")?)
        .await?;
    let lost_at = Instant::now();
    // As a lost machine: its kubelet, containerd and containers all gone. (Killing only the
    // two daemons leaves the old replica serving the webhook with the token its
    // force-deleted pod no longer validates.)
    cluster_script(&["kill-node", "2"]).await?;
    let deleted = force_delete_pods_on(&f.cluster.client, NODE_2).await?;
    eprintln!("force-deleted the pods on {NODE_2}: {deleted:?}");

    let (new, failover) = f.cluster.wait_new_leader(&old, lost_at).await?;
    let (_, node) = leader_and_node(&f.cluster).await?;
    assert_eq!(
        node, node_1,
        "the new leader {new} must run on the node that is left"
    );
    f.sessions.wait_active("before").await?;
    f.sessions
        .create_through_failover(&session("after", TargetKind::Deployment, "web", "30m")?)
        .await?;
    f.sessions.wait_active("after").await?;
    // Each injected once, not twice by the old and the new leader.
    f.workloads
        .assert_debugged(
            "web",
            &[
                &naming::container_name("before"),
                &naming::container_name("after"),
            ],
        )
        .await?;
    println!(
        "{NODE_2} lost with the leader {old}; {new} on {node_1} took the Lease after {:.1} s",
        failover.as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn losing_the_leaders_node_hands_the_sessions_to_the_other_replica() -> Result<()> {
    let f = Fixture::new("node-loss").await?;
    let nodes = ready_nodes(&f.cluster.client).await?;
    if nodes.len() != 2 || !nodes.contains(NODE_2) {
        bail!("this test needs the two Ready nodes of the local cluster: {nodes:?}");
    }
    let node_1 = nodes
        .iter()
        .find(|n| *n != NODE_2)
        .cloned()
        .context("no Ready node besides node 2")?;
    // The debugged workload stays on the node that is not lost.
    let mut web = serde_json::to_value(nginx_deployment("web", 1)?)?;
    web["spec"]["template"]["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": node_1});
    f.workloads
        .create_deployment(&serde_json::from_value(web)?)
        .await?;

    let outcome = lose_the_leaders_node(&f, &nodes, &node_1).await;

    // Node 2 comes back whatever happened, and the operator with a replica on it.
    up_keeping_state().await?;
    poll(&format!("{NODE_2} to be Ready again"), TIMEOUT, || async {
        let ready = ready_nodes(&f.cluster.client).await?;
        Ok(if ready.contains(NODE_2) {
            Polled::Done(())
        } else {
            Polled::NotYet(format!("Ready nodes: {ready:?}"))
        })
    })
    .await?;
    outcome?;
    respread(&f.cluster, &nodes).await
}

/// Leaves the operator as the other tests expect it: a Ready replica on each node. The
/// replica that replaced the lost one may have been scheduled beside the other while node
/// 2 was down (the anti-affinity is a preference); then it is deleted, to be placed again.
async fn respread(cluster: &Cluster, nodes: &BTreeSet<String>) -> Result<()> {
    Workloads::new(&cluster.client, OPERATOR_NAMESPACE)
        .wait_rollout(OPERATOR_DEPLOYMENT)
        .await?;
    let (holder, _) = leader_and_node(cluster).await?;
    let mut by_node: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for pod in cluster.operator_pods().await? {
        if pod.metadata.deletion_timestamp.is_none() {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            by_node.entry(node).or_default().push(pod.name_any());
        }
    }
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    for (node, mut names) in by_node {
        // Keep the leader, or else the first.
        names.sort_by_key(|n| n.as_str() != pod_of(&holder));
        for name in names.iter().skip(1) {
            eprintln!("operator pod {name} shares node {node:?}: deleting it");
            api.delete(name, &DeleteParams::default()).await?;
        }
    }
    wait_spread(cluster, nodes).await
}
