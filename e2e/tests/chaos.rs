//! Session lifecycles on Deployments while the leader is SIGKILLed at random moments
//! during injection and teardown. Prints lifecycles, kills, failover times and leftovers;
//! fails if something is left behind (a debugger in a template, a session, a debugged
//! pod) or a lifecycle does not complete, never on a time.
//!
//! `SHELLCAR_CHAOS_LIFECYCLES` sets how many lifecycles: 20 by default, as `make test`
//! runs it; `make chaos` runs 100. The only test in this binary, so that nothing else
//! runs while a replica is down.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use futures::future::try_join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::Value;
use shellcar::crd::TargetKind;
use shellcar::naming;
use shellcar_e2e::cluster::{OPERATOR_NAMESPACE, is_ready};
use shellcar_e2e::leader::pod_of;
use shellcar_e2e::session::session;
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::nginx_deployment;
use shellcar_e2e::{Fixture, TIMEOUT};

/// Deployments debugged at once; each lifecycle is one session on one of them.
const PARALLEL: usize = 4;

/// A small xorshift generator, seeded from the clock and printed, so a run can be told
/// apart; the kills need no better randomness.
struct Dice(u64);

impl Dice {
    fn new() -> Dice {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        println!("seed {seed}");
        Dice(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with probability 1/2.
    fn coin(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }

    /// A delay of up to `max_ms` milliseconds.
    fn delay(&mut self, max_ms: u64) -> Duration {
        Duration::from_millis(self.next() % (max_ms + 1))
    }
}

/// Kills the leader after a random delay, and waits for another process to take the Lease;
/// returns the failover time. Then the killed pod is replaced by a fresh one and both
/// replicas are Ready again before the next kill: a container killed again and again would
/// wait out the kubelet's growing restart backoff, and the run would measure that instead.
async fn kill_leader(f: &Fixture, dice: &mut Dice, when: &str) -> Result<Duration> {
    wait_two_ready(f).await?;
    tokio::time::sleep(dice.delay(1500)).await;
    let leader = f.cluster.wait_leader().await?;
    let killed_at = Instant::now();
    f.cluster.sigkill_operator(&leader).await?;
    let (_, failover) = f.cluster.wait_new_leader(&leader, killed_at).await?;
    let pods: Api<Pod> = Api::namespaced(f.cluster.client.clone(), OPERATOR_NAMESPACE);
    pods.delete(pod_of(&leader), &DeleteParams::default().grace_period(0))
        .await?;
    println!(
        "  killed the leader during {when}: failover {:.1} s",
        failover.as_secs_f64()
    );
    Ok(failover)
}

/// Waits until two operator replicas are Ready (and not terminating).
async fn wait_two_ready(f: &Fixture) -> Result<()> {
    poll("two Ready operator replicas", TIMEOUT, || async {
        let pods = f.cluster.operator_pods().await?;
        let ready = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .count();
        Ok(if ready >= 2 {
            Polled::Done(())
        } else {
            Polled::NotYet(format!("{ready} Ready"))
        })
    })
    .await
}

#[tokio::test]
async fn lifecycles_with_the_leader_killed_at_random_leave_nothing_behind() -> Result<()> {
    let lifecycles: usize = std::env::var("SHELLCAR_CHAOS_LIFECYCLES")
        .ok()
        .map(|n| n.parse())
        .transpose()
        .context("SHELLCAR_CHAOS_LIFECYCLES")?
        .unwrap_or(20);
    let f = Fixture::new("chaos")
        .await
        .context("the local cluster with shellcar deployed")?;
    println!(
        "shellcar chaos: {lifecycles} lifecycles, namespace {}",
        f.ns()
    );
    let mut originals: Vec<(String, Value)> = Vec::new();
    for i in 0..PARALLEL {
        let name = format!("chaos-{i}");
        f.workloads
            .deployments
            .create(&PostParams::default(), &nginx_deployment(&name, 1)?)
            .await?;
        f.workloads.wait_rollout(&name).await?;
        originals.push((name.clone(), f.workloads.template(&name).await?));
    }
    let mut dice = Dice::new();
    let (mut done, mut failovers) = (0, Vec::new());
    let started = Instant::now();
    while done < lifecycles {
        let batch: Vec<(String, String)> = (0..PARALLEL.min(lifecycles - done))
            .map(|i| (format!("c{}", done + i), format!("chaos-{i}")))
            .collect();
        for (name, target) in &batch {
            f.sessions
                .create_through_failover(&session(name, TargetKind::Deployment, target, "30m")?)
                .await?;
        }
        if dice.coin() {
            failovers.push(kill_leader(&f, &mut dice, "injection").await?);
        }
        try_join_all(batch.iter().map(|(name, _)| f.sessions.wait_active(name))).await?;
        let mut uids = Vec::new();
        for (name, _) in &batch {
            uids.push(f.sessions.delete(name).await?);
        }
        if dice.coin() {
            failovers.push(kill_leader(&f, &mut dice, "teardown").await?);
        }
        try_join_all(
            batch
                .iter()
                .zip(&uids)
                .map(|((name, _), uid)| f.sessions.wait_gone(name, uid)),
        )
        .await?;
        done += batch.len();
        println!("{done}/{lifecycles} lifecycles");
    }

    // Leftovers: templates not as before, sessions, copies, pods still carrying a debugger.
    let mut leftovers = Vec::new();
    for (name, original) in &originals {
        if &f.workloads.template(name).await? != original {
            leftovers.push(format!(
                "Deployment {name}'s template differs from the original"
            ));
        }
    }
    let sessions = f.sessions.api.list(&ListParams::default()).await?;
    leftovers.extend(sessions.items.iter().map(|s| {
        format!(
            "session {} still exists",
            s.metadata.name.as_deref().unwrap_or_default()
        )
    }));
    // Give the last rollouts time to replace debugged pods, then look at live pods.
    for (name, _) in &originals {
        f.workloads.wait_rollout(name).await?;
    }
    let pods = f
        .workloads
        .pods
        .list(&ListParams::default().labels(naming::DEBUGGED_LABEL))
        .await?;
    leftovers.extend(
        pods.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                format!(
                    "pod {} still carries a debugger",
                    p.metadata.name.as_deref().unwrap_or_default()
                )
            }),
    );

    failovers.sort();
    let seconds = |d: &Duration| d.as_secs_f64();
    println!(
        "lifecycles {done} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("leader kills {}", failovers.len());
    if let (Some(min), Some(max)) = (failovers.first(), failovers.last()) {
        println!(
            "failover min {:.1} s, median {:.1} s, max {:.1} s",
            seconds(min),
            seconds(&failovers[failovers.len() / 2]),
            seconds(max)
        );
    }
    println!("leftovers {}", leftovers.len());
    for l in &leftovers {
        println!("  {l}");
    }
    if !leftovers.is_empty() {
        bail!("{} leftovers", leftovers.len());
    }
    Ok(())
}
