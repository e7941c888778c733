//! What Ephemeral mode changes: an ephemeral container in a running pod, built from the
//! same debugger spec and profile as Sidecar mode, and the commands that stop it.
//!
//! Kubernetes cannot remove an ephemeral container, so the debugger must stop by itself.
//! It runs under a small `sh` wrapper that kills every process of its container when the
//! session expires, so expiry needs no operator at all (it holds if the operator is down);
//! an earlier end (the session deleted) runs the same kill through exec, and a later one
//! (ttl raised) moves the deadline through a file the wrapper reads. The kill finds
//! the container's processes by their cgroup, so it works whatever command the debugger
//! runs, and never touches the target's processes, which share the PID namespace.
//!
//! All of that runs the debugger's own `sh`, `cat` and `date`, and reads a file in its
//! filesystem, which whoever holds the shell can change. So teardown does not trust it:
//! while the operator runs, an ending session's debugger is stopped by a second
//! ephemeral container from the operator's own image ([`crate::stopper`]), aimed at the
//! same target and running as the debugger's user, which kills the processes of the
//! debugger's container by the container ID the pod's status gives. Exec into the
//! debugger is the fallback where that cannot run (no stopper image, a user it may not
//! signal).

use std::borrow::Cow;
use std::time::Duration;

use futures::TryFutureExt;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EphemeralContainer, Pod, PodSecurityContext, SeccompProfile,
    SecurityContext,
};
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, AttachParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{DryRun, Outcome, Owner, Request, Trial, owns_fields, select, verdict};
use crate::api_error::ApiError;
use crate::crd::{EphemeralTeardown, TargetKind};
use crate::rules::Stopper;
use crate::rules::validate::{self, Invalid};
use crate::runtime::error_chain;
use crate::session::error::Error;
use crate::{k8s::managed, naming, rules::exposure};

/// Kills every other process in the caller's cgroup (the debugger container's), then
/// itself. Needs only `sh`, `cat` and `kill`.
const STOP_SCRIPT: &str = r#"cg=$(cat /proc/$$/cgroup); for p in /proc/[0-9]*; do pid=${p#/proc/}; [ "$pid" = "$$" ] && continue; [ "$(cat "$p/cgroup" 2>/dev/null)" = "$cg" ] && kill -KILL "$pid" 2>/dev/null; done; exit 0"#;

/// Where the watchdog reads a moved deadline (Unix seconds), in the debugger's own
/// filesystem.
const DEADLINE_FILE: &str = "/tmp/.shellcar-deadline";

/// Runs the debugger (its command and args, or a shell that restarts on detach), and a
/// watchdog that stops the container at the Unix time `$1`, or at the time in
/// [`DEADLINE_FILE`] once that exists.
const WRAPPER: &str = r#"(d="$1"; while [ "$(date +%s)" -lt "$d" ]; do sleep 2; [ -r /tmp/.shellcar-deadline ] && d=$(cat /tmp/.shellcar-deadline); done; exec sh -c "$2") & shift 2; if [ $# -gt 0 ]; then "$@"; else while true; do sh; done; fi"#;

/// Kubernetes expands `$(VAR)` and turns `$$` into `$` in a container's command; doubling
/// every `$` makes it hand the script to `sh` exactly as written.
fn escape(script: &str) -> String {
    script.replace('$', "$$")
}

/// The command that stops a running ephemeral debugger, for exec (which expands nothing).
fn stop_command() -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), STOP_SCRIPT.to_owned()]
}

/// The command that moves a running debugger's deadline to the Unix time `deadline`.
fn extend_command(deadline: i64) -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "mkdir -p /tmp && echo {deadline} > {DEADLINE_FILE}.new && mv {DEADLINE_FILE}.new {DEADLINE_FILE}"
        ),
    ]
}

