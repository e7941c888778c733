//! Many sessions at once: created by parallel clients on as many Deployments scaled to 0
//! (the operator's own work, without pod start-up), then left alone, then their targets
//! touched in a way that changes nothing, then deleted.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use shellcar::crd::{DebugSession, TargetKind};
use shellcar_e2e::Fixture;
use shellcar_e2e::bench::Scale;
use shellcar_e2e::bench::load::{self, create_parallel, deployments_observed, for_each_parallel};
use shellcar_e2e::bench::metrics::{NO_REQUEST_METRIC, OperatorMetrics, Scrape, breakdown};
use shellcar_e2e::bench::observe::Observer;
use shellcar_e2e::bench::operator::settle;
use shellcar_e2e::bench::report::{Table, Verdict, mib, ms, secs};
use shellcar_e2e::session::{condition_is, session};
use shellcar_e2e::workload::nginx_deployment;
use tokio::time::Instant;

/// Bound on what a thousand objects take (the Deployment controller writes at its client's
/// default 20 requests per second).
const LONG: Duration = Duration::from_secs(20 * 60);
/// The annotation that the no-op touch sets on every target.
const TOUCHED: &str = "bench.shellcar.dev/touched";
/// The touch's own field manager, as `kubectl annotate` has one: under the manager that
/// created the Deployment, the touch would renew that manager's claim on the pod
/// template, and the operator would rightly report the template edited by someone else
/// (TargetChanged), which is no no-op.
const TOUCH_MANAGER: &str = "bench-touch";

/// The status of a session on a Deployment without replicas, once the operator has
/// written it: the current generation observed, the debugger in the template
/// (`Injected`), whatever `Ready` says about the missing replicas.
fn status_written(s: &DebugSession) -> bool {
    s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
        && condition_is(s, "Injected", "True")
}

/// Milliseconds, signed.
fn signed_ms(later: Instant, earlier: Instant) -> (f64, String) {
    let (value, sign) = if later >= earlier {
        ((later - earlier).as_secs_f64(), "")
    } else {
        ((earlier - later).as_secs_f64(), "-")
    };
    let signed = if sign.is_empty() { value } else { -value };
    (
        signed,
        format!("{sign}{}", ms(Duration::from_secs_f64(value))),
    )
}

/// Rows for the API requests between two readings, per `per` of `unit`.
fn requests_rows(table: &mut Table, what: &str, before: &Scrape, after: &Scrape, per: f64) {
    match after.counters().since(&before.counters()).requests {
        Some(r) => {
            table.value(what, format!("{:.1}", r.work() / per), Verdict::Info);
            table.note(&format!("requests: {}", breakdown(before, after)));
        }
        None => table.value(what, NO_REQUEST_METRIC, Verdict::Info),
    }
}

pub async fn run(scale: &Scale, f: &Fixture, table: &mut Table) -> Result<()> {
    let n = scale.sessions.max(1);
    table.section(&format!(
        "{n} sessions on {n} Deployments scaled to 0, {} parallel clients",
        scale.clients
    ));
    let clients = load::clients(scale.clients).await?;
    let deployments = &f.workloads.deployments;
    let targets: BTreeSet<String> = (0..n).map(|i| format!("t-{i:05}")).collect();
    let objects = targets
        .iter()
        .map(|t| nginx_deployment(t, 0))
        .collect::<Result<Vec<_>>>()?;
    let created = create_parallel(&clients, f.ns(), objects).await?;
    table.value(
        "Deployments created",
        secs(created.last - created.first),
        Verdict::Info,
    );
    let caught_up = deployments_observed(deployments, &targets, LONG).await?;
    table.value(
        "  then observed by the Deployment controller",
        secs(caught_up),
        Verdict::Info,
    );
    let leader = OperatorMetrics::find(&f.cluster).await?;
    settle(&leader, Duration::from_secs(3), Duration::from_secs(60)).await?;

    // Create: every status written, counted from the last create.
    let names: BTreeSet<String> = (0..n).map(|i| format!("s-{i:05}")).collect();
    let sessions = names
        .iter()
        .zip(&targets)
        .map(|(s, t)| session(s, TargetKind::Deployment, t, "30m"))
        .collect::<Result<Vec<_>>>()?;
    let mut watch = Observer::start(f.sessions.api.clone(), Default::default()).await?;
    let before = leader.scrape().await?;
    let created = create_parallel(&clients, f.ns(), sessions).await?;
    let accepting = created.last - created.first;
    table.value(
        "sessions created (API server accepted all)",
        format!(
            "{} ({:.0}/s)",
            secs(accepting),
            n as f64 / accepting.as_secs_f64()
        ),
        Verdict::Info,
    );
    let written = watch
        .until_all(
            "every session's status written",
            &names,
            LONG,
            status_written,
        )
        .await?;
    let (after_last, shown) = signed_ms(written, created.last);
    table.value(
        "last create → every status written",
        shown,
        Verdict::of("<= 3 s", after_last <= 3.0),
    );
    let at_written = leader.scrape().await?;
    let delta = at_written.counters().since(&before.counters());
    table.value(
        "reconciles per session, create → status written",
        format!("{:.1}", delta.reconciles / n as f64),
        Verdict::Info,
    );
    requests_rows(
        table,
        "API requests per session, create → status written",
        &before,
        &at_written,
        n as f64,
    );

    // Settled: the Deployment controller has caught up with every template change, and
    // the operator has gone quiet (if it does).
    let caught_up = deployments_observed(deployments, &targets, LONG).await?;
    table.value(
        "targets settled (template changes observed)",
        secs(caught_up),
        Verdict::Info,
    );
    let (took, quiet) = settle(&leader, Duration::from_secs(5), Duration::from_secs(120)).await?;
    table.value(
        "  then the operator quiet for 5 s",
        if quiet {
            secs(took)
        } else {
            format!("not within {}", secs(took))
        },
        Verdict::Info,
    );
    idle(scale, &leader, n, table).await?;
    no_op(&clients, &leader, f, &targets, table).await?;

    // Delete: every session torn down and gone.
    let start = Instant::now();
    let api = f.sessions.api.clone();
    for_each_parallel(&clients, &names, move |client: Client, name: String| {
        let api: Api<DebugSession> = Api::namespaced(client, api.namespace().unwrap_or_default());
        async move {
            api.delete(&name, &Default::default()).await?;
            Ok(())
        }
    })
    .await?;
    let gone = watch
        .until_all_deleted("every session torn down and gone", &names, LONG)
        .await?;
    table.value(
        "delete all → every session torn down and gone",
        secs(gone - start),
        Verdict::Info,
    );
    Ok(())
}

