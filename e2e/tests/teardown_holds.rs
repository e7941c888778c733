//! Teardown that happens, and says so when it cannot (issue 18, item 4), run on the real
//! cluster as a requester would attack it:
//! - an Ephemeral debugger whose shell breaks the tools its own stop relies on (`cat`, the
//!   deadline file) is still stopped at its ttl, from the operator's image, and the
//!   target's processes run on;
//! - an Ephemeral debugger whose session's finalizer a cluster admin stripped is stopped
//!   and its marks released by the leader's periodic orphan sweep;
//! - a Sidecar debugger on a ReplicaSet, which never replaces its pods by itself, is
//!   reported as left behind in status and a Warning Event, never as removed; with
//!   `teardown.sidecar: Recycle` it is evicted and replaced from the restored template.

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use shellcar::crd::{Mode, SidecarTeardown, TargetKind};
use shellcar::naming;
use shellcar_e2e::cluster::{OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE};
use shellcar_e2e::exec;
use shellcar_e2e::pod::{
    ephemeral_running, ephemeral_states, ephemeral_terminated, running_instance, shellcar_marks,
};
use shellcar_e2e::session::session;
use shellcar_e2e::workload::{as_user, nginx_template, pod_containers, template_containers};
use shellcar_e2e::{Fixture, attack};

/// The debugger's command: push the watchdog's deadline far out (it reads it from a file
/// in the debugger's filesystem), replace `sh` (with which the in-image stop runs, through
/// exec) by a script that does nothing and succeeds, then stay. (busybox runs `cat`
/// inside its own shell, so replacing `/bin/cat` would change nothing.)
const TAMPER: &str = "echo 99999999999 > /tmp/.shellcar-deadline && rm /bin/sh && printf '#!/bin/busybox sh\\nexit 0\\n' > /bin/sh && chmod 755 /bin/sh && exec sleep 100000";

/// The image the operator runs, as its Deployment names it.
async fn operator_image(f: &Fixture) -> Result<String> {
    let deployments: Api<Deployment> =
        Api::namespaced(f.cluster.client.clone(), OPERATOR_NAMESPACE);
    let operator = deployments.get(OPERATOR_DEPLOYMENT).await?;
    operator
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image)
        .context("the operator's Deployment names no image")
}

#[tokio::test]
async fn an_ephemeral_debugger_that_breaks_its_own_stop_is_stopped_at_its_ttl() -> Result<()> {
    let (f, source) = Fixture::with_pod("eph-tamper", "web", false).await?;
    let nginx_before = running_instance(&source, "nginx").context("nginx is not running")?;
    let mut request = session("tamper", TargetKind::Pod, "web", "40s")?;
    request.spec.mode = Mode::Ephemeral;
    request.spec.debugger.command = Some(vec!["sh".to_owned(), "-c".to_owned(), TAMPER.to_owned()]);
    f.sessions.create(&request).await?;
    let container = naming::container_name("tamper");
    let stopper = naming::stopper_name("tamper");
    f.sessions.wait_active("tamper").await?;

    // The attack is in place: `sh` in the debugger runs nothing, and the deadline is moved.
    let pods = &f.workloads.pods;
    let said = exec::exec(pods, "web", &container, &["sh", "-c", "echo alive"]).await?;
    assert_eq!(said, "", "the debugger's sh was not replaced");
    let deadline = exec::exec(
        pods,
        "web",
        &container,
        &["busybox", "cat", "/tmp/.shellcar-deadline"],
    )
    .await?;
    assert_eq!(deadline.trim(), "99999999999");

    // The ttl runs out: the operator's stopper ends the debugger all the same.
    let expired = f.sessions.wait_expired("tamper").await?;
    let after = f
        .workloads
        .wait_debugger_stopped(&source, &container)
        .await?;
    assert!(ephemeral_terminated(&after, &container));
    let spec = after.spec.as_ref().context("no pod spec")?;
    let added = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .find(|c| c.name == stopper)
        .with_context(|| format!("no stopper {stopper}: {:?}", ephemeral_states(&after)))?;
    assert_eq!(
        added.image.as_deref(),
        Some(operator_image(&f).await?.as_str()),
        "the stopper runs the operator's own image"
    );
    assert_eq!(added.target_container_name.as_deref(), Some("nginx"));
    assert!(
        !ephemeral_running(&after, &stopper),
        "{:?}",
        ephemeral_states(&after)
    );
    assert_eq!(
        running_instance(&after, "nginx"),
        Some(nginx_before.clone()),
        "the target's processes run on, never restarted"
    );
    let status = expired.status.context("no status")?;
    attack::record(
        "the requester moves the Ephemeral debugger's deadline file and replaces its sh, to outlive the ttl",
        "stopped at the ttl by a stopper from the operator's image; the target runs on",
        format!(
            "debugger {}; leftovers: {:?}",
            ephemeral_states(&after)
                .get(&container)
                .map_or("absent", String::as_str),
            status.leftovers
        ),
        ephemeral_terminated(&after, &container)
            && running_instance(&after, "nginx") == Some(nginx_before.clone()),
    );
    assert!(
        status
            .leftovers
            .iter()
            .any(|l| l.contains(&format!("was stopped by {stopper}"))),
        "status says who stopped the debugger: {:?}",
        status.leftovers
    );
    Ok(())
}

