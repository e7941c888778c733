//! Ephemeral mode: a bare nginx Pod gets an ephemeral debugger aimed at its nginx
//! container, which sees nginx's processes; teardown stops the debugger and leaves
//! exactly what status says it leaves (Leave, Label), or recycles the pod (Recycle),
//! which a pod without a controller refuses. Every profile's securityContext goes
//! through `pods/ephemeralcontainers`, on a bare Pod and on a Deployment's pod.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;
use shellcar::crd::{DebugPod, EphemeralTeardown, Mode, Phase, Profile, TargetKind};
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::exec::{self, NGINX_MASTER, NGINX_WORKER, ps};
use shellcar_e2e::pod::{
    assert_pod_untouched, assert_undebugged, ephemeral_running, ephemeral_states, nginx_pod,
    pod_identity, shellcar_marks,
};
use shellcar_e2e::psa::{NON_ROOT_USER, PROFILES, security_context};
use shellcar_e2e::session::{condition, phase, session};
use shellcar_e2e::workload::{NGINX_CONTAINER, nginx_deployment, pod_containers};

/// Long enough for the debugger to start and be used before it expires.
const SHORT_TTL: &str = "40s";
/// The ttl of [`every_profile_runs_and_stops_at_expiry`]'s ten sessions, which start
/// together: long enough for all of them to start and be used before they expire.
const PROFILE_TTL: &str = "90s";

/// Checks, as a user would with `kubectl exec POD -c DEBUGGER -- ps ax`, that the
/// ephemeral debugger in `pod` runs in the nginx container's process namespace: it lists
/// the nginx master as PID 1 and a worker, and not the pod's /pause (the pod does not
/// share one process namespace; only `targetContainerName` puts nginx in view).
async fn assert_sees_nginx(f: &Fixture, pod: &str, container: &str) -> Result<()> {
    let processes = ps(&f.workloads.pods, pod, container).await?;
    let masters = exec::find(&processes, NGINX_MASTER);
    assert_eq!(
        masters.len(),
        1,
        "one nginx master expected: {processes:#?}"
    );
    assert_eq!(
        masters[0].pid, 1,
        "nginx's master is PID 1 in the target container's namespace: {processes:#?}"
    );
    assert!(
        !exec::find(&processes, NGINX_WORKER).is_empty(),
        "no nginx worker: {processes:#?}"
    );
    assert!(
        exec::find(&processes, "/pause").is_empty(),
        "the debugger sees the pod sandbox, not the nginx container's namespace: {processes:#?}"
    );
    Ok(())
}

/// Checks that live pod `pod` carries this session's ephemeral debugger, aimed at nginx,
/// and shellcar's marks, and no extra regular container.
fn assert_carries_debugger(pod: &k8s_openapi::api::core::v1::Pod, session: &str, container: &str) {
    let name = pod.name_any();
    assert_eq!(
        pod_containers(pod),
        vec![NGINX_CONTAINER.to_owned()],
        "pod {name}: Ephemeral mode adds no regular container"
    );
    let ephemeral = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container));
    let ephemeral =
        ephemeral.unwrap_or_else(|| panic!("pod {name} has no ephemeral container {container}"));
    assert_eq!(
        ephemeral.target_container_name.as_deref(),
        Some(NGINX_CONTAINER),
        "pod {name}: the debugger must target nginx"
    );
    assert_eq!(
        pod.labels().get(naming::DEBUGGED_LABEL).map(String::as_str),
        Some("true"),
        "pod {name} labels: {:?}",
        pod.labels()
    );
    assert_eq!(
        pod.annotations()
            .get(&naming::session_annotation(container))
            .map(String::as_str),
        Some(session),
        "pod {name} annotations: {:?}",
        pod.annotations()
    );
    // What teardown must remove, seen by the same check that later finds it gone.
    assert_eq!(
        shellcar_marks(pod),
        vec![
            format!("label {}", naming::DEBUGGED_LABEL),
            format!("annotation {}", naming::session_annotation(container)),
            format!("field manager {}", naming::field_manager(session)),
        ],
        "pod {name}"
    );
}

