//! Applying and tearing down each mode: the I/O half of the pipeline. What to send is
//! built by the pure modules ([`inject`], [`ephemeral`], [`copy`]); this module sends it.

use futures::TryFutureExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, AttachParams, DeleteParams, DynamicObject, EvictParams, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::crd::{
    DebugPod, DebugSession, DebugSessionSpec, EphemeralTeardown, PodSelection, ResolvedTarget,
    TargetKind,
};
use crate::reconcile::{Context, Error, publish};
use crate::validate::{self, Capabilities, Invalid, MAX_PODS, Plan};
use crate::workload::{self, Rollout, Workload};
use crate::{copy, ephemeral, inject, naming, status};

/// Everything one apply needs to know about its session.
pub struct Request<'a> {
    pub ctx: &'a Context,
    pub session: &'a DebugSession,
    pub ns: &'a str,
    pub name: String,
    pub plan: &'a Plan,
    pub container: String,
    pub manager: String,
    /// When the session expires.
    pub expires_at: jiff::Timestamp,
    /// When the session expired according to its status before this reconcile.
    pub previous_expires_at: Option<jiff::Timestamp>,
    pub previous_target: Option<&'a ResolvedTarget>,
}

impl Request<'_> {
    fn spec(&self) -> &DebugSessionSpec {
        &self.session.spec
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }
}

/// What applying a mode found.
pub enum Outcome {
    /// The debugger is in place (or on its way) in these pods.
    Applied {
        target: ResolvedTarget,
        pods: Vec<DebugPod>,
        note: Option<String>,
    },
    /// The target (or a pod of it) is not there.
    Missing { message: String },
    /// The session cannot be carried out against this target.
    Refused {
        reason: &'static str,
        message: String,
    },
}

impl From<Invalid> for Outcome {
    fn from(invalid: Invalid) -> Self {
        Outcome::Refused {
            reason: invalid.reason(),
            message: invalid.to_string(),
        }
    }
}

fn pod_error(action: &'static str, pod: &str) -> impl FnOnce(kube::Error) -> Error {
    let pod = pod.to_owned();
    move |source| Error::Pod {
        action,
        pod,
        source,
    }
}

/// The pods of the namespace that carry the session's debugger.
async fn debug_pods(req: &Request<'_>) -> Result<Vec<DebugPod>, Error> {
    let pods = req
        .pods()
        .list(&ListParams::default().labels(naming::DEBUGGED_LABEL))
        .await
        .map_err(Error::Pods)?;
    Ok(status::debug_pods(
        &pods.items,
        req.ns,
        &req.name,
        &req.container,
    ))
}

fn resolved(kind: TargetKind, name: &str, uid: Option<String>) -> ResolvedTarget {
    ResolvedTarget {
        kind,
        name: name.to_owned(),
        uid,
    }
}

/// Sidecar: the debugger joins the workload's pod template.
pub async fn sidecar(req: &Request<'_>) -> Result<Outcome, Error> {
    let spec = req.spec();
    let kind = spec.target.kind;
    let Some(workload) = workload::fetch(&req.ctx.client, req.ns, kind, &spec.target.name)
        .await?
        .filter(|w| !w.deleting)
    else {
        return Ok(missing(req));
    };
    if let Some(previous) = req.previous_target.and_then(|t| t.uid.as_ref())
        && workload.uid.as_ref() != Some(previous)
    {
        let note = format!(
            "{kind} {} was deleted and created again; injecting into the new one",
            workload.name
        );
        publish(
            req.ctx,
            req.session,
            EventType::Warning,
            "TargetRecreated",
            note,
        )
        .await;
    }
    if let Err(invalid) = validate::target(spec, &workload) {
        return Ok(invalid.into());
    }
    let debugger = inject::debugger_container(&spec.debugger, &req.container, &req.plan.image);
    let claim_sharing = inject::claims_share_process_namespace(
        workload
            .template
            .spec
            .as_ref()
            .and_then(|s| s.share_process_namespace),
        &workload.managed_fields,
    );
    let intent = inject::sidecar_intent(kind, &workload.name, &req.name, &debugger, claim_sharing);
    let Some(api) = workload::api(&req.ctx.client, req.ns, kind) else {
        return Ok(missing(req));
    };
    let params = PatchParams::apply(&req.manager);
    match api
        .patch(&workload.name, &params, &Patch::Apply(&intent))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            return Ok(Outcome::Refused {
                reason: "Conflict",
                message: format!(
                    "{kind} {}: another field manager owns a field the debugger needs: {}",
                    workload.name, status.message
                ),
            });
        }
        Err(source) => {
            return Err(Error::Apply {
                kind,
                name: workload.name.clone(),
                source,
            });
        }
    }
    let pods = debug_pods(req).await?;
    Ok(Outcome::Applied {
        note: rollout_note(&workload, pods.is_empty()),
        target: resolved(kind, &workload.name, workload.uid.clone()),
        pods,
    })
}

