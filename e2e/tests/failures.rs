//! Failures show where people look: a change the API server refuses ends the session as
//! Rejected; a debugger that cannot be pulled or scheduled names the reason in status and
//! in an Event, and a debugger that never starts ends as StartTimeout with the template
//! restored; a workload scaled to zero says so; changes other field managers make to the
//! template during a session are reported and survive teardown.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use shellcar::crd::{DebugPod, DebugSession, Phase, TargetKind};
use shellcar_e2e::Fixture;
use shellcar_e2e::events::EventSummary;
use shellcar_e2e::kubectl;
use shellcar_e2e::session::{condition, phase, session};
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::{
    assert_template_restored, nginx_deployment, pretty, shellcar_traces, template_containers,
};

/// The waiting reasons of a debugger image that cannot be pulled.
const PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];

/// The reason of the session's Ready condition, or "".
fn ready_reason(s: &DebugSession) -> String {
    condition(s, "Ready")
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The session's `status.message`, or "".
fn message(s: &DebugSession) -> String {
    s.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

/// The pods the session's status lists.
fn pods(s: &DebugSession) -> Vec<DebugPod> {
    s.status
        .as_ref()
        .map(|s| s.pods.clone())
        .unwrap_or_default()
}

/// What `kubectl describe dbg` prints for session `name`, printed to stderr too (run the
/// tests with `--nocapture` to see it) so that people can read what a user reads.
async fn describe(f: &Fixture, name: &str, when: &str) -> Result<String> {
    let out = kubectl::kubectl(None, &["describe", "dbg", name, "-n", f.ns()], None).await?;
    assert!(
        out.status.success(),
        "{} failed: {}",
        out.command,
        out.stderr
    );
    eprintln!(
        "===== kubectl describe dbg {name} ({when}) =====\n{}=====",
        out.stdout
    );
    Ok(out.stdout)
}

/// Waits for a Warning Event on session `name` whose reason is one of `reasons`.
async fn wait_warning(f: &Fixture, name: &str, reasons: &[&str]) -> Result<EventSummary> {
    poll(
        &format!("a Warning Event {reasons:?} on DebugSession {name}"),
        Duration::from_secs(60),
        || async {
            let events = f.events.for_object("DebugSession", name).await?;
            Ok(
                match events
                    .iter()
                    .find(|e| e.type_ == "Warning" && reasons.contains(&e.reason.as_str()))
                {
                    Some(e) => Polled::Done(e.clone()),
                    None => Polled::NotYet(format!("{events:#?}")),
                },
            )
        },
    )
    .await
}

/// A session on Deployment `target` whose debugger the webhook cannot try out in a dry run
/// (the Deployment does not exist yet) and the API server refuses once it does: an env var
/// name with `=` (the one character 1.34's relaxed env var names still refuse), and a
/// negative cpu request (a quantity that the operator's own quantity
/// check accepts). Each session waits as Pending/TargetNotFound; once its Deployment is
/// created, the operator's apply gets a 422 and the session fails for good as Rejected,
/// with the API server's message in status and in a Warning Event, and the Deployment's
/// spec is never changed (generation 1, no shellcar trace).
#[tokio::test]
async fn a_change_the_api_server_refuses_fails_as_rejected() -> Result<()> {
    let f = Fixture::new("rejected").await?;

    let mut bad_env = session("badenv", TargetKind::Deployment, "web", "30m")?;
    bad_env.spec.debugger.env = Some(vec![EnvVar {
        name: "BAD=NAME".to_owned(),
        value: Some("x".to_owned()),
        value_from: None,
    }]);
    let mut bad_cpu = session("badcpu", TargetKind::Deployment, "api", "30m")?;
    bad_cpu.spec.debugger.resources = Some(ResourceRequirements {
        requests: Some([("cpu".to_owned(), Quantity("-1".to_owned()))].into()),
        ..ResourceRequirements::default()
    });
    // (session, its Deployment, what the API server's message must contain)
    let cases = [(bad_env, "web", "\"BAD=NAME\""), (bad_cpu, "api", "\"-1\"")];

    for (s, target, _) in &cases {
        let name = s.metadata.name.clone().unwrap_or_default();
        f.sessions.create(s).await?;
        f.sessions
            .wait_refused(&name, Phase::Pending, "TargetNotFound")
            .await?;
        f.workloads
            .create_deployment(&nginx_deployment(target, 1)?)
            .await?;
    }

    for (s, target, refused) in &cases {
        let name = s.metadata.name.clone().unwrap_or_default();
        let failed = f.assert_failed(&name, "Rejected").await?;
        let text = message(&failed);
        eprintln!("{name}: status.message: {text}");
        assert!(
            text.starts_with("the API server refused the change")
                && text.contains(&format!("Deployment {target}"))
                && text.contains("Invalid value")
                && text.contains(refused),
            "status.message of {name} must carry the API server's refusal of {refused}: {text}"
        );
        let event = f
            .events
            .wait_for("DebugSession", &name, "Warning", "Rejected")
            .await?;
        assert!(
            event.message.contains(refused),
            "the Rejected Event of {name} must carry the API server's message: {event:?}"
        );
        assert!(
            pods(&failed).is_empty(),
            "a rejected session lists pods: {:#?}",
            failed.status
        );
        // Nothing of the session ever reached the Deployment.
        let deployment = f.workloads.deployments.get(target).await?;
        assert_eq!(
            deployment.metadata.generation,
            Some(1),
            "Deployment {target}'s spec changed"
        );
        let template = f.workloads.template(target).await?;
        let created = serde_json::to_value(nginx_deployment(target, 1)?)?;
        let created = &created["spec"]["template"];
        assert_eq!(
            template_containers(&template),
            template_containers(created),
            "{}",
            pretty(&template)
        );
        let traces = shellcar_traces(created, &template);
        assert!(traces.is_empty(), "{traces:?} in {}", pretty(&template));
    }
    Ok(())
}

/// A debugger image that does not exist: within about 30 s the session (still Injecting)
/// names the pull failure as its Ready reason, its message names the pod and the kubelet's
/// message, `status.pods[].reason` is set, and a Warning Event carries the reason. After
/// the start deadline (60 s in e2e) it fails as StartTimeout with the template restored
/// exactly, and stays so: later watch events (on the session and on the Deployment) do not
/// inject the debugger again.
#[tokio::test]
async fn a_missing_image_is_named_then_times_out_and_stays_removed() -> Result<()> {
    let (f, before) = Fixture::with_deployment("noimage", "web", 1).await?;
    let mut request = session("nope", TargetKind::Deployment, "web", "30m")?;
    request.spec.debugger.image = Some("shellcar.local/nope:1".to_owned());
    let created = Instant::now();
    f.sessions.create(&request).await?;

    let s = f
        .sessions
        .wait_within(
            "nope",
            "phase Injecting with Ready reason ErrImagePull or ImagePullBackOff",
            Duration::from_secs(45),
            |s| {
                phase(s) == Some(Phase::Injecting)
                    && PULL_FAILURES.contains(&ready_reason(s).as_str())
            },
        )
        .await?;
    eprintln!("pull failure reported after {:?}", created.elapsed());
    let reason = ready_reason(&s);
    let text = message(&s);
    let pods = pods(&s);
    let pod = pods
        .iter()
        .find(|p| p.reason.as_deref() == Some(reason.as_str()))
        .with_context(|| format!("no pod in status has reason {reason}: {pods:#?}"))?;
    let kubelet = pod
        .message
        .as_deref()
        .with_context(|| format!("pod {} has no kubelet message: {pods:#?}", pod.name))?;
    assert!(
        text.contains(&format!("cannot start in pod {}: {reason}", pod.name))
            && text.contains(kubelet),
        "status.message must name pod {} and the kubelet's message {kubelet:?}: {text}",
        pod.name
    );
    wait_warning(&f, "nope", &PULL_FAILURES).await?;
    describe(&f, "nope", "image pull failing").await?;

    let failed = f.assert_failed("nope", "StartTimeout").await?;
    eprintln!("StartTimeout after {:?}", created.elapsed());
    let text = message(&failed);
    assert!(
        text.contains("no debugger ran within the start deadline of 1m")
            && text.contains("last: pod"),
        "the StartTimeout message must give the deadline and the last problem: {text}"
    );
    // Teardown comes before the status that says Failed.
    assert_template_restored(&before, &f.workloads.template("web").await?);
    describe(&f, "nope", "after the start deadline").await?;

    // Wake the session with watch events: StartTimeout is final.
    let poke = json!({"metadata": {"annotations": {"e2e.shellcar.dev/poke": "1"}}});
    f.sessions
        .api
        .patch("nope", &PatchParams::default(), &Patch::Merge(&poke))
        .await?;
    f.workloads
        .deployments
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("shellcar-e2e".to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(&poke),
        )
        .await?;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let template = f.workloads.template("web").await?;
        assert_template_restored(&before, &template);
        let s = f.sessions.api.get("nope").await?;
        assert_eq!(
            (phase(&s), ready_reason(&s).as_str()),
            (Some(Phase::Failed), "StartTimeout"),
            "a session that timed out must stay Failed: {:#?}",
            s.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    f.workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}

/// A debugger that requests more cpu than any node has: the new pod stays Pending, and the
/// session (Injecting) says Unschedulable with the scheduler's message, in status, in
/// `status.pods[].reason` and in a Warning Event. Deleting the session restores the
/// template and the original pod.
#[tokio::test]
async fn an_unschedulable_debugger_gives_the_schedulers_reason() -> Result<()> {
    let (f, before) = Fixture::with_deployment("unsched", "web", 1).await?;
    let mut request = session("greedy", TargetKind::Deployment, "web", "30m")?;
    request.spec.debugger.resources = Some(ResourceRequirements {
        requests: Some([("cpu".to_owned(), Quantity("1000".to_owned()))].into()),
        ..ResourceRequirements::default()
    });
    f.sessions.create(&request).await?;

    let s = f
        .sessions
        .wait_within(
            "greedy",
            "phase Injecting with Ready reason Unschedulable",
            Duration::from_secs(45),
            |s| phase(s) == Some(Phase::Injecting) && ready_reason(s) == "Unschedulable",
        )
        .await?;
    let text = message(&s);
    assert!(
        text.contains("Insufficient cpu"),
        "status.message must carry the scheduler's message: {text}"
    );
    let pods = pods(&s);
    assert!(
        pods.iter()
            .any(|p| p.reason.as_deref() == Some("Unschedulable")
                && p.message
                    .as_deref()
                    .is_some_and(|m| m.contains("Insufficient cpu"))),
        "no pod in status is Unschedulable for cpu: {pods:#?}"
    );
    let event = f
        .events
        .wait_for("DebugSession", "greedy", "Warning", "Unschedulable")
        .await?;
    assert!(event.message.contains("Insufficient cpu"), "{event:?}");
    describe(&f, "greedy", "unschedulable").await?;

    f.sessions.delete_and_wait_gone("greedy").await?;
    f.workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}

/// A session on a Deployment scaled to 0 says why no debugger runs (Ready reason
/// NoReplicas, and the message tells to scale up) without calling it a failure; scaled up,
/// the debugger runs, and deleting the session restores the template.
#[tokio::test]
async fn a_deployment_with_no_replicas_says_to_scale_it_up() -> Result<()> {
    let f = Fixture::new("noreplicas").await?;
    // Created directly: a Deployment of 0 replicas reports no replica counts to wait for.
    f.workloads
        .deployments
        .create(
            &PostParams {
                field_manager: Some("shellcar-e2e".to_owned()),
                ..PostParams::default()
            },
            &nginx_deployment("web", 0)?,
        )
        .await?;
    let before = f.workloads.template("web").await?;
    f.sessions
        .create(&session("idle", TargetKind::Deployment, "web", "30m")?)
        .await?;

    let s = f
        .sessions
        .wait_within(
            "idle",
            "phase Injecting with Ready reason NoReplicas",
            Duration::from_secs(30),
            |s| phase(s) == Some(Phase::Injecting) && ready_reason(s) == "NoReplicas",
        )
        .await?;
    let text = message(&s);
    assert!(
        text.contains("Deployment web has 0 replicas; scale it up to get the debugger"),
        "{text}"
    );
    let event = f
        .events
        .wait_mentioning("DebugSession", "idle", "has 0 replicas")
        .await?;
    assert_eq!(
        (event.type_.as_str(), event.reason.as_str()),
        ("Normal", "Injected"),
        "waiting for a scale-up is no failure: {event:?}"
    );
    eprintln!("idle: status.message: {text}\nidle: Event {event:?}");

    let scale = json!({"spec": {"replicas": 1}});
    f.workloads
        .deployments
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("shellcar-e2e".to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(&scale),
        )
        .await?;
    f.sessions.wait_active("idle").await?;

    f.sessions.delete_and_wait_gone("idle").await?;
    f.workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}

/// A change another field manager makes to the pod template during an Active Sidecar
/// session is reported (a Warning Event TargetChanged naming the manager, and
/// `status.targetChanges`), and survives teardown: deleting the session removes only
/// shellcar's fields, leaving the template as before the session plus that change.
#[tokio::test]
async fn a_drifted_template_is_reported_and_keeps_the_change_after_teardown() -> Result<()> {
    const MANAGER: &str = "drift-test";
    let (f, before) = Fixture::with_deployment("drift", "web", 1).await?;
    let container = f.debug_deployment("drift", "web", "30m").await?;
    f.workloads.assert_debugged("web", &[&container]).await?;
    // managedFields times have whole seconds: let the change come after the injection's.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let env = json!([{"name": "FOO", "value": "bar"}]);
    let drift = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "env": env}
    ]}}}});
    f.workloads
        .deployments
        .patch(
            "web",
            &PatchParams {
                field_manager: Some(MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Strategic(&drift),
        )
        .await?;

    let event = f
        .events
        .wait_for("DebugSession", "drift", "Warning", "TargetChanged")
        .await?;
    assert!(
        event.message.contains(MANAGER),
        "the TargetChanged Event must name {MANAGER}: {event:?}"
    );
    let s = f
        .sessions
        .wait("drift", "status.targetChanges to list drift-test", |s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.target_changes.iter().any(|c| c.manager == MANAGER))
        })
        .await?;
    let changes = &s.status.as_ref().context("no status")?.target_changes;
    eprintln!("drift: Event {event:?}\ndrift: status.targetChanges {changes:?}");
    assert!(
        changes.iter().all(|c| !c.manager.starts_with("shellcar")),
        "shellcar's own managers are no drift: {changes:#?}"
    );
    f.workloads.assert_debugged("web", &[&container]).await?;

    f.sessions.delete_and_wait_gone("drift").await?;
    let mut expected: Value = before.clone();
    expected["spec"]["containers"][0]["env"] = env;
    let after = f.workloads.template("web").await?;
    assert_template_restored(&expected, &after);
    f.workloads.assert_restored("web", &expected, 1).await?;
    Ok(())
}