#[tokio::test]
async fn an_orphaned_ephemeral_debugger_is_stopped_by_the_sweep() -> Result<()> {
    let (f, source) = Fixture::with_pod("eph-orphan", "web", false).await?;
    let mut request = session("lost", TargetKind::Pod, "web", "30m")?;
    request.spec.mode = Mode::Ephemeral;
    f.sessions.create(&request).await?;
    let container = naming::container_name("lost");
    f.sessions.wait_active("lost").await?;

    // As the cluster admin: strip the finalizer, then delete. No teardown runs.
    f.sessions.strip_finalizers("lost").await?;
    f.sessions.delete_and_wait_gone("lost").await?;
    let live = f.workloads.pods.get("web").await?;
    assert!(
        ephemeral_running(&live, &container),
        "the debugger must still run for this test: {:?}",
        ephemeral_states(&live)
    );

    // The leader's sweep (every 30 s here) stops it and releases the pod's marks.
    let after = f
        .workloads
        .wait_debugger_stopped(&source, &container)
        .await?;
    let after = f
        .workloads
        .wait_pod("web", "without shellcar's marks", |p| {
            shellcar_marks(p).is_empty()
        })
        .await
        .with_context(|| format!("marks left: {:?}", shellcar_marks(&after)))?;
    let event = f
        .events
        .wait_for("Pod", "web", "Warning", "OrphanRemoved")
        .await?;
    attack::record(
        "a cluster admin strips an Ephemeral session's finalizer and deletes it, stranding its debugger",
        "the leader's orphan sweep stops the debugger and releases the pod's marks, Event OrphanRemoved",
        format!(
            "debugger terminated: {}; Event: {}",
            ephemeral_terminated(&after, &container),
            event.message
        ),
        ephemeral_terminated(&after, &container) && shellcar_marks(&after).is_empty(),
    );
    assert!(ephemeral_terminated(&after, &container));
    assert!(
        event.message.contains("no DebugSession lost exists"),
        "{event:?}"
    );
    Ok(())
}

/// The pod template of ReplicaSet `web`, as JSON.
async fn template(sets: &Api<ReplicaSet>) -> Result<serde_json::Value> {
    let rs = sets.get("web").await?;
    let template = rs.spec.and_then(|s| s.template).context("no template")?;
    Ok(serde_json::to_value(template)?)
}