fn missing(req: &Request<'_>) -> Outcome {
    let target = &req.spec().target;
    let message = match req.previous_target {
        Some(t) if t.uid.is_some() => format!(
            "{} {} was deleted; the session waits for it to be created again",
            target.kind, target.name
        ),
        _ => format!(
            "{} {} not found in namespace {}",
            target.kind, target.name, req.ns
        ),
    };
    Outcome::Missing { message }
}

/// What a person should know when the template changed but pods may not follow.
fn rollout_note(workload: &Workload, no_pods: bool) -> Option<String> {
    (workload.rollout == Rollout::OnDelete && no_pods).then(|| {
        format!(
            "{} {} replaces pods only when they are deleted: delete a pod to get the debugger",
            workload.kind, workload.name
        )
    })
}

/// The target as a list of live pods: the Pod itself, or the workload's pods.
async fn target_pods(req: &Request<'_>) -> Result<Option<(ResolvedTarget, Vec<Pod>)>, Error> {
    let target = &req.spec().target;
    if target.kind == TargetKind::Pod {
        let pod = req
            .pods()
            .get_opt(&target.name)
            .await
            .map_err(pod_error("reading", &target.name))?;
        return Ok(pod.map(|p| (resolved(TargetKind::Pod, &target.name, p.uid()), vec![p])));
    }
    let Some(workload) =
        workload::fetch(&req.ctx.client, req.ns, target.kind, &target.name).await?
    else {
        return Ok(None);
    };
    let target = resolved(target.kind, &workload.name, workload.uid.clone());
    // Without a selector the workload owns no pods we can find; never list them all.
    let Some(selector) = &workload.selector else {
        return Ok(Some((target, Vec::new())));
    };
    let pods = req
        .pods()
        .list(&ListParams::default().labels_from(selector))
        .await
        .map_err(Error::Pods)?;
    Ok(Some((target, pods.items)))
}

/// The pods to debug: those already debugged by this session first (so the choice is
/// stable across reconciles), then running pods by name, up to the selection's count.
fn select(pods: Vec<Pod>, req: &Request<'_>) -> Vec<Pod> {
    let count = match req.spec().pods {
        PodSelection::One => 1,
        PodSelection::All => MAX_PODS,
    };
    let annotation = naming::session_annotation(&req.container);
    let mine = |p: &Pod| p.annotations().get(&annotation) == Some(&req.name);
    let running = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let mut live: Vec<Pod> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by_key(|p| (!mine(p), p.name_any()));
    live.into_iter()
        .filter(|p| mine(p) || running(p))
        .take(count)
        .collect()
}

/// The pod-metadata intent that marks a pod as debugged by the session, so the operator
/// watches it and teardown finds it; the session's manager owns it.
fn mark_intent(pod: &str, req: &Request<'_>) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod,
            "labels": { naming::DEBUGGED_LABEL: "true" },
            "annotations": { naming::session_annotation(&req.container): req.name },
        }
    })
}