/// A bare nginx Pod debugged with `mode` (which must resolve to Ephemeral) until the ttl
/// runs out: the debugger works, then is stopped, and the pod keeps only the stopped
/// container, as status says.
async fn debug_until_expiry(topic: &str, mode: Mode) -> Result<()> {
    let (f, source) = Fixture::with_pod(topic, "web", false).await?;
    let uid = source.uid().context("no uid")?;
    let spec_before = source.spec.clone();

    let mut request = session("eph", TargetKind::Pod, "web", SHORT_TTL)?;
    request.spec.mode = mode;
    f.sessions.create(&request).await?;
    let container = naming::container_name("eph");

    // Status: Ready, resolved to Ephemeral, with the pod and the exact attach command.
    let s = f.sessions.wait_active("eph").await?;
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.mode, Some(Mode::Ephemeral), "{status:#?}");
    assert_eq!(status.container.as_deref(), Some(container.as_str()));
    assert_eq!(
        status.pods,
        vec![DebugPod {
            reason: None,
            message: None,
            name: "web".to_owned(),
            container: container.clone(),
            ready: true,
            attach: naming::attach_command(f.ns(), "web", &container),
            copy_of: None,
        }]
    );
    // The pod is the same pod (not recreated), with the ephemeral debugger aimed at nginx.
    let live = f.workloads.pods.get("web").await?;
    // The default profile (General) sets a securityContext, which the API server (1.33+)
    // stores on the ephemeral container as sent.
    let debugger = live
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .and_then(|e| e.iter().find(|c| c.name == container))
        .context("the ephemeral debugger is missing from the pod's spec")?;
    assert!(
        debugger.security_context.is_some(),
        "the General profile's securityContext is missing from the ephemeral debugger: {debugger:?}"
    );
    assert_eq!(
        live.uid().as_deref(),
        Some(uid.as_str()),
        "the pod was replaced"
    );
    assert_carries_debugger(&live, "eph", &container);
    assert_sees_nginx(&f, "web", &container).await?;

    // Expiry: the session stays as a record, saying what remains in the pod.
    let s = f.sessions.wait_expired("eph").await?;
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.leftovers.len(), 1, "{status:#?}");
    let leftover = &status.leftovers[0];
    assert!(
        leftover.contains("pod web")
            && leftover.contains(&container)
            && leftover.contains("stopped ephemeral container"),
        "leftovers must name the pod and its stopped container: {leftover}"
    );
    assert!(
        !leftover.contains("could not be stopped"),
        "the debugger was not stopped at expiry: {leftover}"
    );

    // ... and the pod holds exactly that: the stopped debugger, nothing else of shellcar.
    let after = f
        .workloads
        .wait_debugger_stopped(&source, &container)
        .await?;
    assert!(
        shellcar_marks(&after).is_empty(),
        "shellcar's marks remain: {:?}",
        shellcar_marks(&after)
    );
    let mut spec_after = after.spec.clone();
    if let Some(spec) = spec_after.as_mut() {
        spec.ephemeral_containers = None;
    }
    assert_eq!(
        spec_after, spec_before,
        "the pod's spec changed beyond the ephemeral container"
    );
    f.events
        .wait_for("DebugSession", "eph", "Normal", "Expired")
        .await?;
    Ok(())
}

#[tokio::test]
async fn ephemeral_debugger_sees_nginx_and_stops_at_expiry() -> Result<()> {
    debug_until_expiry("ephemeral", Mode::Ephemeral).await
}