/// The ephemeral container for a debugger built as `base` (the Sidecar container of the
/// same spec), aimed at `target_container`, that stops itself at the Unix time `deadline`.
fn container(base: &Container, target_container: &str, deadline: i64) -> EphemeralContainer {
    let mut command = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        escape(WRAPPER),
        "shellcar-debugger".to_owned(),
        deadline.to_string(),
        escape(STOP_SCRIPT),
    ];
    // The default Sidecar command is the restarting shell, which the wrapper provides.
    if base.command != Some(crate::session::modes::debugger::default_command()) {
        command.extend(base.command.iter().flatten().cloned());
        command.extend(base.args.iter().flatten().cloned());
    }
    EphemeralContainer {
        name: base.name.clone(),
        image: base.image.clone(),
        command: Some(command),
        env: base.env.clone(),
        security_context: base.security_context.clone(),
        stdin: Some(true),
        tty: Some(true),
        target_container_name: Some(target_container.to_owned()),
        ..Default::default()
    }
}

/// Strategic merge patch for the `ephemeralcontainers` subresource: the list merges on
/// `name`, so the patch names only the added container and keeps the others.
fn patch_body(added: &EphemeralContainer) -> Value {
    json!({ "spec": { "ephemeralContainers": [added] } })
}

/// Where an ephemeral container stands in a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not in the pod's spec.
    Absent,
    /// In the spec, not running yet.
    Waiting,
    Running,
    /// Ended: it can never run again under this name.
    Terminated,
}

/// The state of ephemeral container `name` in `pod`.
fn state(pod: &Pod, name: &str) -> State {
    let in_spec = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == name));
    if !in_spec {
        return State::Absent;
    }
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.ephemeral_container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == name))
        .and_then(|c| c.state.as_ref());
    match status {
        Some(s) if s.running.is_some() => State::Running,
        Some(s) if s.terminated.is_some() => State::Terminated,
        _ => State::Waiting,
    }
}

/// The pod-metadata intent that marks pod `pod` as debugged by session `session` (whose
/// debugger is `container`) for `requester`, so the operator watches it and teardown
/// finds it; the session's manager owns it.
fn mark_intent(pod: &str, container: &str, (session, requester): (&str, &str)) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod,
            "labels": { naming::DEBUGGED_LABEL: "true" },
            "annotations": naming::marks(container, session, requester),
        }
    })
}

/// The container of `pod` the debugger aims at: the one the session names, or the first.
fn target_container(pod: &Pod, wanted: Option<&str>) -> Result<String, Invalid> {
    let containers: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.as_str()))
        .collect();
    let Some(name) = wanted.or_else(|| containers.first().copied()) else {
        return Ok(String::new());
    };
    validate::container_exists(TargetKind::Pod, &pod.name_any(), &containers, name)?;
    Ok(name.to_owned())
}

/// The change Ephemeral mode makes to `pod`: the ephemeral debugger built from `base`,
/// aimed at container `wanted` (or the pod's first), stopping itself at Unix time
/// `deadline`. Both [`apply`] and `dry_run` send it.
pub fn change(
    base: &Container,
    pod: &Pod,
    wanted: Option<&str>,
    deadline: i64,
) -> Result<EphemeralContainer, Invalid> {
    validate::joinable_pod(pod)?;
    Ok(container(base, &target_container(pod, wanted)?, deadline))
}

/// Adds an ephemeral debugger to each selected running pod of the target.
pub async fn apply(req: &Request<'_>) -> Result<Outcome, Error> {
    let Some((target, pods)) = req.target_pods().await? else {
        return Ok(req.missing());
    };
    let pods = select(pods, req.session.spec.pods, req.name, &req.container);
    if pods.is_empty() {
        return Ok(Outcome::Missing {
            message: format!("{} {} has no running pod", target.kind, target.name),
        });
    }
    if let Err(invalid) = validate::pods(&req.session.spec, &pods) {
        return Ok(invalid.into());
    }
    let base = req.debugger();
    let mut notes = Vec::new();
    for pod in &pods {
        if let Some(refusal) = debug_pod(req, pod, &base, &mut notes).await? {
            return Ok(refusal.into());
        }
    }
    let debugged = req.debug_pods(Owner::Target(&target)).await?;
    notes.extend(ended_note(&pods, &req.container));
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(Outcome::Applied {
        target,
        pods: debugged,
        note,
        exposure: pods
            .first()
            .and_then(|p| p.spec.as_ref())
            .map(exposure::report)
            .unwrap_or_default(),
        blocked: None,
        changes: Vec::new(),
    })
}