/// Ephemeral: an ephemeral container in each selected running pod.
pub async fn ephemeral(req: &Request<'_>, caps: Capabilities) -> Result<Outcome, Error> {
    let Some((target, pods)) = target_pods(req).await? else {
        return Ok(missing(req));
    };
    let pods = select(pods, req);
    if pods.is_empty() {
        return Ok(Outcome::Missing {
            message: format!("{} {} has no running pod", target.kind, target.name),
        });
    }
    if let Err(invalid) = validate::pods(req.spec(), &pods) {
        return Ok(invalid.into());
    }
    let base = inject::debugger_container(&req.spec().debugger, &req.container, &req.plan.image);
    let mut notes = Vec::new();
    for pod in &pods {
        let pod_name = pod.name_any();
        let target_container = req
            .spec()
            .target
            .container
            .clone()
            .or_else(|| {
                pod.spec
                    .as_ref()?
                    .containers
                    .first()
                    .map(|c| c.name.clone())
            })
            .unwrap_or_default();
        let containers: Vec<&str> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.as_str()))
            .collect();
        if let Err(invalid) =
            validate::container_exists(TargetKind::Pod, &pod_name, &containers, &target_container)
        {
            return Ok(invalid.into());
        }
        // The marked pod, not the one read before: the legacy body carries its
        // resourceVersion, and an older one would be refused with a conflict.
        let pod = &req
            .pods()
            .patch(
                &pod_name,
                &PatchParams::apply(&req.manager),
                &Patch::Apply(mark_intent(&pod_name, req)),
            )
            .await
            .map_err(pod_error("marking", &pod_name))?;
        match ephemeral::state(pod, &req.container) {
            ephemeral::State::Running
                if req
                    .previous_expires_at
                    .is_some_and(|previous| previous != req.expires_at) =>
            {
                if let Err(e) = extend(req, &pod_name).await {
                    notes.push(format!(
                        "the ephemeral debugger in pod {pod_name} keeps its old deadline: {e}"
                    ));
                }
                continue;
            }
            ephemeral::State::Absent => {}
            _ => continue,
        }
        let mut added = ephemeral::container(&base, &target_container, req.expires_at.as_second());
        if caps.legacy_ephemeral_api {
            // Before 1.23 the API server forbids a securityContext on ephemeral containers.
            added.security_context = None;
        }
        if let Err(refusal) = add_ephemeral(req, caps, pod, &added).await? {
            return Ok(refusal);
        }
        info!(pod = %pod_name, container = %req.container, "added an ephemeral debugger");
    }
    let debugged = debug_pods(req).await?;
    let ended: Vec<&str> = pods
        .iter()
        .filter(|p| ephemeral::state(p, &req.container) == ephemeral::State::Terminated)
        .map(|p| p.metadata.name.as_deref().unwrap_or_default())
        .collect();
    if !ended.is_empty() {
        notes.push(format!(
            "the ephemeral debugger has ended in pod {}; Kubernetes cannot start it again",
            ended.join(", ")
        ));
    }
    if caps.legacy_ephemeral_api && base.security_context.is_some() {
        notes.push(format!(
            "this API server predates 1.23 and refuses a securityContext on ephemeral containers, so profile {:?} is not applied",
            req.spec().debugger.profile
        ));
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(Outcome::Applied {
        target,
        pods: debugged,
        note,
    })
}

/// Adds ephemeral container `added` to `pod`, in the shape the API server takes. A body
/// the API server finds invalid is a refusal (retrying would not help), not an error.
async fn add_ephemeral(
    req: &Request<'_>,
    caps: Capabilities,
    pod: &Pod,
    added: &k8s_openapi::api::core::v1::EphemeralContainer,
) -> Result<Result<(), Outcome>, Error> {
    let pod_name = pod.name_any();
    let api: Api<DynamicObject> = Api::namespaced_with(
        req.ctx.client.clone(),
        req.ns,
        &ApiResource::erase::<Pod>(&()),
    );
    let result = if caps.legacy_ephemeral_api {
        let body = ephemeral::legacy_body(pod, added);
        api.replace_subresource(
            "ephemeralcontainers",
            &pod_name,
            &PostParams::default(),
            &body,
        )
        .await
    } else {
        api.patch_subresource(
            "ephemeralcontainers",
            &pod_name,
            &PatchParams::default(),
            &Patch::Strategic(ephemeral::patch_body(added)),
        )
        .await
    };
    match result {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(status)) if status.code == 422 => Ok(Err(Outcome::Refused {
            reason: "EphemeralContainerInvalid",
            message: format!(
                "pod {pod_name} refused the ephemeral debugger: {}",
                status.message
            ),
        })),
        Err(e) => Err(pod_error("adding an ephemeral container to", &pod_name)(e)),
    }
}