#[tokio::test]
async fn auto_mode_debugs_a_pod_with_an_ephemeral_container() -> Result<()> {
    // Auto picks Ephemeral only where the cluster serves it (every 1.25+ API server):
    // make its absence a clear failure rather than a confusing Copy.
    let cluster = shellcar_e2e::Cluster::connect().await?;
    let core = cluster.client.list_core_api_resources("v1").await?;
    ensure!(
        core.resources
            .iter()
            .any(|r| r.name == "pods/ephemeralcontainers"),
        "the cluster does not serve pods/ephemeralcontainers, which every Kubernetes \
         since 1.25 does: is the API server older than shellcar supports?"
    );
    debug_until_expiry("auto-ephemeral", Mode::Auto).await
}

#[tokio::test]
async fn label_teardown_stops_the_debugger_and_labels_the_pod() -> Result<()> {
    let (f, source) = Fixture::with_pod("eph-label", "web", false).await?;

    // A long ttl: the debugger cannot stop by itself during the test, only teardown stops it.
    let mut request = session("lbl", TargetKind::Pod, "web", "30m")?;
    request.spec.mode = Mode::Ephemeral;
    request.spec.teardown.ephemeral = EphemeralTeardown::Label;
    f.sessions.create(&request).await?;
    let container = naming::container_name("lbl");
    f.sessions.wait_active("lbl").await?;
    let live = f.workloads.pods.get("web").await?;
    assert_carries_debugger(&live, "lbl", &container);
    assert!(
        ephemeral_running(&live, &container),
        "{:?}",
        ephemeral_states(&live)
    );
    assert_sees_nginx(&f, "web", &container).await?;

    f.sessions.delete_and_wait_gone("lbl").await?;

    let after = f
        .workloads
        .wait_debugger_stopped(&source, &container)
        .await?;
    assert_eq!(
        after
            .labels()
            .get(naming::EPHEMERAL_DEBUGGED_LABEL)
            .map(String::as_str),
        Some("true"),
        "labels: {:?}",
        after.labels()
    );
    assert_eq!(
        shellcar_marks(&after),
        vec![format!("label {}", naming::EPHEMERAL_DEBUGGED_LABEL)],
        "only the Label policy's label may remain"
    );
    assert_eq!(after.labels().get("app").map(String::as_str), Some("web"));
    Ok(())
}

#[tokio::test]
async fn recycle_is_refused_for_a_bare_pod_and_changes_nothing() -> Result<()> {
    let (f, source) = Fixture::with_pod("eph-bare", "web", false).await?;
    let before = pod_identity(&source);

    let mut request = session("rcy", TargetKind::Pod, "web", "30m")?;
    request.spec.mode = Mode::Ephemeral;
    request.spec.teardown.ephemeral = EphemeralTeardown::Recycle;
    f.sessions.create(&request).await?;

    let s = f.assert_failed("rcy", "RecycleBarePod").await?;
    let status = s.status.clone().context("no status")?;
    let stalled = condition(&s, "Stalled").context("no Stalled condition")?;
    assert!(
        stalled.message.contains("web") && stalled.message.contains("controller"),
        "the condition must say which pod and why: {}",
        stalled.message
    );
    assert!(status.pods.is_empty(), "{status:#?}");

    // Nothing happened to the pod, now or a little later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = f.workloads.pods.get("web").await?;
    assert_undebugged(&after);
    assert_pod_untouched(&before, &after, "after");
    assert_eq!(
        phase(&f.sessions.api.get("rcy").await?),
        Some(Phase::Failed)
    );
    Ok(())
}

