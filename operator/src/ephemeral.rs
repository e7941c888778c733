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

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};
use serde_json::{Value, json};

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
    if base.command != Some(crate::inject::default_command()) {
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

/// Body for the `ephemeralcontainers` subresource of API servers before 1.22: an
/// `EphemeralContainers` object listing every ephemeral container of the pod, sent with
/// PUT, as `kubectl debug` did then.
pub fn legacy_body(pod: &Pod, added: &EphemeralContainer) -> Value {
    let mut all: Vec<EphemeralContainer> = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.clone())
        .unwrap_or_default();
    all.push(added.clone());
    json!({
        "apiVersion": "v1",
        "kind": "EphemeralContainers",
        "metadata": {
            "name": pod.metadata.name,
            "namespace": pod.metadata.namespace,
            "resourceVersion": pod.metadata.resource_version,
        },
        "ephemeralContainers": all,
    })
}

/// Strategic merge patch for the `ephemeralcontainers` subresource of API servers since
/// 1.22, which take a Pod.
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

/// True when API server version `minor` (as `/version` reports it, e.g. "20" or "20+")
/// takes the legacy `EphemeralContainers` body.
pub fn legacy_api(minor: &str) -> bool {
    let digits: String = minor.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<u32>().is_ok_and(|m| m < 22)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Debugger;
    use crate::inject::debugger_container;

    fn base() -> Container {
        debugger_container(&Debugger::default(), "shellcar-dbg-1", "busybox")
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
        let c = container(&debugger_container(&debugger, "c", "busybox"), "app", 7);
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

    #[test]
    fn the_stop_script_spares_itself_and_needs_only_sh() {
        assert!(STOP_SCRIPT.contains(r#"[ "$pid" = "$$" ] && continue"#));
        assert!(STOP_SCRIPT.contains("/proc/$$/cgroup"));
        assert_eq!(stop_command()[..2], ["sh", "-c"]);
    }

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn legacy_body_lists_every_ephemeral_container() {
        let p = pod(r#"
metadata: {name: web-1, namespace: shop, resourceVersion: "42"}
spec:
  containers: [{name: nginx}]
  ephemeralContainers: [{name: older, image: busybox}]
"#);
        let added = container(&base(), "nginx", 60);
        let body = legacy_body(&p, &added);
        assert_eq!(body["kind"], "EphemeralContainers");
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["metadata"]["name"], "web-1");
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        let names: Vec<&str> = body["ephemeralContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["older", "shellcar-dbg-1"]);
        let current = patch_body(&added);
        assert_eq!(
            current["spec"]["ephemeralContainers"][0]["targetContainerName"],
            "nginx"
        );
    }

    #[test]
    fn legacy_api_before_1_22() {
        assert!(legacy_api("20"));
        assert!(legacy_api("21+"));
        assert!(!legacy_api("22"));
        assert!(!legacy_api("31"));
        assert!(!legacy_api(""));
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
