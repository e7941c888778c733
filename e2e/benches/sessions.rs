//! Benchmark on the local cluster: how long sessions take, how many the operator turns
//! over, and how much memory it uses. It prints numbers and checks only that the work
//! was done; timings are never asserted (a noisy machine would fail them).
//!
//! `make bench` (inside the cluster's network namespace, with the operator deployed).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use shellcar::crd::{Phase, TargetKind};
use shellcar_e2e::cluster::OPERATOR_NAMESPACE;
use shellcar_e2e::leader::pod_of;
use shellcar_e2e::session::{condition_is, phase, session};
use shellcar_e2e::webhook::WebhookBypass;
use shellcar_e2e::workload::nginx_deployment;
use shellcar_e2e::{Fixture, TIMEOUT};

/// Rounds of create → Active → delete → template restored on one Deployment.
const ROUNDS: usize = 5;
/// Sessions created at once, on Deployments without replicas (the operator's own work,
/// without pod start-up).
const BATCH: usize = 20;
/// Alternating pairs of dry-run creates that measure what the admission webhook adds.
const ADMISSION_ROUNDS: usize = 20;
/// The port of the operator's /metrics (config/manager).
const METRICS_PORT: u16 = 8080;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let p50 = samples[n / 2];
    let max = samples[n - 1];
    let mean = samples.iter().sum::<Duration>() / u32::try_from(n).unwrap_or(1);
    println!(
        "{name:<44} n={n:<3} p50={:>8.1} ms  mean={:>8.1} ms  max={:>8.1} ms",
        millis(p50),
        millis(mean),
        millis(max)
    );
}

/// Prints how many of the BATCH sessions per second one step handled.
fn rate(name: &str, elapsed: Duration) {
    println!(
        "{name:<44} {BATCH} sessions in {:.2} s = {:.1} sessions/s",
        elapsed.as_secs_f64(),
        BATCH as f64 / elapsed.as_secs_f64()
    );
}

/// The /metrics address of the replica that holds the Lease (the one that reconciles),
/// reached over the pod network from the cluster's network namespace.
async fn leader_metrics(f: &Fixture) -> Result<String> {
    let holder = f.cluster.wait_leader().await?;
    let pods: Api<Pod> = Api::namespaced(f.cluster.client.clone(), OPERATOR_NAMESPACE);
    let pod = pods.get(pod_of(&holder)).await?;
    let ip = pod
        .status
        .and_then(|s| s.pod_ip)
        .context("the leader pod has no IP")?;
    Ok(format!("http://{ip}:{METRICS_PORT}/metrics"))
}

