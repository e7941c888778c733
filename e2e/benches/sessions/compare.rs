//! Each mode against what a user would do without shellcar, in alternating pairs (the
//! side that goes first alternates too, so that a drift of the machine favours neither),
//! both sides timed in-process by a watch started before the clock.
//!
//! - Sidecar: a session's create until the Deployment's template carries the debugger,
//!   against a server-side apply of the same change (same container, labels and
//!   annotations) sent directly: the operator's cost over one round trip.
//! - Copy: a session's create until the copy's debugger runs, against `kubectl debug POD
//!   --copy-to=X --share-processes --profile=general`.
//! - Ephemeral: a session's create until the ephemeral debugger runs, against `kubectl
//!   debug POD --target=CONTAINER --profile=general` with the cluster's own kubectl
//!   (1.37).
//!
//! Both sides add the same debugger: the sessions' default profile is General, which is
//! what `kubectl debug --profile=general` sets (SYS_PTRACE added); the profile is named on
//! kubectl's side rather than left to kubectl's default, which has changed between
//! releases (`legacy` before `general`).
//!
//! One round before the pairs warms both sides up (image, caches, connections) and is not
//! counted.

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use shellcar::crd::{Mode, TargetKind};
use shellcar::naming;
use shellcar_e2e::bench::Scale;
use shellcar_e2e::bench::observe::{Observer, by_name};
use shellcar_e2e::bench::report::{Samples, Table, Verdict};
use shellcar_e2e::kubectl::kubectl;
use shellcar_e2e::pod::{container_status, ephemeral_running, nginx_pod};
use shellcar_e2e::session::session;
use shellcar_e2e::workload::{NGINX_CONTAINER, nginx_deployment};
use shellcar_e2e::{Fixture, TIMEOUT};
use tokio::time::Instant;

/// The debugger image: the operator's `--default-image` in the e2e overlay, which
/// `kubectl debug` is given too.
const DEBUGGER_IMAGE: &str = "shellcar.local/busybox:1.36";
/// Field manager of the direct apply, the baseline of the Sidecar comparison.
const DIRECT_MANAGER: &str = "bench-direct";
/// The `kubectl debug` profile that adds what the sessions' default profile (General)
/// adds.
const KUBECTL_PROFILE: &str = "--profile=general";
/// Name of the debugger container that `kubectl debug` adds.
const KUBECTL_DEBUGGER: &str = "debugger";
/// The Deployment of the Sidecar comparison.
const WEB: &str = "web";

/// The two sides of one comparison, in the order a round runs them.
fn sides(round: usize) -> [bool; 2] {
    // true: the session's side
    if round.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

fn template(d: &Deployment) -> Value {
    d.spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.template).ok())
        .unwrap_or_default()
}

