//! Pods belong to sessions by owner UID, not by name or annotation: a namespace user
//! who may create pods makes a decoy that carries a session's marks and a container
//! named as its debugger, and a pod under a Copy session's future name. Neither is
//! listed, attached to, adopted or deleted; the Copy session fails with NameTaken.

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::json;
use shellcar::crd::{Mode, Phase, TargetKind};
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::attack;
use shellcar_e2e::cluster::is_ready;
use shellcar_e2e::identity::{User, rule_for};
use shellcar_e2e::pod::nginx_pod;
use shellcar_e2e::session::{refusal, session};
use shellcar_e2e::workload::{NGINX_IMAGE, as_user, nginx_deployment, pod_containers};

/// A running pod `name` that a user made to look like session `session`'s: the debugged
/// label, the session's annotation (and, for `copy_of`, the copy's), and a container
/// named as the session's debugger. No owner reference.
fn look_alike(name: &str, session: &str, copy_of: Option<&str>) -> Result<Pod> {
    let container = naming::container_name(session);
    let mut annotations = json!({ naming::session_annotation(&container): session });
    if let Some(source) = copy_of {
        annotations[naming::COPY_OF_ANNOTATION] = json!(source);
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {naming::DEBUGGED_LABEL: "true"},
            "annotations": annotations,
        },
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": container, "image": NGINX_IMAGE,
                            "imagePullPolicy": "IfNotPresent"}],
        },
    }))?)
}

/// A user of the test's namespace who may create, read and delete pods there, and do
/// nothing else.
async fn pod_maker(f: &Fixture) -> Result<User> {
    let user = User::create(&f.cluster, f.ns(), "mallory").await?;
    user.grant(
        "mallory-pods",
        vec![rule_for::<Pod>(&["create", "get", "list", "delete"], &[])],
    )
    .await?;
    Ok(user)
}

/// Creates `pod` as `user` and waits until it runs; returns it as the admin sees it.
async fn create_as(f: &Fixture, user: &User, pod: &Pod) -> Result<Pod> {
    let name = pod.name_any();
    Api::<Pod>::namespaced(user.client.clone(), f.ns())
        .create(&as_user(), pod)
        .await
        .with_context(|| format!("creating Pod {name} as {}", user.username))?;
    f.workloads.wait_pod(&name, "Ready", is_ready).await
}

/// Asserts that pod `before` is still there, the same object (UID), with its containers.
async fn assert_left_alone(f: &Fixture, before: &Pod) -> Result<()> {
    let name = before.name_any();
    let now = f
        .workloads
        .pods
        .get_opt(&name)
        .await?
        .with_context(|| format!("pod {name} was deleted"))?;
    assert_eq!(now.uid(), before.uid(), "pod {name} was replaced");
    assert!(
        now.metadata.deletion_timestamp.is_none(),
        "pod {name} is being deleted"
    );
    assert_eq!(
        pod_containers(&now),
        pod_containers(before),
        "pod {name} was changed"
    );
    assert!(
        now.spec
            .as_ref()
            .and_then(|s| s.ephemeral_containers.as_ref())
            .is_none_or(Vec::is_empty),
        "pod {name} got an ephemeral container"
    );
    Ok(())
}

#[tokio::test]
async fn a_decoy_with_a_sessions_marks_is_never_listed_or_attached() -> Result<()> {
    let f = Fixture::new("ownership-decoy").await?;
    f.workloads
        .create_deployment(&nginx_deployment("web", 1)?)
        .await?;
    let user = pod_maker(&f).await?;
    // Named to sort before every pod of web, marked for the session before it exists.
    let decoy = create_as(&f, &user, &look_alike("a-decoy", "dbg", None)?).await?;

    let container = f.debug_deployment("dbg", "web", "30m").await?;
    let active = f.sessions.api.get("dbg").await?;
    let status = active.status.context("no status")?;
    let listed: Vec<&str> = status.pods.iter().map(|p| p.name.as_str()).collect();
    attack::record(
        "a decoy pod with a session's label, annotation and debugger container, sorting first",
        "never listed or attached (pods belong by owner UID)",
        format!("status.pods: {listed:?}"),
        !listed.is_empty()
            && status
                .pods
                .iter()
                .all(|p| p.name != "a-decoy" && !p.attach.contains("a-decoy")),
    );
    assert!(!status.pods.is_empty(), "{status:#?}");
    for listed in &status.pods {
        assert_ne!(listed.name, "a-decoy", "the decoy is listed: {status:#?}");
        assert!(!listed.attach.contains("a-decoy"), "{status:#?}");
        let pod = f.workloads.pods.get(&listed.name).await?;
        let controller = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .with_context(|| format!("listed pod {} has no controller", listed.name))?;
        assert_eq!(controller.kind, "ReplicaSet", "{pod:#?}");
        assert!(pod_containers(&pod).contains(&container));
    }
    assert_left_alone(&f, &decoy).await?;

    f.sessions.delete_and_wait_gone("dbg").await?;
    assert_left_alone(&f, &decoy).await
}

#[tokio::test]
async fn a_pod_under_a_copys_name_is_not_adopted_or_deleted() -> Result<()> {
    let (f, _source) = Fixture::with_pod("ownership-copy", "web", true).await?;
    let user = pod_maker(&f).await?;
    // Made before the session: its name, its marks, its debugger's container. The
    // webhook's dry run of the copy meets it, and the session is refused at apply.
    let early = create_as(
        &f,
        &user,
        &look_alike(&naming::copy_name("early"), "early", Some("web"))?,
    )
    .await?;
    let mut request = session("early", TargetKind::Pod, "web", "30m")?;
    request.spec.mode = Mode::Copy;
    let refused = refusal(
        "a copy whose name is taken",
        f.sessions.api.create(&Default::default(), &request).await,
    )?;
    attack::record(
        "a pod pre-created under a Copy session's name, before the session",
        "the session refused at apply time (the copy's name is taken)",
        &refused.message,
        refused.message.contains("already exists"),
    );
    assert!(
        refused.message.contains("already exists"),
        "{}",
        refused.message
    );
    assert_left_alone(&f, &early).await?;

    // Made while the session waits for its target: the operator meets it.
    let copy_name = naming::copy_name("cp");
    let mut request = session("cp", TargetKind::Pod, "later", "30m")?;
    request.spec.mode = Mode::Copy;
    f.sessions.create(&request).await?;
    let taken = create_as(&f, &user, &look_alike(&copy_name, "cp", Some("later"))?).await?;
    f.workloads.create_pod(&nginx_pod("later", true)?).await?;
    let refused = f
        .sessions
        .wait_refused("cp", Phase::Failed, "NameTaken")
        .await?;
    let status = refused.status.context("no status")?;
    attack::record(
        "a pod created under a waiting Copy session's name",
        "session Failed (NameTaken), the pod neither adopted nor listed",
        format!("phase {:?}, status.pods: {:?}", status.phase, status.pods),
        status.phase == Some(Phase::Failed) && status.pods.is_empty(),
    );
    assert!(
        status.pods.is_empty(),
        "a pod the session does not own is listed: {status:#?}"
    );
    let event = f
        .events
        .wait_for("DebugSession", "cp", "Warning", "NameTaken")
        .await?;
    assert!(
        event
            .message
            .contains(&format!("pod {copy_name} already exists")),
        "{event:?}"
    );
    assert_left_alone(&f, &taken).await?;

    // Teardown of the refused session leaves the pod, as does its deletion.
    f.sessions.delete_and_wait_gone("cp").await?;
    assert_left_alone(&f, &taken).await
}