/// Copy: a debuggable copy of one pod of the target.
pub async fn copy(req: &Request<'_>) -> Result<Outcome, Error> {
    let copy_name = naming::copy_name(&req.name);
    let annotation = naming::session_annotation(&req.container);
    let existing = req
        .pods()
        .get_opt(&copy_name)
        .await
        .map_err(pod_error("reading", &copy_name))?;
    let Some((target, pods)) = target_pods(req).await? else {
        if existing.is_some() {
            // The copy outlives its source: it is a copy.
            let pods = debug_pods(req).await?;
            let target = req
                .previous_target
                .cloned()
                .unwrap_or_else(|| resolved(req.spec().target.kind, &req.spec().target.name, None));
            return Ok(Outcome::Applied {
                target,
                pods,
                note: Some("the copied pod no longer exists".to_owned()),
            });
        }
        return Ok(missing(req));
    };
    match existing {
        Some(pod) if pod.annotations().get(&annotation) != Some(&req.name) => {
            return Ok(Outcome::Refused {
                reason: "NameConflict",
                message: format!("pod {copy_name} exists and is not this session's copy"),
            });
        }
        Some(_) => {}
        None => {
            let Some(source) = select(pods, req).into_iter().next() else {
                return Ok(Outcome::Missing {
                    message: format!("{} {} has no running pod to copy", target.kind, target.name),
                });
            };
            if let Some(spec) = &source.spec
                && spec.host_pid == Some(true)
            {
                return Ok(Invalid::HostPid {
                    kind: TargetKind::Pod,
                    name: source.name_any(),
                }
                .into());
            }
            let debugger =
                inject::debugger_container(&req.spec().debugger, &req.container, &req.plan.image);
            let mut owner = req
                .session
                .controller_owner_ref(&())
                .ok_or(Error::NoNamespace)?;
            // Setting blockOwnerDeletion needs rights on the session's finalizers.
            owner.block_owner_deletion = None;
            let pod = copy::build(&source, &req.name, &copy_name, &debugger, owner);
            match req.pods().create(&PostParams::default(), &pod).await {
                Ok(_) => info!(copy = %copy_name, source = %source.name_any(), "created a copy"),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(pod_error("creating", &copy_name)(e)),
            }
        }
    }
    Ok(Outcome::Applied {
        target,
        pods: debug_pods(req).await?,
        note: None,
    })
}

/// Removes whatever any mode of the session put in place; returns what remains and why.
///
/// Every mode is undone, whichever the session uses now: teardown needs no memory of what
/// was done, so it is complete after a crash or a change of mode. Each step is idempotent.
pub async fn teardown(
    ctx: &Context,
    session: &DebugSession,
    ns: &str,
) -> Result<Vec<String>, Error> {
    let name = session.name_any();
    let manager = naming::field_manager(&name);
    let container = naming::container_name(&name);
    let target = &session.spec.target;
    if target.kind.is_workload() {
        teardown_sidecar(ctx, ns, target.kind, &target.name, &manager).await?;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    // Copy
    let copy_name = naming::copy_name(&name);
    if let Some(copy) = pods
        .get_opt(&copy_name)
        .await
        .map_err(pod_error("reading", &copy_name))?
        && copy
            .annotations()
            .get(&naming::session_annotation(&container))
            == Some(&name)
        && copy.metadata.deletion_timestamp.is_none()
    {
        match pods.delete(&copy_name, &DeleteParams::default()).await {
            Ok(_) => info!(copy = %copy_name, "deleted the copy"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(pod_error("deleting", &copy_name)(e)),
        }
    }
    // Ephemeral: every pod of the namespace with this session's ephemeral container.
    let mut leftovers = Vec::new();
    let all = pods
        .list(&ListParams::default())
        .await
        .map_err(Error::Pods)?;
    for pod in all.items.iter().filter(|p| {
        ephemeral::state(p, &container) != ephemeral::State::Absent
            && p.metadata.deletion_timestamp.is_none()
    }) {
        let line = teardown_ephemeral(&pods, pod, &container, &manager, &session.spec).await?;
        leftovers.push(line);
    }
    Ok(leftovers)
}

/// Stops the ephemeral debugger in `pod`, applies the teardown policy and releases the
/// pod; returns the sentence status keeps about it.
async fn teardown_ephemeral(
    pods: &Api<Pod>,
    pod: &Pod,
    container: &str,
    manager: &str,
    spec: &DebugSessionSpec,
) -> Result<String, Error> {
    let pod_name = pod.name_any();
    let mut line = String::new();
    if ephemeral::state(pod, container) != ephemeral::State::Terminated
        && let Err(e) = stop(pods, &pod_name, container).await
        && !stopped_anyway(pods, &pod_name, container).await
    {
        // The debugger stops by itself at expiry: say so rather than hold the session.
        warn!(pod = %pod_name, error = %crate::reconcile::error_chain(&e), "could not stop the debugger");
        line = format!(
            "the ephemeral debugger {container} in pod {pod_name} could not be stopped now ({e}); it stops by itself when the session would have expired. "
        );
    }
    line += &match spec.teardown.ephemeral {
        EphemeralTeardown::Leave => format!(
            "pod {pod_name} keeps the stopped ephemeral container {container}: Kubernetes cannot remove ephemeral containers"
        ),
        EphemeralTeardown::Label => {
            let patch = json!({"metadata": {"labels": {naming::EPHEMERAL_DEBUGGED_LABEL: "true"}}});
            let params = PatchParams {
                field_manager: Some(naming::CONTROLLER_MANAGER.to_owned()),
                ..Default::default()
            };
            pods.patch(&pod_name, &params, &Patch::Merge(&patch))
                .await
                .map_err(pod_error("labelling", &pod_name))?;
            format!(
                "pod {pod_name} keeps the stopped ephemeral container {container} and is labelled {}=true",
                naming::EPHEMERAL_DEBUGGED_LABEL
            )
        }
        EphemeralTeardown::Recycle => {
            pods.evict(&pod_name, &EvictParams::default())
                .await
                .map_err(pod_error("evicting", &pod_name))?;
            info!(pod = %pod_name, "evicted the debugged pod");
            format!(
                "pod {pod_name} was evicted to drop the stopped ephemeral container {container}; its controller replaces it"
            )
        }
    };
    if spec.teardown.ephemeral != EphemeralTeardown::Recycle
        && inject::has_fields(pod.managed_fields(), manager)
    {
        let release = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name}});
        pods.patch(
            &pod_name,
            &PatchParams::apply(manager),
            &Patch::Apply(release),
        )
        .await
        .map_err(pod_error("releasing", &pod_name))?;
    }
    Ok(line)
}

