//! `make bench`: shellcar on the local cluster against what users would do without it,
//! and what it costs the API server and the machine. Prints a table of medians, min–max
//! and ratios, each beside the target of issue 11 and whether it is met; it never asserts
//! a time (a noisy machine would fail it), only that the work was done.
//!
//! Run inside the cluster's network namespace with the operator deployed (`make bench`
//! deploys the release build). The scale can be lowered to develop it, see
//! [`shellcar_e2e::bench::Scale`]; `SHELLCAR_BENCH_ONLY=compare,profiles,lifecycle,scale,
//! memory,admission` runs some parts only.
//!
//! The parts, in the order they run: `admission` (what the webhook adds to a create),
//! `compare` (each mode against kubectl or a direct apply), `lifecycle` (one session's API
//! requests), `profiles` (Ephemeral with each of the five debugging profiles against
//! `kubectl debug --profile`), `scale` (many sessions at once), `memory` (the operator
//! among many unrelated objects).
//!
//! Everything it creates lives in namespaces of its own, which it deletes and waits for,
//! so the cluster is left as it was found; the `profiles` part's DebugPolicy selects only
//! its namespace, and is deleted too.

mod admission;
mod compare;
mod lifecycle;
mod memory;
mod profiles;
mod scale;

use std::time::Duration;

use anyhow::{Context as _, Result};
use shellcar::crd::Profile;
use shellcar_e2e::Fixture;
use shellcar_e2e::bench::Scale;
use shellcar_e2e::bench::load::namespace_gone;
use shellcar_e2e::bench::report::Table;

/// Bound on a namespace's deletion (thousands of Deployments and ReplicaSets).
const DELETION: Duration = Duration::from_secs(15 * 60);

/// A part that failed leaves a line in the table, and the others still run.
fn outcome(table: &mut Table, name: &str, result: Result<()>) {
    if let Err(e) = result {
        table.note(&format!("{name} FAILED: {e:#}"));
    }
}

/// Deletes the fixture's namespace and waits until it is gone.
async fn remove(f: Fixture) -> Result<()> {
    let (client, ns) = (f.cluster.client.clone(), f.ns().to_owned());
    drop(f);
    if std::env::var_os("SHELLCAR_E2E_KEEP").is_none() {
        let took = namespace_gone(&client, &ns, DELETION).await?;
        eprintln!("namespace {ns} deleted in {:.1} s", took.as_secs_f64());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let scale = Scale::from_env()?;
    // Every namespace up front: creating a test namespace deletes e2e namespaces older
    // than 30 minutes, which a full run's first ones could be by its end.
    let compare_ns = Fixture::new("bench")
        .await
        .context("the local cluster with shellcar deployed")?;
    let skipped_ns = Fixture::new("bench-nowebhook").await?;
    let profiles_ns = Fixture::new("bench-profiles").await?;
    let scale_ns = Fixture::new("bench-scale").await?;
    let unrelated_ns = Fixture::new("bench-unrelated").await?;
    println!("shellcar benchmark: {scale:?}");
    let mut table = Table::default();

    if scale.runs("admission") {
        let result = admission::run(&compare_ns, &skipped_ns, &mut table).await;
        outcome(&mut table, "admission", result);
    }
    remove(skipped_ns).await?;
    if scale.runs("compare") {
        let result = compare::sidecar(&scale, &compare_ns, &mut table).await;
        outcome(&mut table, "sidecar", result);
        let result = compare::copy(&scale, &compare_ns, &mut table).await;
        outcome(&mut table, "copy", result);
        let result = compare::ephemeral(&scale, &compare_ns, &mut table, Profile::General).await;
        outcome(&mut table, "ephemeral", result);
        let result = compare::kubectl_start(&scale, &mut table).await;
        outcome(&mut table, "kubectl start", result);
    }
    if scale.runs("lifecycle") {
        let result = lifecycle::run(&scale, &compare_ns, &mut table).await;
        outcome(&mut table, "lifecycle", result);
    }
    remove(compare_ns).await?;
    if scale.runs("profiles") {
        let result = profiles::run(&scale, &profiles_ns, &mut table).await;
        outcome(&mut table, "profiles", result);
    }
    remove(profiles_ns).await?;
    if scale.runs("scale") {
        let result = scale::run(&scale, &scale_ns, &mut table).await;
        outcome(&mut table, "scale", result);
    }
    remove(scale_ns).await?;
    if scale.runs("memory") {
        let result = memory::run(&scale, &unrelated_ns, &mut table).await;
        outcome(&mut table, "memory", result);
    }
    remove(unrelated_ns).await?;

    println!("\nshellcar benchmark ({scale:?})");
    table.print();
    Ok(())
}