/// Puts the session's debugger (built from `base`) in `pod`: marks the pod, then adds the
/// debugger where it is absent, or moves the deadline of a running one whose session's
/// expiry changed. Adds what a person should know to `notes`; returns the refusal when the
/// debugger cannot be added.
async fn debug_pod(
    req: &Request<'_>,
    pod: &Pod,
    base: &Container,
    notes: &mut Vec<String>,
) -> Result<Option<Invalid>, Error> {
    let pod_name = pod.name_any();
    let wanted = req.target().container.as_deref();
    let added = match change(base, pod, wanted, req.expires_at.as_second()) {
        Ok(added) => added,
        Err(invalid) => return Ok(Some(invalid)),
    };
    let pod = mark(req, pod).await?;
    match state(&pod, &req.container) {
        State::Running
            if req
                .previous_expires_at
                .is_some_and(|previous| previous != req.expires_at) =>
        {
            if let Err(e) = extend(req, &pod_name).await {
                notes.push(format!(
                    "the ephemeral debugger in pod {pod_name} keeps its old deadline: {e}"
                ));
            }
            return Ok(None);
        }
        State::Absent => {}
        _ => return Ok(None),
    }
    let refusal = add(req, &pod, &added).await?;
    if refusal.is_none() {
        info!(pod = %pod_name, container = %req.container, "added an ephemeral debugger");
    }
    Ok(refusal)
}

/// `pod` marked as debugged by the session. A pod marked already (as read just now) is
/// not marked again; otherwise the pod is the API server's answer to the mark, so its
/// state is read from the newest copy.
async fn mark<'p>(req: &Request<'_>, pod: &'p Pod) -> Result<Cow<'p, Pod>, Error> {
    let pod_name = pod.name_any();
    let mark = mark_intent(&pod_name, &req.container, (req.name, req.requester));
    let live = json!({ "metadata": &pod.metadata });
    if managed::apply_holds(&mark, &live, pod.managed_fields(), &req.manager) {
        return Ok(Cow::Borrowed(pod));
    }
    let params = PatchParams::apply(&req.manager);
    let marked = req
        .pods()
        .patch(&pod_name, &params, &Patch::Apply(mark))
        .await
        .map_err(Error::pod("marking", &pod_name))?;
    Ok(Cow::Owned(marked))
}

/// The note about `pods` whose debugger `container` has ended, if any.
fn ended_note(pods: &[Pod], container: &str) -> Option<String> {
    let ended: Vec<&str> = pods
        .iter()
        .filter(|p| state(p, container) == State::Terminated)
        .map(|p| p.metadata.name.as_deref().unwrap_or_default())
        .collect();
    (!ended.is_empty()).then(|| {
        format!(
            "the ephemeral debugger has ended in pod {}; Kubernetes cannot start it again",
            ended.join(", ")
        )
    })
}

/// Adds ephemeral container `added` to `pod`. Returns the refusal when the API server
/// finds the body invalid: retrying would not help.
async fn add(
    req: &Request<'_>,
    pod: &Pod,
    added: &EphemeralContainer,
) -> Result<Option<Invalid>, Error> {
    let pod_name = pod.name_any();
    let Err(e) = write(&req.ctx.client, pod, added, false).await else {
        return Ok(None);
    };
    match ApiError::of(&e) {
        ApiError::Refused { code: 422, message } => Ok(Some(Invalid::EphemeralRejected {
            pod: pod_name,
            message,
        })),
        _ => Err(Error::pod("adding an ephemeral container to", &pod_name)(e)),
    }
}

/// Sends the session's [`change`] for the first pod it would debug with `dryRun=All`,
/// with the deadline the session would have if it started now.
pub(super) async fn dry_run(trial: &Trial<'_>) -> Result<DryRun, Error> {
    let pod = match trial.first_pod().await {
        Ok(pod) => pod,
        Err(skipped) => return Ok(skipped),
    };
    let deadline = jiff::Timestamp::now().as_second()
        + i64::try_from(trial.plan.ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let wanted = trial.target().container.as_deref();
    let added = match change(&trial.debugger(), &pod, wanted, deadline) {
        Ok(added) => added,
        Err(invalid) => return Ok(DryRun::Rejected(invalid.to_string())),
    };
    verdict(
        write(trial.client, &pod, &added, true).await.map(drop),
        Error::pod("adding an ephemeral container to", &pod.name_any()),
    )
}

/// Sends ephemeral container `added` for `pod` to the API server; `dry_run` only asks
/// whether it would be accepted. The answer is read as a plain object.
async fn write(
    client: &kube::Client,
    pod: &Pod,
    added: &EphemeralContainer,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<Pod>(&()));
    let params = PatchParams {
        dry_run,
        ..Default::default()
    };
    let patch = Patch::Strategic(patch_body(added));
    api.patch_subresource("ephemeralcontainers", &pod.name_any(), &params, &patch)
        .await
}

