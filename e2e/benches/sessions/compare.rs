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
//!   debug POD --target=CONTAINER --profile=P` with the cluster's own kubectl (1.37), for
//!   a debugging profile P: General here, each of the five in `profiles.rs`.
//!
//! Both sides add the same debugger: the session's profile is the one named to kubectl
//! (General, the sessions' default, for Copy), and kubectl's profiles set what shellcar's
//! do (`--profile=general` adds SYS_PTRACE, as General does); the profile is named on
//! kubectl's side rather than left to kubectl's default, which has changed between
//! releases (`legacy` before `general`).
//!
//! One round before the pairs warms both sides up (image, caches, connections) and is not
//! counted.

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use shellcar::crd::{DebugSession, Mode, Profile, TargetKind};
use shellcar::naming;
use shellcar_e2e::bench::Scale;
use shellcar_e2e::bench::observe::{Observer, by_name};
use shellcar_e2e::bench::report::{Samples, Table, Verdict};
use shellcar_e2e::kubectl::kubectl;
use shellcar_e2e::pod::{container_status, ephemeral_running, nginx_pod};
use shellcar_e2e::psa::NON_ROOT_USER;
use shellcar_e2e::session::session;
use shellcar_e2e::workload::{NGINX_CONTAINER, nginx_deployment};
use shellcar_e2e::{Fixture, TIMEOUT};
use tokio::time::Instant;

/// The debugger image: the operator's `--default-image` in the e2e overlay, which
/// `kubectl debug` is given too.
const DEBUGGER_IMAGE: &str = "shellcar.local/busybox:1.36";
/// Field manager of the direct apply, the baseline of the Sidecar comparison.
const DIRECT_MANAGER: &str = "bench-direct";
/// Name of the debugger container that `kubectl debug` adds.
const KUBECTL_DEBUGGER: &str = "debugger";
/// The Deployment of the Sidecar comparison.
const WEB: &str = "web";

/// kubectl's name of `profile` (`kubectl debug --profile`), which sets what shellcar's
/// profile of that name sets.
fn kubectl_profile(profile: Profile) -> &'static str {
    match profile {
        Profile::General => "general",
        Profile::Baseline => "baseline",
        Profile::Restricted => "restricted",
        Profile::NetAdmin => "netadmin",
        Profile::SysAdmin => "sysadmin",
    }
}

/// `kubectl debug`'s flag for `profile`.
fn profile_flag(profile: Profile) -> String {
    format!("--profile={}", kubectl_profile(profile))
}

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
/// (`operator/src/session/modes/sidecar.rs`): its debugger `container` (renamed for `session`),
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
                    &profile_flag(Profile::General),
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

/// The target pod `name` of an Ephemeral comparison with `profile`: nginx, as
/// [`nginx_pod`] makes it. A Restricted debugger sets `runAsNonRoot` and busybox's image
/// runs as root, so for Restricted the pod runs as user and group 65534 (which ephemeral
/// containers inherit: both sides' debuggers can start), nginx alone as root, as in the
/// other rows.
fn target_pod(name: &str, profile: Profile) -> Result<Pod> {
    let mut pod = serde_json::to_value(nginx_pod(name, false)?)?;
    if profile == Profile::Restricted {
        let spec = &mut pod["spec"];
        spec["securityContext"] = json!({"runAsUser": NON_ROOT_USER, "runAsGroup": NON_ROOT_USER});
        spec["containers"][0]["securityContext"] = json!({"runAsUser": 0, "runAsGroup": 0});
    }
    Ok(serde_json::from_value(pod)?)
}

/// Ephemeral with `profile`: session → the ephemeral debugger runs, vs `kubectl debug
/// --target --profile`, both with `profile`'s debugger. Each side gets a pod of its own,
/// the same for both ([`target_pod`]), that has never had an ephemeral container (they
/// cannot be removed).
pub async fn ephemeral(
    scale: &Scale,
    f: &Fixture,
    table: &mut Table,
    profile: Profile,
) -> Result<()> {
    let (slug, flag) = (kubectl_profile(profile), profile_flag(profile));
    let label = format!("Ephemeral, profile {profile:?}");
    table.section(&format!("{label}: create → the ephemeral debugger runs"));
    let pods = f.workloads.pods.clone();
    let rounds = scale.pairs + 1;
    let pod_name = |i: usize| format!("eph-{slug}-{i}");
    let request = |round: usize, pod: &str| -> Result<DebugSession> {
        let mut request = session(&format!("ep-{slug}-{round}"), TargetKind::Pod, pod, "30m")?;
        request.spec.mode = Mode::Ephemeral;
        request.spec.debugger.profile = profile;
        Ok(request)
    };
    for i in 0..2 * rounds {
        pods.create(&Default::default(), &target_pod(&pod_name(i), profile)?)
            .await?;
    }
    for i in 0..2 * rounds {
        f.workloads
            .wait_pod(&pod_name(i), "Ready", shellcar_e2e::cluster::is_ready)
            .await?;
    }
    // Every replica of the webhook admits the profile before the clock starts: a policy
    // that allows it (see `profiles.rs`) reaches them asynchronously.
    f.wait_admitted(&serde_json::to_value(request(0, &pod_name(0))?)?)
        .await?;
    let (mut sessions, mut kubectl_samples) = (Samples::default(), Samples::default());
    for round in 0..rounds {
        let counted = round > 0;
        for session_side in sides(round) {
            let pod = pod_name(2 * round + usize::from(!session_side));
            let mut watch = Observer::start(pods.clone(), by_name(&pod)).await?;
            if session_side {
                let request = request(round, &pod)?;
                let name = request.name_any();
                let container = naming::container_name(&name);
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
                    &flag,
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
        &format!("kubectl debug --target {flag} → debugger running"),
        &kubectl_samples,
    );
    table.compare(
        &format!("{label}: session vs kubectl debug {flag} (p50)"),
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
