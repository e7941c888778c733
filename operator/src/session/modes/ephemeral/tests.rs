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
        stopper: None,
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

const ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn stopper() -> crate::rules::Stopper {
    crate::rules::Stopper {
        image: "shellcar.local/shellcar:dev".to_owned(),
        pull_policy: Some("Never".to_owned()),
    }
}

#[test]
fn the_stopper_runs_the_operators_image_beside_the_debugger() {
    let p = pod(&format!(
        r#"
metadata: {{name: web-1}}
spec:
  containers: [{{name: nginx}}]
  ephemeralContainers:
  - {{name: dbg, image: busybox, targetContainerName: nginx, securityContext: {{runAsUser: 1000, runAsGroup: 2000}}}}
status:
  ephemeralContainerStatuses:
  - {{name: dbg, image: x, imageID: "", ready: false, restartCount: 0, containerID: "containerd://{ID}", state: {{running: {{}}}}}}
"#
    ));
    let c = stopper_container(&stopper(), "shellcar-stop-1", &p, "dbg").unwrap();
    assert_eq!(c.name, "shellcar-stop-1");
    assert_eq!(c.image.as_deref(), Some("shellcar.local/shellcar:dev"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
    assert_eq!(
        c.command, None,
        "the image's entrypoint, the shellcar binary"
    );
    assert_eq!(
        c.args,
        Some(vec!["stop-debugger".to_owned(), ID.to_owned()])
    );
    assert_eq!(c.target_container_name.as_deref(), Some("nginx"));
    let sc = c.security_context.unwrap();
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1000), Some(2000)));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().add, None);
}

#[test]
fn no_stopper_before_the_status_names_the_container() {
    let waiting = pod(r#"
metadata: {name: web-1}
spec:
  containers: [{name: nginx}]
  ephemeralContainers: [{name: dbg, image: busybox, targetContainerName: nginx}]
status:
  ephemeralContainerStatuses:
  - {name: dbg, image: x, imageID: "", ready: false, restartCount: 0, state: {waiting: {}}}
"#);
    assert!(stopper_container(&stopper(), "s", &waiting, "dbg").is_none());
    assert!(stopper_container(&stopper(), "s", &waiting, "other").is_none());
}

#[test]
fn the_stopper_runs_as_the_debuggers_user() {
    use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};
    // The image's user, maybe root: root with KILL, nothing else.
    let root = stopper_security(None, None);
    assert_eq!(root.run_as_user, Some(0));
    let caps = root.capabilities.unwrap();
    assert_eq!(caps.add, Some(vec!["KILL".to_owned()]));
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(root.run_as_non_root, None);
    // The pod names the user.
    let pod_user = PodSecurityContext {
        run_as_user: Some(33),
        ..Default::default()
    };
    let from_pod = stopper_security(None, Some(&pod_user));
    assert_eq!(from_pod.run_as_user, Some(33));
    assert_eq!(from_pod.capabilities.unwrap().add, None);
    // Non-root required, no user named (Restricted): never root, never a capability.
    let restricted = SecurityContext {
        run_as_non_root: Some(true),
        ..Default::default()
    };
    let nr = stopper_security(Some(&restricted), None);
    assert_eq!(nr.run_as_user, None);
    assert_eq!(nr.run_as_non_root, Some(true));
    assert_eq!(nr.capabilities.unwrap().add, None);
    assert_eq!(
        nr.seccomp_profile.map(|s| s.type_),
        Some("RuntimeDefault".to_owned())
    );
}
