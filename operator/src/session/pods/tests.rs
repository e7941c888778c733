use super::*;

/// The owners of the pods in these tests: ReplicaSet `rs-1` (a Deployment's current
/// ReplicaSet) and session `dbg` (its copy).
fn owners() -> Owners {
    let mut owners = Owners::controller("rs-1");
    owners.extend(Owners::controller("session-1"));
    owners
}

fn pod(name: &str, ready: bool) -> DebugPod {
    DebugPod {
        reason: None,
        message: None,
        name: name.to_owned(),
        container: "shellcar-dbg-1".to_owned(),
        ready,
        attach: format!("kubectl attach -it -n shop {name} -c shellcar-dbg-1"),
        copy_of: None,
    }
}

#[test]
fn ephemeral_debuggers_and_copies_are_listed() {
    let pods: Vec<Pod> = serde_yaml::from_str(
        r#"
- metadata:
    name: web-1
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-1, controller: true}]
  status:
    ephemeralContainerStatuses:
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: false, restartCount: 0, state: {running: {}}}
- metadata:
    name: shellcar-dbg-1
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg, shellcar.dev/copy-of: web-2}
    ownerReferences: [{apiVersion: debug.shellcar.dev/v1alpha1, kind: DebugSession, name: dbg, uid: session-1, controller: true}]
"#,
    )
    .unwrap();
    let found = debug_pods(&pods, &owners(), "shop", "dbg", "shellcar-dbg-1");
    assert_eq!(found[0].name, "shellcar-dbg-1");
    assert_eq!(found[0].copy_of.as_deref(), Some("web-2"));
    assert!(!found[0].ready);
    assert_eq!(found[1].name, "web-1");
    assert!(found[1].ready);
}

#[test]
fn debug_pods_come_from_annotated_live_pods() {
    let pods: Vec<Pod> = serde_yaml::from_str(
        r#"
- metadata:
    name: web-2
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-1, controller: true}]
  status:
    containerStatuses:
    - {name: nginx, image: n, imageID: "", ready: true, restartCount: 0, state: {running: {}}}
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: true, restartCount: 0, state: {running: {}}}
- metadata:
    name: web-1
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-1, controller: true}]
  status:
    containerStatuses:
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}
- metadata:
    name: web-old
    deletionTimestamp: "2026-11-23T10:00:00Z"
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
- metadata:
    name: other
    annotations: {debug.shellcar.dev/shellcar-other-2: other}
"#,
    )
    .unwrap();
    let found = debug_pods(&pods, &owners(), "shop", "dbg", "shellcar-dbg-1");
    assert_eq!(found, vec![pod("web-1", false), pod("web-2", true)]);
}

#[test]
fn a_decoy_with_the_sessions_annotation_and_container_is_not_listed() {
    // Each decoy sorts before the real pod, runs a container named as the debugger and
    // carries the session's annotation; none is owned by the target.
    let pods: Vec<Pod> = serde_yaml::from_str(
        r#"
- metadata:
    name: a-no-owner
    labels: {debug.shellcar.dev/debugged: "true"}
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
  status:
    containerStatuses:
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: true, restartCount: 0, state: {running: {}}}
- metadata:
    name: b-other-replicaset
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-other, controller: true}]
  status:
    containerStatuses:
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: true, restartCount: 0, state: {running: {}}}
- metadata:
    name: c-not-controlled
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-1}]
  status:
    containerStatuses:
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: true, restartCount: 0, state: {running: {}}}
- metadata:
    name: web-2
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-1, controller: true}]
  status:
    containerStatuses:
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: true, restartCount: 0, state: {running: {}}}
"#,
    )
    .unwrap();
    let found = debug_pods(&pods, &owners(), "shop", "dbg", "shellcar-dbg-1");
    assert_eq!(found, vec![pod("web-2", true)]);
    assert!(
        debug_pods(&pods, &Owners::default(), "shop", "dbg", "shellcar-dbg-1").is_empty(),
        "a target with no UID owns no pod"
    );
}