/// Moves the deadline of the running ephemeral debugger in `pod` to the session's expiry.
async fn extend(req: &Request<'_>, pod: &str) -> Result<(), Error> {
    let command = extend_command(req.expires_at.as_second());
    run(&req.pods(), pod, &req.container, command).await?;
    info!(%pod, container = %req.container, expires_at = %req.expires_at, "moved the ephemeral debugger's deadline");
    Ok(())
}

/// What the teardown of one session's ephemeral debuggers needs to know.
pub struct Teardown<'a> {
    pub session: &'a str,
    pub container: &'a str,
    pub manager: &'a str,
    pub policy: EphemeralTeardown,
    /// The policy is Recycle and the session ended normally: evicting is allowed.
    pub recycle: bool,
    /// The image that stops a running debugger from outside it; `None`: exec only.
    pub stopper: Option<&'a Stopper>,
}

/// The live pods of the namespace that have an ephemeral container named `container`,
/// whoever added it: teardown keeps those its session owns ([`super::teardown`]).
pub async fn debugged(pods: &Api<Pod>, container: &str) -> Result<Vec<Pod>, Error> {
    let all = pods
        .list(&ListParams::default())
        .await
        .map_err(Error::Pods)?;
    Ok(all
        .items
        .into_iter()
        .filter(|p| state(p, container) != State::Absent && p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Stops the session's ephemeral debugger in each of `owned` (the pods of its targets
/// that have it), and applies the teardown policy; returns what remains, pod by pod.
pub async fn teardown(
    pods: &Api<Pod>,
    owned: Vec<Pod>,
    t: &Teardown<'_>,
) -> Result<Vec<String>, Error> {
    let mut leftovers = Vec::new();
    for pod in &owned {
        leftovers.push(teardown_pod(pods, pod, t).await?);
    }
    Ok(leftovers)
}

/// True when `pod` may be evicted by the Recycle policy: this session marked it, and a
/// controller owns it and replaces it.
fn recyclable(pod: &Pod, t: &Teardown<'_>) -> bool {
    let marked = pod
        .annotations()
        .get(&naming::session_annotation(t.container))
        .map(String::as_str)
        == Some(t.session);
    let controlled = pod
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true));
    t.recycle && marked && controlled
}

/// Stops the ephemeral debugger in `pod`, applies the teardown policy and releases the
/// pod; returns the sentence status keeps about it.
async fn teardown_pod(pods: &Api<Pod>, pod: &Pod, t: &Teardown<'_>) -> Result<String, Error> {
    let pod_name = pod.name_any();
    let container = t.container;
    let mut line = String::new();
    match state(pod, container) {
        State::Terminated | State::Absent => {}
        State::Waiting => {
            line = format!(
                "the ephemeral debugger {container} in pod {pod_name} never started; if it starts later, it finds its deadline passed and stops at once. "
            );
        }
        State::Running => match stop_from_outside(pods, pod, t).await {
            Ok(Some(note)) => line = note,
            outcome => {
                if let Err(e) = outcome {
                    warn!(pod = %pod_name, error = %error_chain(&e), "could not run the stopper; stopping the debugger through exec");
                }
                line = stop_from_inside(pods, &pod_name, container).await;
            }
        },
    }
    let evict = recyclable(pod, t);
    line += &match t.policy {
        EphemeralTeardown::Label => {
            let patch = json!({"metadata": {"labels": {naming::EPHEMERAL_DEBUGGED_LABEL: "true"}}});
            let params = PatchParams {
                field_manager: Some(naming::CONTROLLER_MANAGER.to_owned()),
                ..Default::default()
            };
            pods.patch(&pod_name, &params, &Patch::Merge(&patch))
                .await
                .map_err(Error::pod("labelling", &pod_name))?;
            format!(
                "pod {pod_name} keeps the stopped ephemeral container {container} and is labelled {}=true",
                naming::EPHEMERAL_DEBUGGED_LABEL
            )
        }
        EphemeralTeardown::Recycle if evict => {
            pods.evict(&pod_name, &EvictParams::default())
                .await
                .map_err(Error::pod("evicting", &pod_name))?;
            info!(pod = %pod_name, "evicted the debugged pod");
            format!(
                "pod {pod_name} was evicted to drop the stopped ephemeral container {container}; its controller replaces it"
            )
        }
        EphemeralTeardown::Leave | EphemeralTeardown::Recycle => format!(
            "pod {pod_name} keeps the stopped ephemeral container {container}: Kubernetes cannot remove ephemeral containers"
        ),
    };
    if !evict && owns_fields(pod.managed_fields(), t.manager) {
        let release = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name}});
        pods.patch(
            &pod_name,
            &PatchParams::apply(t.manager),
            &Patch::Apply(release),
        )
        .await
        .map_err(Error::pod("releasing", &pod_name))?;
    }
    Ok(line)
}