/// Moves the deadline of the running ephemeral debugger in `pod` to the session's expiry.
async fn extend(req: &Request<'_>, pod: &str) -> Result<(), Error> {
    run(
        &req.pods(),
        pod,
        &req.container,
        ephemeral::extend_command(req.expires_at.as_second()),
    )
    .await?;
    info!(%pod, container = %req.container, expires_at = %req.expires_at, "moved the ephemeral debugger's deadline");
    Ok(())
}

/// True when the debugger ended by other means, e.g. its own expiry watchdog racing the
/// exec that was to stop it.
async fn stopped_anyway(pods: &Api<Pod>, pod: &str, container: &str) -> bool {
    for _ in 0..5 {
        match pods.get_opt(pod).await {
            Ok(Some(p)) if ephemeral::state(&p, container) == ephemeral::State::Terminated => {
                return true;
            }
            Ok(None) => return true,
            _ => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
    false
}

/// Stops a running ephemeral debugger through exec.
async fn stop(pods: &Api<Pod>, pod: &str, container: &str) -> Result<(), Error> {
    run(pods, pod, container, ephemeral::stop_command()).await?;
    info!(%pod, %container, "stopped the ephemeral debugger");
    Ok(())
}

/// Runs `command` in `container` of `pod` through exec and waits for it to end.
async fn run(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: Vec<String>,
) -> Result<(), Error> {
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let process = pods
        .exec(pod, command, &params)
        .map_err(pod_error("running a command in", pod))
        .await?;
    process.join().await.map_err(|e| Error::Stop {
        pod: pod.to_owned(),
        message: e.to_string(),
    })
}

/// Removes everything `manager` owns on the workload, if it exists and the manager owns
/// anything.
async fn teardown_sidecar(
    ctx: &Context,
    ns: &str,
    kind: TargetKind,
    name: &str,
    manager: &str,
) -> Result<(), Error> {
    let Some(workload) = workload::fetch(&ctx.client, ns, kind, name).await? else {
        return Ok(());
    };
    if !inject::has_fields(&workload.managed_fields, manager) {
        return Ok(());
    }
    let Some(api) = workload::api(&ctx.client, ns, kind) else {
        return Ok(());
    };
    api.patch(
        name,
        &PatchParams::apply(manager),
        &Patch::Apply(inject::empty_intent(kind, name)),
    )
    .await
    .map_err(|source| Error::Teardown {
        kind,
        name: name.to_owned(),
        source,
    })?;
    info!(%kind, %name, %manager, "removed the debugger");
    Ok(())
}

/// Finds out what the cluster serves: ephemeral containers, and in which shape.
pub async fn discover(client: &kube::Client) -> Result<Capabilities, Error> {
    let resources = client
        .list_core_api_resources("v1")
        .await
        .map_err(Error::Discovery)?;
    let version = client.apiserver_version().await.map_err(Error::Discovery)?;
    Ok(Capabilities {
        ephemeral_containers: resources
            .resources
            .iter()
            .any(|r| r.name == "pods/ephemeralcontainers"),
        legacy_ephemeral_api: ephemeral::legacy_api(&version.minor),
    })
}
