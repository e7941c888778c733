//! What one session lifecycle costs the API server: create → Active → delete → gone, one
//! after the other on a Deployment with one replica, counted from the leader's
//! `shellcar_api_requests_total` while nothing else happens in the cluster.

use std::time::Duration;

use anyhow::Result;
use shellcar::crd::TargetKind;
use shellcar_e2e::Fixture;
use shellcar_e2e::bench::Scale;
use shellcar_e2e::bench::metrics::{NO_REQUEST_METRIC, OperatorMetrics, breakdown};
use shellcar_e2e::bench::operator::settle;
use shellcar_e2e::bench::report::{Table, Verdict};
use shellcar_e2e::session::session;
use shellcar_e2e::workload::nginx_deployment;

/// The Deployment whose sessions are counted.
const TARGET: &str = "life";

pub async fn run(scale: &Scale, f: &Fixture, table: &mut Table) -> Result<()> {
    table.section("One session lifecycle: create → Active → delete → gone");
    f.workloads
        .create_deployment(&nginx_deployment(TARGET, 1)?)
        .await?;
    let before_all = f.workloads.template(TARGET).await?;
    let leader = OperatorMetrics::find(&f.cluster).await?;
    settle(&leader, Duration::from_secs(3), Duration::from_secs(60)).await?;
    let before = leader.scrape().await?;
    let n = scale.lifecycles.max(1);
    for i in 0..n {
        let name = format!("lc-{i}");
        f.sessions
            .create(&session(&name, TargetKind::Deployment, TARGET, "30m")?)
            .await?;
        f.sessions.wait_active(&name).await?;
        f.sessions.delete_and_wait_gone(&name).await?;
        f.workloads.wait_template(TARGET, &before_all).await?;
        f.workloads.wait_rollout(TARGET).await?;
    }
    // The reconciles that the last rollout back wakes belong to the lifecycle too.
    settle(&leader, Duration::from_secs(3), Duration::from_secs(60)).await?;
    let after = leader.scrape().await?;
    let delta = after.counters().since(&before.counters());
    let per = |x: f64| x / n as f64;
    table.value(
        "reconciles per lifecycle",
        format!("{:.1}", per(delta.reconciles)),
        Verdict::Info,
    );
    match delta.requests {
        Some(r) => {
            let value = per(r.work());
            table.value(
                "API requests per lifecycle",
                format!("{value:.1}"),
                Verdict::of("<= 8", value <= 8.0),
            );
            table.note(&format!(
                "over {n} lifecycles, without watch and Lease renewals: {}",
                breakdown(&before, &after)
            ));
        }
        None => table.value(
            "API requests per lifecycle",
            NO_REQUEST_METRIC,
            Verdict::Unknown("<= 8".to_owned()),
        ),
    }
    Ok(())
}