#[tokio::test]
async fn recycle_evicts_a_deployments_debugged_pod() -> Result<()> {
    let (f, template) = Fixture::with_deployment("eph-recycle", "web", 1).await?;
    let generation = f
        .workloads
        .deployments
        .get("web")
        .await?
        .metadata
        .generation;
    let pods = f.workloads.live_pods("app=web").await?;
    let [old] = pods.as_slice() else {
        anyhow::bail!("one pod expected, found {}", pods.len());
    };
    let old_name = old.name_any();
    let old_uid = old.uid().context("no uid")?;

    let mut request = session("rcy", TargetKind::Deployment, "web", SHORT_TTL)?;
    request.spec.mode = Mode::Ephemeral;
    request.spec.teardown.ephemeral = EphemeralTeardown::Recycle;
    f.sessions.create(&request).await?;
    let container = naming::container_name("rcy");

    let s = f.sessions.wait_active("rcy").await?;
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.mode, Some(Mode::Ephemeral), "{status:#?}");
    assert_eq!(
        status.pods,
        vec![DebugPod {
            reason: None,
            message: None,
            name: old_name.clone(),
            container: container.clone(),
            ready: true,
            attach: naming::attach_command(f.ns(), &old_name, &container),
            copy_of: None,
        }]
    );
    let live = f.workloads.pods.get(&old_name).await?;
    assert_eq!(live.uid().as_deref(), Some(old_uid.as_str()));
    assert_carries_debugger(&live, "rcy", &container);
    assert_sees_nginx(&f, &old_name, &container).await?;
    // Ephemeral mode leaves the Deployment alone: no sidecar, no rollout.
    assert_eq!(f.workloads.template("web").await?, template);

    let s = f.sessions.wait_expired("rcy").await?;
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.leftovers.len(), 1, "{status:#?}");
    assert!(
        status.leftovers[0].contains(&format!("pod {old_name} was evicted")),
        "leftovers must say the pod was evicted: {:?}",
        status.leftovers
    );

    // The debugged pod is gone; the Deployment replaced it with a clean pod.
    f.workloads.wait_pod_gone(&old_name, &old_uid).await?;
    let replacements = f
        .workloads
        .wait_pods("app=web", 1, "replacing the evicted pod", |p| {
            p.uid().as_deref() != Some(old_uid.as_str())
        })
        .await?;
    let new = &replacements[0];
    assert_undebugged(new);
    assert_eq!(pod_containers(new), vec![NGINX_CONTAINER.to_owned()]);
    let after = f.workloads.deployments.get("web").await?;
    assert_eq!(
        after.metadata.generation, generation,
        "the Deployment was changed"
    );
    assert_eq!(f.workloads.template("web").await?, template);
    Ok(())
}

#[tokio::test]
async fn raising_the_ttl_extends_an_ephemeral_debugger() -> Result<()> {
    let (f, _source) = Fixture::with_pod("eph-extend", "web", false).await?;
    let mut request = session("ext", TargetKind::Pod, "web", "30s")?;
    request.spec.mode = Mode::Ephemeral;
    f.sessions.create(&request).await?;
    let container = naming::container_name("ext");
    let s = f.sessions.wait_active("ext").await?;
    let first_expiry = s
        .status
        .and_then(|st| st.expires_at)
        .context("no expiresAt")?
        .0;

    // Raise the ttl before it runs out, as `kubectl patch` or a GitOps change would.
    f.sessions
        .api
        .patch(
            "ext",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"ttl": "10m"}})),
        )
        .await?;
    f.sessions
        .wait("ext", "the later expiry in status", |s| {
            s.status
                .as_ref()
                .and_then(|st| st.expires_at.as_ref())
                .is_some_and(|t| t.0 > first_expiry)
        })
        .await?;

    // Past the first deadline (and the watchdog's 2 s poll), the debugger still runs:
    // its deadline moved with the session's.
    let left = first_expiry.duration_since(jiff::Timestamp::now());
    let left = Duration::try_from(left).unwrap_or_default();
    tokio::time::sleep(left + Duration::from_secs(8)).await;
    let live = f.workloads.pods.get("web").await?;
    assert!(
        ephemeral_running(&live, &container),
        "the ephemeral debugger stopped at the old deadline: {:?}",
        ephemeral_states(&live)
    );
    let s = f.sessions.api.get("ext").await?;
    assert_eq!(phase(&s), Some(Phase::Active), "{:#?}", s.status);
    assert_sees_nginx(&f, "web", &container).await?;

    f.sessions.delete_and_wait_gone("ext").await?;
    Ok(())
}