fn template_container(d: &Deployment, name: &str) -> Option<Value> {
    template(d)["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

/// True when regular container `name` of the pod is running.
fn running(pod: &Pod, name: &str) -> bool {
    container_status(pod, name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

/// The change a Sidecar session `session` makes, as the operator's intent says it
/// (`operator/src/modes/sidecar.rs`): its debugger `container` (renamed for `session`),
/// the shared process namespace, the `debugged` label and the annotations naming the
/// session and its requester.
fn direct_intent(container: &Value, session: &str, requester: &str) -> Value {
    let name = naming::container_name(session);
    let mut container = container.clone();
    container["name"] = json!(name);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": WEB},
        "spec": {"template": {
            "metadata": {
                "labels": {naming::DEBUGGED_LABEL: "true"},
                "annotations": naming::marks(&name, session, requester),
            },
            "spec": {"shareProcessNamespace": true, "containers": [container]},
        }},
    })
}

/// The debugger container as the operator sent it: what the API server stored, less the
/// fields it filled in by default.
fn as_sent(mut container: Value) -> Value {
    if let Some(fields) = container.as_object_mut() {
        for defaulted in [
            "terminationMessagePath",
            "terminationMessagePolicy",
            "imagePullPolicy",
        ] {
            fields.remove(defaulted);
        }
        if fields.get("resources") == Some(&json!({})) {
            fields.remove("resources");
        }
    }
    container
}

/// Sidecar: session → template carries the debugger, vs a direct apply of that change.
pub async fn sidecar(scale: &Scale, f: &Fixture, table: &mut Table) -> Result<()> {
    table.section("Sidecar: create → the Deployment's template carries the debugger");
    let workloads = &f.workloads;
    let api = workloads.deployments.clone();
    workloads
        .create_deployment(&nginx_deployment(WEB, 1)?)
        .await?;
    let original = template(&api.get(WEB).await?);
    let mut watch = Observer::start(api.clone(), by_name(WEB)).await?;
    let direct = PatchParams::apply(DIRECT_MANAGER);
    let undo = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": WEB}});
    let (mut sessions, mut direct_samples, mut to_active) =
        (Samples::default(), Samples::default(), Samples::default());
    // Filled by the warm-up round's session, which goes first.
    let mut change: Option<(Value, String)> = None;
    for round in 0..=scale.pairs {
        let counted = round > 0;
        for session_side in sides(round) {
            watch.drain();
            if session_side {
                let name = format!("sc-{round}");
                let container = naming::container_name(&name);
                let start = Instant::now();
                f.sessions
                    .create(&session(&name, TargetKind::Deployment, WEB, "30m")?)
                    .await?;
                let (seen, d) = watch
                    .until("the template to carry the debugger", TIMEOUT, |d| {
                        template_container(d, &container).is_some()
                    })
                    .await?;
                f.sessions.wait_active(&name).await?;
                if counted {
                    sessions.push(seen - start);
                    to_active.push(start.elapsed());
                }
                if change.is_none() {
                    let requester = template(&d)["metadata"]["annotations"]
                        [naming::requester_annotation(&container)]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                    let debugger = template_container(&d, &container)
                        .context("the debugger left the template")?;
                    change = Some((as_sent(debugger), requester));
                }
                f.sessions.delete_and_wait_gone(&name).await?;
            } else {
                let name = format!("direct-{round}");
                let (debugger, requester) = change
                    .as_ref()
                    .context("no session has shown the change yet")?;
                let intent = direct_intent(debugger, &name, requester);
                let container = naming::container_name(&name);
                let start = Instant::now();
                api.patch(WEB, &direct, &Patch::Apply(&intent)).await?;
                let (seen, _) = watch
                    .until("the template to carry the debugger", TIMEOUT, |d| {
                        template_container(d, &container).is_some()
                    })
                    .await?;
                if counted {
                    direct_samples.push(seen - start);
                }
                workloads.wait_rollout(WEB).await?;
                api.patch(WEB, &direct, &Patch::Apply(&undo)).await?;
            }
            watch
                .until("the template to be as before", TIMEOUT, |d| {
                    template(d) == original
                })
                .await?;
            workloads.wait_rollout(WEB).await?;
        }
    }
    table.samples("session (POST) → template carries debugger", &sessions);
    table.samples(
        "direct server-side apply → template carries it",
        &direct_samples,
    );
    table.compare(
        "session over direct apply (p50)",
        &sessions,
        &direct_samples,
        |s, d| Verdict::of("<= +10 ms p50", s.saturating_sub(d).as_millis() <= 10),
    );
    table.samples("session (POST) → Active (rollout, pod start)", &to_active);
    Ok(())
}

/// Runs the cluster's kubectl with `args` and fails if it does.
async fn kubectl_ok(args: &[&str]) -> Result<()> {
    let out = kubectl(None, args, None).await?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        out.command,
        out.stderr.trim()
    );
    Ok(())
}

/// Copy: session → the copy's debugger runs, vs `kubectl debug --copy-to`.
pub async fn copy(scale: &Scale, f: &Fixture, table: &mut Table) -> Result<()> {
    table.section("Copy: create → the copy's debugger runs");
    let pods = f.workloads.pods.clone();
    f.workloads.create_pod(&nginx_pod("src", false)?).await?;
    let (mut sessions, mut kubectl_samples) = (Samples::default(), Samples::default());
    for round in 0..=scale.pairs {
        let counted = round > 0;
        for session_side in sides(round) {
            if session_side {
                let name = format!("cp-{round}");
                let copy = naming::copy_name(&name);
                let container = naming::container_name(&name);
                let mut watch = Observer::start(pods.clone(), by_name(&copy)).await?;
                let mut request = session(&name, TargetKind::Pod, "src", "30m")?;
                request.spec.mode = Mode::Copy;
                let start = Instant::now();
                f.sessions.create(&request).await?;
                let (seen, _) = watch
                    .until("the copy's debugger to run", TIMEOUT, |p| {
                        running(p, &container)
                    })
                    .await?;
                if counted {
                    sessions.push(seen - start);
                }
                f.sessions.delete_and_wait_gone(&name).await?;
                watch.until_deleted(&copy, TIMEOUT).await?;
            } else {
                let copy = format!("kcp-{round}");
                let mut watch = Observer::start(pods.clone(), by_name(&copy)).await?;
                let start = Instant::now();
                kubectl_ok(&[
                    "debug",
                    "-n",
                    f.ns(),
                    "src",
                    "--copy-to",
                    &copy,
                    "--share-processes",
                    KUBECTL_PROFILE,
                    "--image",
                    DEBUGGER_IMAGE,
                    "--container",
                    KUBECTL_DEBUGGER,
                    "--",
                    "sleep",
                    "3600",
                ])
                .await?;
                let (seen, _) = watch
                    .until("the copy's debugger to run", TIMEOUT, |p| {
                        running(p, KUBECTL_DEBUGGER)
                    })
                    .await?;
                if counted {
                    kubectl_samples.push(seen - start);
                }
                pods.delete(&copy, &DeleteParams::default().grace_period(0))
                    .await?;
                watch.until_deleted(&copy, TIMEOUT).await?;
            }
        }
    }
    table.samples("session (POST) → copy's debugger running", &sessions);
    table.samples(
        "kubectl debug --copy-to → debugger running",
        &kubectl_samples,
    );
    table.compare(
        "session vs kubectl debug (p50)",
        &sessions,
        &kubectl_samples,
        |s, k| Verdict::of("<= 1.0x kubectl debug", s <= k),
    );
    Ok(())
}

/// Ephemeral: session → the ephemeral debugger runs, vs `kubectl debug --target`. Each
/// side gets a pod of its own that has never had an ephemeral container (they cannot be
/// removed).
pub async fn ephemeral(scale: &Scale, f: &Fixture, table: &mut Table) -> Result<()> {
    table.section("Ephemeral: create → the ephemeral debugger runs");
    let pods = f.workloads.pods.clone();
    let rounds = scale.pairs + 1;
    for i in 0..2 * rounds {
        pods.create(&Default::default(), &nginx_pod(&format!("eph-{i}"), false)?)
            .await?;
    }
    for i in 0..2 * rounds {
        f.workloads
            .wait_pod(
                &format!("eph-{i}"),
                "Ready",
                shellcar_e2e::cluster::is_ready,
            )
            .await?;
    }
    let (mut sessions, mut kubectl_samples) = (Samples::default(), Samples::default());
    for round in 0..rounds {
        let counted = round > 0;
        for session_side in sides(round) {
            let pod = format!("eph-{}", 2 * round + usize::from(!session_side));
            let mut watch = Observer::start(pods.clone(), by_name(&pod)).await?;
            if session_side {
                let name = format!("ep-{round}");
                let container = naming::container_name(&name);
                let mut request = session(&name, TargetKind::Pod, &pod, "30m")?;
                request.spec.mode = Mode::Ephemeral;
                let start = Instant::now();
                f.sessions.create(&request).await?;
                let (seen, _) = watch
                    .until("the ephemeral debugger to run", TIMEOUT, |p| {
                        ephemeral_running(p, &container)
                    })
                    .await?;
                if counted {
                    sessions.push(seen - start);
                }
                f.sessions.delete_and_wait_gone(&name).await?;
            } else {
                let start = Instant::now();
                kubectl_ok(&[
                    "debug",
                    "-n",
                    f.ns(),
                    &pod,
                    "--target",
                    NGINX_CONTAINER,
                    KUBECTL_PROFILE,
                    "--image",
                    DEBUGGER_IMAGE,
                    "--container",
                    KUBECTL_DEBUGGER,
                    "--",
                    "sleep",
                    "3600",
                ])
                .await?;
                let (seen, _) = watch
                    .until("the ephemeral debugger to run", TIMEOUT, |p| {
                        ephemeral_running(p, KUBECTL_DEBUGGER)
                    })
                    .await?;
                if counted {
                    kubectl_samples.push(seen - start);
                }
            }
            pods.delete(&pod, &DeleteParams::default().grace_period(0))
                .await?;
            watch.until_deleted(&pod, TIMEOUT).await?;
        }
    }
    table.samples("session (POST) → ephemeral debugger running", &sessions);
    table.samples(
        "kubectl debug --target → debugger running",
        &kubectl_samples,
    );
    table.compare(
        "session vs kubectl debug (p50)",
        &sessions,
        &kubectl_samples,
        |s, k| Verdict::of("<= 1.0x kubectl debug", s <= k),
    );
    Ok(())
}

/// How long the cluster's kubectl takes to start and make one request, for reading the
/// kubectl rows: its side includes a process start, the session's side (one POST from a
/// running client) does not.
pub async fn kubectl_start(scale: &Scale, table: &mut Table) -> Result<()> {
    let mut samples = Samples::default();
    for _ in 0..scale.pairs {
        let start = Instant::now();
        kubectl_ok(&["get", "--raw", "/readyz"]).await?;
        samples.push(start.elapsed());
    }
    table.samples("for reference: kubectl get --raw /readyz", &samples);
    Ok(())
}
