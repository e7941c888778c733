//! The operator's leader election as a test sees it: which replica holds the Lease, and
//! killing that replica's process the hard way.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::TIMEOUT;
use crate::cluster::{Cluster, OPERATOR_NAMESPACE};
use crate::wait::{Polled, poll};

/// The Lease the operator's replicas elect their leader with.
pub const LEASE: &str = "shellcar-controller";

/// The pod of a Lease holder: the operator's identity is `<pod name>_<random>`, new for
/// each process, so that a restarted container does not pass for the one that held it.
pub fn pod_of(holder: &str) -> &str {
    holder.split('_').next().unwrap_or(holder)
}

impl Cluster {
    /// The identity of the operator process that holds the Lease, if any.
    pub async fn leader(&self) -> Result<Option<String>> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let lease = leases
            .get_opt(LEASE)
            .await
            .with_context(|| format!("reading Lease {OPERATOR_NAMESPACE}/{LEASE}"))?;
        Ok(lease
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    }

    /// Waits until some replica holds the Lease; returns its identity.
    pub async fn wait_leader(&self) -> Result<String> {
        poll("an operator replica to hold the Lease", TIMEOUT, || async {
            Ok(match self.leader().await? {
                Some(holder) => Polled::Done(holder),
                None => Polled::NotYet("no holder".to_owned()),
            })
        })
        .await
    }

    /// Waits until a process other than `old` holds the Lease; returns its identity and
    /// how long after `since` it was first seen.
    pub async fn wait_new_leader(&self, old: &str, since: Instant) -> Result<(String, Duration)> {
        let holder = poll("another replica to take the Lease", TIMEOUT, || async {
            Ok(match self.leader().await? {
                Some(holder) if holder != old => Polled::Done(holder),
                holder => Polled::NotYet(format!("holder: {holder:?}")),
            })
        })
        .await?;
        Ok((holder, since.elapsed()))
    }

    /// SIGKILLs the processes of the operator container of Lease holder `holder`, as an OOM kill or a
    /// crash would end them: no signal handler runs, nothing is released. The processes
    /// are found by the container's ID in their cgroup (the tests run as root on the node).
    pub async fn sigkill_operator(&self, holder: &str) -> Result<usize> {
        let pod = pod_of(holder);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let found = pods
            .get(pod)
            .await
            .with_context(|| format!("reading pod {pod}"))?;
        let Some(id) = found
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|cs| cs.into_iter().find_map(|c| c.container_id))
            .and_then(|id| id.split("://").nth(1).map(str::to_owned))
        else {
            bail!("pod {pod} has no running container");
        };
        let mut killed = 0;
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            if cgroup.contains(&id) {
                let status = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status()
                    .context("running kill")?;
                if status.success() {
                    killed += 1;
                }
            }
        }
        if killed == 0 {
            bail!("no process of container {id} (pod {pod}) found to kill");
        }
        Ok(killed)
    }
}