/// Fits pod spec `spec` (JSON) of a target of [`every_profile_runs_and_stops_at_expiry`]
/// to `profile`: a Restricted debugger sets `runAsNonRoot` and busybox runs as root, so
/// for it the pod runs as a user that is not root (the debugger inherits it), nginx alone
/// as root.
fn fit_to(profile: Profile, spec: &mut serde_json::Value) {
    if profile == Profile::Restricted {
        spec["securityContext"] = json!({"runAsUser": NON_ROOT_USER});
        spec["containers"][0]["securityContext"] = json!({"runAsUser": 0});
    }
}

/// One case of [`every_profile_runs_and_stops_at_expiry`]: a session with `profile` on
/// `kind` `target`, whose debugger must run with the profile's securityContext, see
/// nginx, and be stopped when the ttl runs out.
async fn profile_case(f: &Fixture, profile: Profile, kind: TargetKind, target: &str) -> Result<()> {
    let name = format!("s-{target}");
    let mut request = session(&name, kind, target, PROFILE_TTL)?;
    request.spec.mode = Mode::Ephemeral;
    request.spec.debugger.profile = profile;
    f.sessions.create(&request).await?;
    let container = naming::container_name(&name);

    let s = f.sessions.wait_active(&name).await?;
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.mode, Some(Mode::Ephemeral), "{name}: {status:#?}");
    let [listed] = status.pods.as_slice() else {
        anyhow::bail!("{name}: one pod expected in status: {status:#?}");
    };
    let source = f.workloads.pods.get(&listed.name).await?;
    let debugger = source
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .with_context(|| format!("{name}: no debugger in pod {}", listed.name))?;
    assert_eq!(
        serde_json::to_value(&debugger.security_context)?,
        security_context(profile),
        "{name}: the debugger must carry the {profile:?} profile's securityContext"
    );
    assert!(
        ephemeral_running(&source, &container),
        "{name}: {:?}",
        ephemeral_states(&source)
    );
    assert_sees_nginx(f, &listed.name, &container).await?;

    // Expiry stops it; the pod keeps only the stopped debugger, nginx untouched.
    f.sessions.wait_expired(&name).await?;
    f.workloads
        .wait_debugger_stopped(&source, &container)
        .await?;
    Ok(())
}

/// Every profile, NetAdmin and SysAdmin included (a policy allows them), through
/// `pods/ephemeralcontainers` on a bare Pod and on a Deployment's pod: the debugger runs
/// with the profile's securityContext and sees nginx, and a short ttl stops it.
#[tokio::test]
async fn every_profile_runs_and_stops_at_expiry() -> Result<()> {
    let f = Fixture::new("eph-profiles").await?;
    let profiles: Vec<String> = PROFILES.iter().map(|p| format!("{p:?}")).collect();
    let policy = f
        .policy("all-profiles", json!({"profiles": profiles}))
        .await?;
    policy.wait_ready("True").await?;

    let mut cases = Vec::new();
    for profile in PROFILES {
        let slug = format!("{profile:?}").to_lowercase();
        let (pod_name, deploy_name) = (format!("p-{slug}"), format!("d-{slug}"));
        let mut pod = serde_json::to_value(nginx_pod(&pod_name, false)?)?;
        fit_to(profile, &mut pod["spec"]);
        let pod: Pod = serde_json::from_value(pod)?;
        let mut deployment = serde_json::to_value(nginx_deployment(&deploy_name, 1)?)?;
        fit_to(profile, &mut deployment["spec"]["template"]["spec"]);
        let deployment: Deployment = serde_json::from_value(deployment)?;
        f.workloads.create_pod(&pod).await?;
        f.workloads.create_deployment(&deployment).await?;
        cases.push((profile, TargetKind::Pod, pod_name));
        cases.push((profile, TargetKind::Deployment, deploy_name));
    }
    try_join_all(
        cases
            .iter()
            .map(|(profile, kind, target)| profile_case(&f, *profile, *kind, target)),
    )
    .await?;
    Ok(())
}
