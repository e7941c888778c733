//! The operator as the benchmark handles it: restarted for a fresh start, and left alone
//! until it has nothing left to do.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use tokio::time::Instant;

use super::metrics::OperatorMetrics;
use crate::TIMEOUT;
use crate::cluster::{Cluster, OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE, is_ready};
use crate::leader::pod_of;
use crate::wait::{Polled, poll};

/// Replaces every operator pod (deleted gracefully, so the leader releases its Lease, as
/// in a rolling restart) and waits until all the new replicas are Ready and one of them
/// holds the Lease: a fresh start, with caches filled from nothing.
pub async fn restart(cluster: &Cluster) -> Result<OperatorMetrics> {
    let old: BTreeSet<String> = cluster
        .operator_pods()
        .await?
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    for name in &old {
        pods.delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting operator pod {name}"))?;
    }
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    let replicas = deployments
        .get(OPERATOR_DEPLOYMENT)
        .await?
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let replicas = usize::try_from(replicas).unwrap_or(1);
    poll(
        "new operator replicas, one of them leading",
        TIMEOUT,
        || async {
            let ready = cluster
                .operator_pods()
                .await?
                .into_iter()
                .filter(|p| !old.contains(&p.name_any()) && is_ready(p))
                .count();
            let holder = cluster.leader().await?;
            Ok(match holder {
                Some(h) if ready >= replicas && !old.contains(pod_of(&h)) => Polled::Done(()),
                h => Polled::NotYet(format!("{ready} new replicas Ready, Lease holder {h:?}")),
            })
        },
    )
    .await?;
    OperatorMetrics::find(cluster).await
}

/// Waits until the leader has run no reconcile for `quiet`, at most `within`; returns how
/// long that took, and whether it did go quiet.
pub async fn settle(
    leader: &OperatorMetrics,
    quiet: Duration,
    within: Duration,
) -> Result<(Duration, bool)> {
    let start = Instant::now();
    let mut last = leader.counters().await?.reconciles;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = leader.counters().await?.reconciles;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok((start.elapsed(), true));
        }
        if start.elapsed() >= within {
            return Ok((start.elapsed(), false));
        }
    }
}