/// Reconciles and API requests while nothing changes, and the memory of the operator
/// holding `n` sessions.
async fn idle(scale: &Scale, leader: &OperatorMetrics, n: usize, table: &mut Table) -> Result<()> {
    let seconds = scale.idle.as_secs();
    let before = leader.scrape().await?;
    tokio::time::sleep(scale.idle).await;
    let after = leader.scrape().await?;
    let delta = after.counters().since(&before.counters());
    table.value(
        &format!("reconciles over {seconds} s, nothing changing"),
        format!("{:.0}", delta.reconciles),
        Verdict::of("0", delta.reconciles == 0.0),
    );
    match delta.requests {
        Some(r) => {
            table.value(
                &format!("API requests over {seconds} s, nothing changing"),
                format!("{:.0}", r.total),
                Verdict::Info,
            );
            table.note(&format!(
                "{:.0} watch renewals, {:.0} for the Lease; the rest: {}",
                r.watches,
                r.leases,
                breakdown(&before, &after)
            ));
        }
        None => table.value(
            &format!("API requests over {seconds} s, nothing changing"),
            NO_REQUEST_METRIC,
            Verdict::Info,
        ),
    }
    match after.counters().resident_memory {
        Some(rss) => table.value(
            &format!("operator RSS with {n} sessions"),
            mib(rss),
            Verdict::of("<= 64 MiB", rss <= 64.0 * 1_048_576.0),
        ),
        None => table.value(
            &format!("operator RSS with {n} sessions"),
            "n/a (not exported)",
            Verdict::Unknown("<= 64 MiB".to_owned()),
        ),
    }
    Ok(())
}

/// API requests per no-op reconcile.
///
/// What makes a fair no-op: something the operator is woken by, that changes nothing a
/// session depends on. An annotation on the target Deployment's own metadata (not its pod
/// template) is one: users and GitOps tools set such annotations all the time (Argo CD's
/// tracking id, `kubectl annotate`), the predicates (generation, labels,
/// annotations) let it through to the sessions targeting that Deployment, and yet the
/// template, its managedFields and the session's status are all as they were, so a
/// reconcile has nothing to send. Touching the sessions themselves would not do: an
/// operator may rightly filter out metadata-only changes of its own objects, and then
/// there is nothing to divide by. A timer (a requeue) would be fair too, but cannot be
/// triggered from outside. Watch and Lease renewals, which run on timers whatever
/// happens, are left out of the count.
async fn no_op(
    clients: &[Client],
    leader: &OperatorMetrics,
    f: &Fixture,
    targets: &BTreeSet<String>,
    table: &mut Table,
) -> Result<()> {
    let before = leader.scrape().await?;
    let ns = f.ns().to_owned();
    for_each_parallel(clients, targets, move |client: Client, name: String| {
        let api: Api<Deployment> = Api::namespaced(client, &ns);
        async move {
            let touch = json!({"metadata": {"annotations": {TOUCHED: "1"}}});
            let params = PatchParams {
                field_manager: Some(TOUCH_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            api.patch(&name, &params, &Patch::Merge(&touch)).await?;
            Ok(())
        }
    })
    .await?;
    settle(leader, Duration::from_secs(5), Duration::from_secs(120)).await?;
    let after = leader.scrape().await?;
    let delta = after.counters().since(&before.counters());
    table.value(
        &format!(
            "reconciles woken by annotating the {} targets",
            targets.len()
        ),
        format!("{:.0}", delta.reconciles),
        Verdict::Info,
    );
    let what = "API requests per no-op reconcile";
    match delta.requests {
        None => table.value(what, NO_REQUEST_METRIC, Verdict::Unknown("0".to_owned())),
        Some(r) if delta.reconciles == 0.0 => table.value(
            what,
            format!("n/a: no reconcile woken ({:.0} requests)", r.work()),
            Verdict::Unknown("0".to_owned()),
        ),
        Some(r) => {
            let per = r.work() / delta.reconciles;
            table.value(what, format!("{per:.2}"), Verdict::of("0", r.work() == 0.0));
            table.note(&format!("requests: {}", breakdown(&before, &after)));
        }
    }
    Ok(())
}