/// A ReplicaSet `web` of one nginx pod in `f`'s namespace, and a Sidecar session `name`
/// on it (ttl 90 s, teardown.sidecar `teardown`) whose debugger runs in the pod that
/// replaced the first one (the ReplicaSet never replaces pods by itself). Returns the
/// ReplicaSets' Api, the template before the session, the debugged pod and the debugger.
async fn replica_set_debugged(
    f: &Fixture,
    name: &str,
    teardown: SidecarTeardown,
) -> Result<(Api<ReplicaSet>, serde_json::Value, Pod, String)> {
    let sets: Api<ReplicaSet> = Api::namespaced(f.cluster.client.clone(), f.ns());
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": nginx_template("web"),
        },
    }))?;
    sets.create(&as_user(), &rs).await?;
    let first = f
        .workloads
        .wait_pods("app=web", 1, "before the session", |_| true)
        .await?;
    let template_before = template(&sets).await?;

    let mut request = session(name, TargetKind::ReplicaSet, "web", "90s")?;
    request.spec.mode = Mode::Sidecar;
    request.spec.teardown.sidecar = teardown;
    f.sessions.create(&request).await?;
    let container = naming::container_name(name);
    // The ReplicaSet takes the new template only for new pods: replace the one it has.
    f.sessions
        .wait(name, "the debugger in the ReplicaSet's template", |s| {
            s.status.as_ref().is_some_and(|st| st.mode.is_some())
        })
        .await?;
    let injected = template(&sets).await?;
    assert!(
        template_containers(&injected).contains(&container),
        "{injected:#}"
    );
    f.workloads
        .pods
        .delete(&first[0].name_any(), &DeleteParams::default())
        .await?;
    let debugged = f
        .workloads
        .wait_pods("app=web", 1, "with the debugger", |p: &Pod| {
            pod_containers(p).contains(&container)
        })
        .await?;
    f.sessions.wait_active(name).await?;
    let pod = debugged.into_iter().next().context("no debugged pod")?;
    Ok((sets, template_before, pod, container))
}

#[tokio::test]
async fn sidecar_pods_a_replicaset_keeps_are_reported_left_behind() -> Result<()> {
    let f = Fixture::new("rs-left").await?;
    let (sets, template_before, debugged, container) =
        replica_set_debugged(&f, "left", SidecarTeardown::Leave).await?;

    let expired = f.sessions.wait_expired("left").await?;
    // The template is restored; the pod the ReplicaSet keeps still runs the debugger, and
    // status and Events say so.
    let template_after = template(&sets).await?;
    assert_eq!(template_after, template_before, "the template is restored");
    let pod = f.workloads.pods.get(&debugged.name_any()).await?;
    assert!(pod_containers(&pod).contains(&container));
    let status = expired.status.context("no status")?;
    let line = format!("pod {} still runs the debugger {container}", pod.name_any());
    assert!(
        status.leftovers.iter().any(|l| l.starts_with(&line)),
        "leftovers: {:?}",
        status.leftovers
    );
    let message = status.message.unwrap_or_default();
    attack::record(
        "Sidecar on a ReplicaSet: a pod it keeps still runs the debugger after teardown",
        "listed in status.leftovers and the message, never reported as removed",
        &message,
        status.leftovers.iter().any(|l| l.starts_with(&line))
            && message.contains("except what status.leftovers lists"),
    );
    assert!(
        message.contains("except what status.leftovers lists") && message.contains(&line),
        "the message must not say plainly that the debugger was removed: {message}"
    );
    let event = f
        .events
        .wait_for("DebugSession", "left", "Warning", "LeftBehind")
        .await?;
    assert!(event.message.contains(&line), "{event:?}");
    Ok(())
}

#[tokio::test]
async fn sidecar_recycle_evicts_the_pods_a_replicaset_keeps() -> Result<()> {
    let f = Fixture::new("rs-recycle").await?;
    let (sets, template_before, debugged, container) =
        replica_set_debugged(&f, "recycled", SidecarTeardown::Recycle).await?;

    let expired = f.sessions.wait_expired("recycled").await?;
    assert_eq!(
        template(&sets).await?,
        template_before,
        "the template is restored"
    );
    let status = expired.status.context("no status")?;
    let line = format!(
        "pod {} was evicted to drop the debugger {container}",
        debugged.name_any()
    );
    assert!(
        status.leftovers.iter().any(|l| l.starts_with(&line)),
        "leftovers: {:?}",
        status.leftovers
    );
    // The ReplicaSet replaces it from the restored template: no debugger anywhere.
    let replaced = f
        .workloads
        .wait_pods("app=web", 1, "replaced without the debugger", |p: &Pod| {
            !pod_containers(p).contains(&container) && p.uid() != debugged.uid()
        })
        .await?;
    assert_eq!(pod_containers(&replaced[0]), ["nginx"]);
    Ok(())
}