/// One metric's value from the operator's /metrics at `url`, read with curl (present on
/// the machine; the benchmark needs no HTTP client of its own).
fn metric(url: &str, name: &str) -> Option<f64> {
    let out = std::process::Command::new("curl")
        .args(["-sf", url])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn latency(f: &Fixture) -> Result<()> {
    let deployments = &f.workloads;
    deployments
        .create_deployment(&nginx_deployment("web", 1)?)
        .await?;
    deployments.wait_rollout("web").await?;
    let original = deployments.template("web").await?;
    let (mut to_active, mut to_restored) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let name = format!("lat-{round}");
        let start = Instant::now();
        f.sessions
            .create(&session(&name, TargetKind::Deployment, "web", "30m")?)
            .await?;
        f.sessions.wait_active(&name).await?;
        to_active.push(start.elapsed());
        let start = Instant::now();
        f.sessions.delete_and_wait_gone(&name).await?;
        // Polled finely: the harness's 500 ms poll would dominate the number.
        while deployments.template("web").await? != original {
            anyhow::ensure!(start.elapsed() < TIMEOUT, "template not restored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        to_restored.push(start.elapsed());
        deployments.wait_rollout("web").await?;
    }
    summary("create -> Active (rollout, pod start)", to_active);
    summary("delete -> gone, template restored", to_restored);
    Ok(())
}

async fn throughput(f: &Fixture, metrics: &str) -> Result<()> {
    for i in 0..BATCH {
        f.workloads
            .deployments
            .create(
                &PostParams::default(),
                &nginx_deployment(&format!("idle-{i}"), 0)?,
            )
            .await?;
    }
    let reconciles_before = metric(metrics, "shellcar_reconciles_total");
    let start = Instant::now();
    for i in 0..BATCH {
        let s = session(
            &format!("tp-{i}"),
            TargetKind::Deployment,
            &format!("idle-{i}"),
            "30m",
        )?;
        f.sessions.create(&s).await?;
    }
    for i in 0..BATCH {
        f.sessions
            .wait(&format!("tp-{i}"), "Injected", |s| {
                condition_is(s, "Injected", "True") && phase(s) == Some(Phase::Injecting)
            })
            .await?;
    }
    rate("create -> Injected, all at once", start.elapsed());
    // Extend every session (a spec change each), as a GitOps sync would.
    let start = Instant::now();
    for i in 0..BATCH {
        f.sessions
            .api
            .patch(
                &format!("tp-{i}"),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"ttl": "45m"}})),
            )
            .await?;
    }
    for i in 0..BATCH {
        f.sessions
            .wait(&format!("tp-{i}"), "observed the new ttl", |s| {
                s.status.as_ref().and_then(|st| st.observed_generation) == Some(2)
            })
            .await?;
    }
    rate("ttl raised -> observed", start.elapsed());
    let start = Instant::now();
    let mut uids = Vec::new();
    for i in 0..BATCH {
        uids.push(f.sessions.delete(&format!("tp-{i}")).await?);
    }
    for (i, uid) in uids.iter().enumerate() {
        f.sessions.wait_gone(&format!("tp-{i}"), uid).await?;
    }
    rate("delete -> torn down and gone", start.elapsed());
    if let (Some(before), Some(after)) = (
        reconciles_before,
        metric(metrics, "shellcar_reconciles_total"),
    ) {
        println!(
            "{:<44} {:.0} for {BATCH} sessions ({:.1} each)",
            "reconciles",
            after - before,
            (after - before) / BATCH as f64
        );
    }
    Ok(())
}

/// What the admission webhook adds to `kubectl apply` of a session: the same create with
/// `dryRun=All` (admission webhooks still run; nothing is stored) in a namespace the
/// webhooks serve and in one they skip, alternating, each against a Deployment there.
async fn admission(f: &Fixture) -> Result<()> {
    let skipped = Fixture::new("bench-nowebhook").await?;
    for fx in [f, &skipped] {
        fx.workloads
            .deployments
            .create(&PostParams::default(), &nginx_deployment("adm", 0)?)
            .await?;
    }
    let bypass = WebhookBypass::install(&skipped).await?;
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let request = session("adm", TargetKind::Deployment, "adm", "30m")?;
    let (mut served, mut bypassed) = (Vec::new(), Vec::new());
    for _ in 0..ADMISSION_ROUNDS {
        for (fx, samples) in [(f, &mut served), (&skipped, &mut bypassed)] {
            let start = Instant::now();
            fx.sessions.api.create(&params, &request).await?;
            samples.push(start.elapsed());
        }
    }
    bypass.remove().await?;
    summary("dry-run create, through the webhook", served);
    summary("dry-run create, webhook skipped", bypassed);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let f = Fixture::new("bench")
        .await
        .context("the local cluster with shellcar deployed")?;
    println!("shellcar benchmark, namespace {}", f.ns());
    admission(&f).await?;
    let metrics = leader_metrics(&f).await?;
    latency(&f).await?;
    throughput(&f, &metrics).await?;
    match (
        metric(&metrics, "shellcar_process_resident_memory_bytes"),
        metric(&metrics, "shellcar_reconcile_duration_seconds_sum"),
        metric(&metrics, "shellcar_reconcile_duration_seconds_count"),
    ) {
        (Some(rss), Some(sum), Some(count)) if count > 0.0 => {
            println!(
                "{:<44} {:.1} MiB",
                "operator resident memory",
                rss / 1048576.0
            );
            println!(
                "{:<44} {:.1} ms over {count:.0} reconciles",
                "mean reconcile duration",
                sum / count * 1000.0
            );
        }
        _ => println!("operator metrics not reachable at {metrics}"),
    }
    Ok(())
}