/// True when the debugger ended by other means, e.g. its own expiry watchdog racing the
/// exec that was to stop it.
async fn stopped_anyway(pods: &Api<Pod>, pod: &str, container: &str) -> bool {
    for _ in 0..5 {
        match pods.get_opt(pod).await {
            Ok(Some(p)) if state(&p, container) == State::Terminated => return true,
            Ok(None) => return true,
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    false
}

/// Stops a running ephemeral debugger through exec, with its own image's tools; returns
/// the sentence status keeps when it did not stop.
async fn stop_from_inside(pods: &Api<Pod>, pod: &str, container: &str) -> String {
    let stopped = run(pods, pod, container, stop_command()).await;
    match stopped {
        Ok(()) if stopped_anyway(pods, pod, container).await => {
            info!(%pod, %container, "stopped the ephemeral debugger through exec");
            String::new()
        }
        Ok(()) => format!(
            "the ephemeral debugger {container} in pod {pod} still runs after its stop command; its own watchdog, which runs in its image, is all that stops it now. "
        ),
        Err(e) if stopped_anyway(pods, pod, container).await => {
            info!(%pod, %container, error = %e, "the ephemeral debugger stopped");
            String::new()
        }
        Err(e) => {
            warn!(%pod, error = %error_chain(&e), "could not stop the debugger");
            format!(
                "the ephemeral debugger {container} in pod {pod} could not be stopped now ({e}); its own watchdog, which runs in its image, is all that stops it now. "
            )
        }
    }
}

/// Longest teardown waits for the stopper to end a debugger: pulling the operator's image
/// on a node that lacks it included.
const STOPPER_TIMEOUT: Duration = Duration::from_secs(60);

/// Stops the running debugger in `pod` with a stopper container from the operator's
/// image ([`crate::stopper`]); returns the sentence status keeps, or `None` where that
/// cannot be done (no stopper image, no container ID yet, the stopper ended and the
/// debugger still runs) so that the caller falls back to exec.
async fn stop_from_outside(
    pods: &Api<Pod>,
    pod: &Pod,
    t: &Teardown<'_>,
) -> Result<Option<String>, Error> {
    let (pod_name, container) = (pod.name_any(), t.container);
    let Some(stopper) = t.stopper else {
        return Ok(None);
    };
    let Some(added) = stopper_container(stopper, &naming::stopper_name(t.session), pod, container)
    else {
        return Ok(None);
    };
    if state(pod, &added.name) == State::Absent {
        write(&pods.clone().into_client(), pod, &added, false)
            .await
            .map_err(Error::pod("adding the stopper to", &pod_name))?;
        info!(pod = %pod_name, %container, stopper = %added.name, "stopping the ephemeral debugger from the operator's image");
    }
    let deadline = tokio::time::Instant::now() + STOPPER_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        let Some(now) = pods
            .get_opt(&pod_name)
            .await
            .map_err(Error::pod("reading", &pod_name))?
        else {
            return Ok(Some(String::new()));
        };
        if state(&now, container) == State::Terminated {
            let said = termination_message(&now, &added.name)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            return Ok(Some(format!(
                "the ephemeral debugger {container} in pod {pod_name} was stopped by {}, an ephemeral container from the operator's image that the pod keeps too{said}. ",
                added.name
            )));
        }
        if state(&now, &added.name) == State::Terminated {
            let said = termination_message(&now, &added.name).unwrap_or_default();
            warn!(pod = %pod_name, %container, stopper = %added.name, message = %said, "the stopper ended and the debugger still runs");
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    warn!(pod = %pod_name, %container, "the stopper did not end the debugger in time");
    Ok(None)
}

/// The message ephemeral container `name` in `pod` left when it terminated.
fn termination_message(pod: &Pod, name: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .message
        .as_ref()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
}

/// The stopper container `name` for debugger `debugger` in `pod`: `stopper`'s image running
/// `shellcar stop-debugger <container ID>`, aimed at the debugger's target (so it sees the
/// debugger's processes), as the debugger's user ([`stopper_security`]). `None` until the
/// pod's status gives the debugger's container ID.
pub(super) fn stopper_container(
    stopper: &Stopper,
    name: &str,
    pod: &Pod,
    debugger: &str,
) -> Option<EphemeralContainer> {
    let spec = pod.spec.as_ref()?;
    let debugger_spec = spec
        .ephemeral_containers
        .as_ref()?
        .iter()
        .find(|c| c.name == debugger)?;
    let id = pod
        .status
        .as_ref()?
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == debugger)?
        .container_id
        .clone()?;
    let id = crate::stopper::container_id(&id)?.to_owned();
    Some(EphemeralContainer {
        name: name.to_owned(),
        image: Some(stopper.image.clone()),
        image_pull_policy: stopper.pull_policy.clone(),
        args: Some(vec!["stop-debugger".to_owned(), id]),
        target_container_name: debugger_spec.target_container_name.clone(),
        security_context: Some(stopper_security(
            debugger_spec.security_context.as_ref(),
            spec.security_context.as_ref(),
        )),
        termination_message_policy: Some("File".to_owned()),
        ..Default::default()
    })
}

/// How the stopper runs: as the debugger's user and group, with nothing else it does not
/// need (no privilege escalation, a read-only root, the runtime's seccomp profile, every
/// capability dropped). Where neither the debugger nor the pod names a user and neither
/// requires a non-root one, the debugger runs as its image's user, which may be root:
/// the stopper then runs as root with `KILL`, which Pod Security's baseline level admits.
/// Under `runAsNonRoot` with no user named, it runs as its own image's user and may not be
/// allowed to signal the debugger; teardown then falls back to exec.
pub(super) fn stopper_security(
    debugger: Option<&SecurityContext>,
    pod: Option<&PodSecurityContext>,
) -> SecurityContext {
    let user = debugger
        .and_then(|c| c.run_as_user)
        .or_else(|| pod.and_then(|p| p.run_as_user));
    let non_root = debugger
        .and_then(|c| c.run_as_non_root)
        .or_else(|| pod.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    let root = user.is_none() && !non_root;
    SecurityContext {
        run_as_user: if root { Some(0) } else { user },
        run_as_group: debugger.and_then(|c| c.run_as_group),
        run_as_non_root: non_root.then_some(true),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            add: root.then(|| vec!["KILL".to_owned()]),
            drop: Some(vec!["ALL".to_owned()]),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Longest an exec into a debugger may take: a hung debugger must not hold a deletion.
const EXEC_TIMEOUT: Duration = Duration::from_secs(20);

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
    let exec = async {
        let process = pods
            .exec(pod, command, &params)
            .map_err(Error::pod("running a command in", pod))
            .await?;
        process.join().await.map_err(|e| Error::Exec {
            pod: pod.to_owned(),
            message: e.to_string(),
        })
    };
    tokio::time::timeout(EXEC_TIMEOUT, exec)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Exec {
                pod: pod.to_owned(),
                message: format!("no answer within {}s", EXEC_TIMEOUT.as_secs()),
            })
        })
}

#[cfg(test)]
mod tests;
