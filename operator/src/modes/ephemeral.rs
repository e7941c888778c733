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

use std::time::Duration;

use futures::TryFutureExt;
use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, AttachParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Outcome, Request, owns_fields, select, target_pods};
use crate::context::{Error, error_chain};
use crate::crd::{EphemeralTeardown, TargetKind};
use crate::validate::{self, Invalid};
use crate::{exposure, managed, naming};

/// Kills every other process in the caller's cgroup (the debugger container's), then
/// itself. Needs only `sh`, `cat` and `kill`.
pub const STOP_SCRIPT: &str = r#"cg=$(cat /proc/$$/cgroup); for p in /proc/[0-9]*; do pid=${p#/proc/}; [ "$pid" = "$$" ] && continue; [ "$(cat "$p/cgroup" 2>/dev/null)" = "$cg" ] && kill -KILL "$pid" 2>/dev/null; done; exit 0"#;

/// Where the watchdog reads a moved deadline (Unix seconds), in the debugger's own
/// filesystem.
pub const DEADLINE_FILE: &str = "/tmp/.shellcar-deadline";

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
pub fn stop_command() -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), STOP_SCRIPT.to_owned()]
}

/// The command that moves a running debugger's deadline to the Unix time `deadline`.
pub fn extend_command(deadline: i64) -> Vec<String> {
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
pub fn container(base: &Container, target_container: &str, deadline: i64) -> EphemeralContainer {
    let mut command = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        escape(WRAPPER),
        "shellcar-debugger".to_owned(),
        deadline.to_string(),
        escape(STOP_SCRIPT),
    ];
    // The default Sidecar command is the restarting shell, which the wrapper provides.
    if base.command != Some(crate::debugger::default_command()) {
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
pub fn patch_body(added: &EphemeralContainer) -> Value {
    json!({ "spec": { "ephemeralContainers": [added] } })
}

/// Where an ephemeral container stands in a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not in the pod's spec.
    Absent,
    /// In the spec, not running yet.
    Waiting,
    Running,
    /// Ended: it can never run again under this name.
    Terminated,
}

/// The state of ephemeral container `name` in `pod`.
pub fn state(pod: &Pod, name: &str) -> State {
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

/// The ephemeral debugger for `pod`, built from `base`, aimed at container `wanted` (or the
/// pod's first), stopping itself at Unix time `deadline`.
pub(crate) fn for_pod(
    base: &Container,
    pod: &Pod,
    wanted: Option<&str>,
    deadline: i64,
) -> Result<EphemeralContainer, Invalid> {
    Ok(container(base, &target_container(pod, wanted)?, deadline))
}

/// Adds an ephemeral debugger to each selected running pod of the target.
pub async fn apply(req: &Request<'_>) -> Result<Outcome, Error> {
    let Some((target, pods)) = target_pods(&req.ctx.client, req.ns, req.target()).await? else {
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
        let pod_name = pod.name_any();
        let wanted = req.target().container.as_deref();
        let added = match for_pod(&base, pod, wanted, req.expires_at.as_second()) {
            Ok(added) => added,
            Err(invalid) => return Ok(invalid.into()),
        };
        // A pod marked already (as read just now) is not marked again; the state below
        // is read from the newest copy of the pod.
        let mark = mark_intent(&pod_name, &req.container, (req.name, req.requester));
        let live = json!({ "metadata": &pod.metadata });
        let marked;
        let pod = if managed::apply_holds(&mark, &live, pod.managed_fields(), &req.manager) {
            pod
        } else {
            marked = req
                .pods()
                .patch(
                    &pod_name,
                    &PatchParams::apply(&req.manager),
                    &Patch::Apply(mark),
                )
                .await
                .map_err(Error::pod("marking", &pod_name))?;
            &marked
        };
        match state(pod, &req.container) {
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
                continue;
            }
            State::Absent => {}
            _ => continue,
        }
        if let Some(refusal) = add(req, pod, &added).await? {
            return Ok(refusal.into());
        }
        info!(pod = %pod_name, container = %req.container, "added an ephemeral debugger");
    }
    let debugged = req.debug_pods().await?;
    let ended: Vec<&str> = pods
        .iter()
        .filter(|p| state(p, &req.container) == State::Terminated)
        .map(|p| p.metadata.name.as_deref().unwrap_or_default())
        .collect();
    if !ended.is_empty() {
        notes.push(format!(
            "the ephemeral debugger has ended in pod {}; Kubernetes cannot start it again",
            ended.join(", ")
        ));
    }
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

/// Adds ephemeral container `added` to `pod`. Returns the refusal when the API server
/// finds the body invalid: retrying would not help.
async fn add(
    req: &Request<'_>,
    pod: &Pod,
    added: &EphemeralContainer,
) -> Result<Option<Invalid>, Error> {
    let pod_name = pod.name_any();
    match write(&req.ctx.client, pod, added, false).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 422 => {
            Ok(Some(Invalid::EphemeralRejected {
                pod: pod_name,
                message: status.message,
            }))
        }
        Err(e) => Err(Error::pod("adding an ephemeral container to", &pod_name)(e)),
    }
}

/// Sends ephemeral container `added` for `pod` to the API server; `dry_run` only asks
/// whether it would be accepted. The answer is read as a plain object.
pub(crate) async fn write(
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
}

/// Stops the session's ephemeral debugger in every pod of the namespace that has it, and
/// applies the teardown policy; returns what remains, pod by pod.
pub async fn teardown(pods: &Api<Pod>, t: &Teardown<'_>) -> Result<Vec<String>, Error> {
    let all = pods
        .list(&ListParams::default())
        .await
        .map_err(Error::Pods)?;
    let mut leftovers = Vec::new();
    for pod in all.items.iter().filter(|p| {
        state(p, t.container) != State::Absent && p.metadata.deletion_timestamp.is_none()
    }) {
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
        State::Running => {
            if let Err(e) = stop(pods, &pod_name, container).await
                && !stopped_anyway(pods, &pod_name, container).await
            {
                warn!(pod = %pod_name, error = %error_chain(&e), "could not stop the debugger");
                line = format!(
                    "the ephemeral debugger {container} in pod {pod_name} could not be stopped now ({e}); its own watchdog stops it when the session would have expired. "
                );
            }
        }
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

/// Stops a running ephemeral debugger through exec.
async fn stop(pods: &Api<Pod>, pod: &str, container: &str) -> Result<(), Error> {
    run(pods, pod, container, stop_command()).await?;
    info!(%pod, %container, "stopped the ephemeral debugger");
    Ok(())
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
mod tests {
    use super::*;
    use crate::crd::Debugger;

    fn base() -> Container {
        crate::debugger::container(&Debugger::default(), "shellcar-dbg-1", "busybox")
    }

    #[test]
    fn default_debugger_is_a_self_stopping_shell_aimed_at_the_target() {
        let c = container(&base(), "nginx", 1_795_000_000);
        assert_eq!(c.name, "shellcar-dbg-1");
        assert_eq!(c.target_container_name.as_deref(), Some("nginx"));
        assert_eq!((c.stdin, c.tty), (Some(true), Some(true)));
        let command = c.command.unwrap();
        assert_eq!(command[..2], ["sh", "-c"]);
        assert_eq!(command[3], "shellcar-debugger", "$0");
        assert_eq!(command[4], "1795000000", "the deadline is $1");
        assert_eq!(command[5], escape(STOP_SCRIPT), "the stop script is $2");
        assert!(command[2].starts_with(r#"(d="$$1"; while [ "$$(date +%s)" -lt "$$d" ]"#));
        assert!(command[2].contains(DEADLINE_FILE));
        assert_eq!(
            command.len(),
            6,
            "no user command: the wrapper's shell loop"
        );
        assert_eq!(
            serde_json::to_value(&c.security_context).unwrap(),
            json!({"capabilities": {"add": ["SYS_PTRACE"]}})
        );
    }

    #[test]
    fn a_user_command_runs_under_the_wrapper() {
        let debugger = Debugger {
            command: Some(vec!["top".to_owned()]),
            args: Some(vec!["-b".to_owned()]),
            ..Default::default()
        };
        let c = container(
            &crate::debugger::container(&debugger, "c", "busybox"),
            "app",
            7,
        );
        let command = c.command.unwrap();
        assert_eq!(command[6..], ["top", "-b"]);
    }

    #[test]
    fn the_deadline_is_moved_atomically() {
        let command = extend_command(1_795_000_600);
        assert_eq!(
            command[2],
            "mkdir -p /tmp && echo 1795000600 > /tmp/.shellcar-deadline.new && mv /tmp/.shellcar-deadline.new /tmp/.shellcar-deadline"
        );
    }

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_patch_names_only_the_added_container() {
        let added = container(&base(), "nginx", 60);
        let patch = patch_body(&added);
        let listed = patch["spec"]["ephemeralContainers"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "the others stay: the list merges on name");
        assert_eq!(listed[0]["name"], "shellcar-dbg-1");
        assert_eq!(listed[0]["targetContainerName"], "nginx");
        assert_eq!(
            listed[0]["securityContext"],
            json!({"capabilities": {"add": ["SYS_PTRACE"]}}),
            "the profile applies to ephemeral debuggers too"
        );
    }

    #[test]
    fn recycle_evicts_only_marked_controlled_pods_of_sessions_that_ended() {
        let marked_owned = pod(r#"
metadata:
  name: web-1
  annotations: {debug.shellcar.dev/c: s}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: r, uid: u, controller: true}]
"#);
        let bare = pod("metadata: {name: p, annotations: {debug.shellcar.dev/c: s}}");
        let unmarked = pod(
            "metadata: {name: q, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: r, uid: u, controller: true}]}",
        );
        let ended = Teardown {
            session: "s",
            container: "c",
            manager: "m",
            policy: EphemeralTeardown::Recycle,
            recycle: true,
        };
        assert!(recyclable(&marked_owned, &ended));
        assert!(
            !recyclable(&bare, &ended),
            "a bare pod has no controller to replace it"
        );
        assert!(
            !recyclable(&unmarked, &ended),
            "another session's or nobody's pod"
        );
        let refused = Teardown {
            recycle: false,
            ..ended
        };
        assert!(
            !recyclable(&marked_owned, &refused),
            "never on the refusal path"
        );
    }

    #[test]
    fn state_follows_spec_and_status() {
        let p = pod(r#"
metadata: {name: web-1}
spec:
  containers: [{name: nginx}]
  ephemeralContainers: [{name: a}, {name: b}, {name: c}]
status:
  ephemeralContainerStatuses:
  - {name: a, image: x, imageID: "", ready: false, restartCount: 0, state: {running: {}}}
  - {name: b, image: x, imageID: "", ready: false, restartCount: 0, state: {terminated: {exitCode: 137}}}
"#);
        assert_eq!(state(&p, "a"), State::Running);
        assert_eq!(state(&p, "b"), State::Terminated);
        assert_eq!(state(&p, "c"), State::Waiting);
        assert_eq!(state(&p, "d"), State::Absent);
    }
}
