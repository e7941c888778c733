//! The operator's memory at a fresh start: in a cluster with nothing of the benchmark's,
//! then with many Deployments that no session targets (scaled to 0, in a namespace of
//! their own). What it caches of objects it has no business with shows here.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result};
use shellcar_e2e::Fixture;
use shellcar_e2e::bench::Scale;
use shellcar_e2e::bench::load::{self, create_parallel, deployments_observed_within};
use shellcar_e2e::bench::metrics::OperatorMetrics;
use shellcar_e2e::bench::operator::{restart, settle};
use shellcar_e2e::bench::report::{Table, Verdict, mib, secs};
use shellcar_e2e::workload::nginx_deployment;
use tokio::time::Instant;

/// A fresh operator's memory once it has listed everything: at least `MIN_WAIT` after it
/// took the Lease, then until five readings a second apart agree within 1%.
const MIN_WAIT: Duration = Duration::from_secs(10);
const MAX_WAIT: Duration = Duration::from_secs(120);
/// How long the unrelated Deployments are given to get their ReplicaSets.
const CONTROLLER_WAIT: Duration = Duration::from_secs(180);

/// Restarts the operator and returns its resident memory once steady, with how long
/// after the restart it was read.
async fn fresh_start(f: &Fixture) -> Result<(f64, Duration)> {
    let start = Instant::now();
    let leader = restart(&f.cluster).await?;
    settle(&leader, Duration::from_secs(3), MAX_WAIT).await?;
    let led = Instant::now();
    let mut readings: Vec<f64> = Vec::new();
    loop {
        let rss = rss(&leader).await?;
        readings.push(rss);
        let last: Vec<f64> = readings.iter().rev().take(5).copied().collect();
        let steady = last.len() == 5 && {
            let (lo, hi) = last
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            hi - lo <= hi * 0.01
        };
        if (steady && led.elapsed() >= MIN_WAIT) || led.elapsed() >= MAX_WAIT {
            return Ok((rss, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn rss(leader: &OperatorMetrics) -> Result<f64> {
    leader
        .counters()
        .await?
        .resident_memory
        .context("the operator does not export its resident memory")
}

/// `unrelated`: an empty namespace of the benchmark's, to fill.
pub async fn run(scale: &Scale, unrelated: &Fixture, table: &mut Table) -> Result<()> {
    let u = scale.unrelated;
    table.section(&format!(
        "Operator memory at a fresh start: empty cluster vs {u} unrelated Deployments"
    ));
    let (empty, took) = fresh_start(unrelated).await?;
    table.value("fresh start, empty cluster: RSS", mib(empty), Verdict::Info);
    table.note(&format!("read {} after the restart", secs(took)));

    let clients = load::clients(scale.clients).await?;
    let names: BTreeSet<String> = (0..u).map(|i| format!("u-{i:05}")).collect();
    let objects = names
        .iter()
        .map(|n| nginx_deployment(n, 0))
        .collect::<Result<Vec<_>>>()?;
    let created = create_parallel(&clients, unrelated.ns(), objects).await?;
    // The Deployment controller creates their ReplicaSets at about 5 a second here (its
    // client's default rate limit); the fresh start does not wait for all of them.
    let (waited, observed) =
        deployments_observed_within(&unrelated.workloads.deployments, &names, CONTROLLER_WAIT)
            .await?;
    table.value(
        &format!("{u} Deployments created, then observed by the controller"),
        format!(
            "{}, {observed} in {}",
            secs(created.last - created.first),
            secs(waited)
        ),
        Verdict::Info,
    );
    let (full, took) = fresh_start(unrelated).await?;
    table.value(
        &format!("fresh start with {u} unrelated Deployments: RSS"),
        mib(full),
        Verdict::Info,
    );
    table.note(&format!("read {} after the restart", secs(took)));
    let over = full - empty;
    table.value(
        "  over the empty cluster",
        format!("{:+.1} MiB", over / 1_048_576.0),
        Verdict::of("<= +10 MiB", over <= 10.0 * 1_048_576.0),
    );
    Ok(())
}
