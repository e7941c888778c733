use super::*;
use crate::crd::Debugger;

fn base() -> Container {
    crate::session::modes::debugger::container(&Debugger::default(), "shellcar-dbg-1", "busybox")
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
        &crate::session::modes::debugger::container(&debugger, "c", "busybox"),
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

#[test]
fn a_pod_in_the_hosts_process_namespace_is_refused() {
    let host =
        pod("{metadata: {name: node-agent}, spec: {hostPID: true, containers: [{name: agent}]}}");
    let Err(invalid) = change(&base(), &host, None, 0) else {
        panic!("a hostPID pod was joined");
    };
    assert_eq!(invalid.reason(), "HostPIDConflict");
    let plain = pod("{metadata: {name: web}, spec: {containers: [{name: app}]}}");
    assert!(change(&base(), &plain, None, 0).is_ok());
}
