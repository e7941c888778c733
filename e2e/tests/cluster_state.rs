//! `e2e/cluster up` keeps the cluster's data: after etcd and the API server are
//! SIGKILLed, and again after every component is (both nodes' containerd and kubelet
//! too), `up` restarts only what is missing, over the kept state. The CRD, the test's namespace and
//! its session are the same objects afterwards (same UIDs), the operator runs again, and
//! the session is still served: deleting it restores the template.
//!
//! The only test in this binary: it takes the cluster down twice, so no other test may
//! run meanwhile (cargo runs test binaries one after another). It runs the cluster script
//! itself (`e2e/cluster kill`, `up`, `status`), as root, from the cluster's network
//! namespace like every test.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::{CustomResourceExt, ResourceExt};
use shellcar::crd::DebugSession;
use shellcar_e2e::cluster::OPERATOR_DEPLOYMENT;
use shellcar_e2e::script::{NODE_2_COMPONENTS, cluster_script, running_pids, up_keeping_state};
use shellcar_e2e::session::Sessions;
use shellcar_e2e::workload::Workloads;
use shellcar_e2e::{Cluster, Fixture, OPERATOR_NAMESPACE};

/// The components `kill` takes, as `e2e/cluster` names them: both nodes' and the control
/// plane's.
/// How long a session's teardown may take once every component has restarted over the
/// kept state (see the deletion at the end of the test).
const AFTER_RESTART_TIMEOUT: Duration = Duration::from_secs(300);

const ALL: [&str; 8] = [
    "kubelet",
    "containerd",
    NODE_2_COMPONENTS[0],
    NODE_2_COMPONENTS[1],
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
];

/// UIDs of what must survive: the CRD, the test's namespace, the session.
#[derive(Debug, PartialEq)]
struct Kept {
    crd: String,
    namespace: String,
    session: String,
}

async fn kept(cluster: &Cluster, namespace: &str, session: &str) -> Result<Kept> {
    let crd_name = DebugSession::crd_name();
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let sessions: Api<DebugSession> = Api::namespaced(cluster.client.clone(), namespace);
    let uid = |what: String, uid: Option<String>| uid.with_context(|| format!("{what} has no UID"));
    Ok(Kept {
        crd: uid(
            format!("CRD {crd_name}"),
            crds.get_opt(crd_name)
                .await?
                .with_context(|| format!("CRD {crd_name} is gone"))?
                .uid(),
        )?,
        namespace: uid(
            format!("namespace {namespace}"),
            namespaces
                .get_opt(namespace)
                .await?
                .with_context(|| format!("namespace {namespace} is gone"))?
                .uid(),
        )?,
        session: uid(
            format!("DebugSession {namespace}/{session}"),
            sessions
                .get_opt(session)
                .await?
                .with_context(|| format!("DebugSession {namespace}/{session} is gone"))?
                .uid(),
        )?,
    })
}

/// Each operator pod with its container restart count.
async fn operator_restarts(cluster: &Cluster) -> Result<BTreeMap<String, i32>> {
    Ok(cluster
        .operator_pods()
        .await?
        .iter()
        .map(|p| {
            let restarts = p
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| c.restart_count)
                .sum();
            (p.name_any(), restarts)
        })
        .collect())
}

#[tokio::test]
async fn up_restarts_killed_components_over_the_kept_state() -> Result<()> {
    let (f, before) = Fixture::with_deployment("state", "web", 1).await?;
    let container = f.debug_deployment("kept", "web", "30m").await?;
    f.workloads.assert_debugged("web", &[&container]).await?;
    let ns = f.ns().to_owned();
    let original = kept(&f.cluster, &ns, "kept").await?;
    let operator_before = operator_restarts(&f.cluster).await?;

    // 1. The store and the API server die; everything else keeps running.
    let pids = running_pids().await?;
    cluster_script(&["kill", "etcd", "kube-apiserver"]).await?;
    let took = up_keeping_state().await?;
    eprintln!("`e2e/cluster up` over a SIGKILLed etcd and API server: {took:.1?}");
    // Only what was killed was started again.
    let after = running_pids().await?;
    for c in [
        "kube-controller-manager",
        "kube-scheduler",
        "containerd",
        "kubelet",
        NODE_2_COMPONENTS[0],
        NODE_2_COMPONENTS[1],
    ] {
        assert_eq!(
            after.get(c),
            pids.get(c),
            "{c} was restarted although it was running: before {pids:?}, after {after:?}"
        );
    }
    for c in ["etcd", "kube-apiserver"] {
        assert!(
            after.contains_key(c) && after.get(c) != pids.get(c),
            "{c} is not running again under a new PID: before {pids:?}, after {after:?}"
        );
    }
    // A new client (the admin token is kept, so the same kubeconfig works), which also
    // checks that the CRD is there and waits for a Ready operator pod.
    let cluster = Cluster::connect().await?;
    assert_eq!(kept(&cluster, &ns, "kept").await?, original);
    Sessions::new(&cluster, &ns).wait_active("kept").await?;

    // 2. Everything dies, both nodes' containerd and kubelet too.
    cluster_script(&[&["kill"][..], &ALL[..]].concat()).await?;
    let took = up_keeping_state().await?;
    eprintln!("`e2e/cluster up` over every component SIGKILLed: {took:.1?}");
    let after = running_pids().await?;
    for c in ALL {
        assert!(
            after.contains_key(c),
            "{c} is not running after `up`: {after:?}"
        );
    }
    let cluster = Cluster::connect().await?;
    assert_eq!(kept(&cluster, &ns, "kept").await?, original);
    // The operator's Deployment is Ready again, all replicas.
    Workloads::new(&cluster.client, OPERATOR_NAMESPACE)
        .wait_rollout(OPERATOR_DEPLOYMENT)
        .await?;
    let sessions = Sessions::new(&cluster, &ns);
    sessions.wait_active("kept").await?;

    // The operator rode out both outages: the same processes, none restarted (no crash
    // loop), and they serve the session again: their watches resumed, so deleting the
    // session restores the template.
    assert_eq!(
        operator_restarts(&cluster).await?,
        operator_before,
        "operator pods and their restart counts"
    );
    let workloads = Workloads::new(&cluster.client, &ns);
    workloads.assert_debugged("web", &[&container]).await?;
    // Longer than TIMEOUT: after a restart over kept etcd data, a 1.37 API server answered
    // the operator's resumed watches with 410 Expired only about a minute later (its watch
    // cache was not ready yet), and only then did they relist. Seen once in four runs; the
    // operator must still get there.
    let uid = sessions.delete("kept").await?;
    sessions
        .wait_gone_within("kept", &uid, AFTER_RESTART_TIMEOUT)
        .await
        .context(
            "the operator, running since before the restarts, did not tear the session down: \
             its watches must resume after the API server comes back",
        )?;
    workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}
