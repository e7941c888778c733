use super::*;
use crate::crd::Debugger;
use crate::session::modes::debugger;

fn managed(yaml: &str) -> Vec<ManagedFieldsEntry> {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn sidecar_intent_is_exactly_the_sessions_fields() {
    let c = debugger::container(&Debugger::default(), "shellcar-dbg-1", "busybox");
    let intent = sidecar_intent(TargetKind::Deployment, "web", ("dbg", ""), &c, true);
    let expected: Value = serde_yaml::from_str(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata:
      labels: {debug.shellcar.dev/debugged: "true"}
      annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    spec:
      shareProcessNamespace: true
      containers:
      - name: shellcar-dbg-1
        image: busybox
        command: [sh, -c, "while true; do sh; done"]
        securityContext: {capabilities: {add: [SYS_PTRACE]}}
        stdin: true
        tty: true
"#,
    )
    .unwrap();
    assert_eq!(intent, expected);
    let without = sidecar_intent(TargetKind::StatefulSet, "db", ("dbg", "jane"), &c, false);
    assert_eq!(without["kind"], "StatefulSet");
    assert_eq!(
        without["spec"]["template"]["metadata"]["annotations"]["requester.shellcar.dev/shellcar-dbg-1"],
        "jane"
    );
    assert!(
        without["spec"]["template"]["spec"]
            .get("shareProcessNamespace")
            .is_none()
    );
}

#[test]
fn empty_intent_names_only_the_object() {
    assert_eq!(
        empty_intent(TargetKind::DaemonSet, "agent"),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"}})
    );
}

const USER_SET_SHARING: &str = r#"
- manager: kubectl-client-side-apply
  operation: Update
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:shareProcessNamespace": {}}}}}
"#;

#[test]
fn sharing_is_claimed_when_absent_or_held_by_a_session() {
    assert!(claims_share_process_namespace(None, &[]));
    assert!(claims_share_process_namespace(Some(false), &[]));
    let held = managed(
        r#"
- manager: shellcar.dev/other
  operation: Apply
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:shareProcessNamespace": {}}}}}
"#,
    );
    assert!(claims_share_process_namespace(Some(true), &held));
}

#[test]
fn a_users_sharing_is_never_claimed() {
    assert!(!claims_share_process_namespace(
        Some(true),
        &managed(USER_SET_SHARING)
    ));
    // no managedFields at all: still the user's
    assert!(!claims_share_process_namespace(Some(true), &[]));
}

#[test]
fn changes_of_other_managers_to_the_template_since_injection_are_reported() {
    let fields = managed(
        r#"
- manager: kubectl-client-side-apply
  operation: Update
  time: "2026-11-24T09:00:00Z"
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}
- manager: kubectl-set
  operation: Update
  time: "2026-11-24T10:05:00Z"
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {"f:env": {}}}}}}}
- manager: shellcar.dev/dbg
  operation: Apply
  time: "2026-11-24T10:06:00Z"
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}
- manager: kube-controller-manager
  operation: Update
  time: "2026-11-24T10:07:00Z"
  fieldsV1: {"f:status": {"f:replicas": {}}}
- manager: kubectl-scale
  operation: Update
  subresource: scale
  time: "2026-11-24T10:08:00Z"
  fieldsV1: {"f:spec": {"f:replicas": {}}}
"#,
    );
    let since: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let changes = target_changes(&fields, since);
    assert_eq!(
        changes
            .iter()
            .map(|c| c.manager.as_str())
            .collect::<Vec<_>>(),
        ["kubectl-set"]
    );
    // Nothing changed after the last look.
    assert!(target_changes(&fields, "2026-11-24T11:00:00Z".parse().unwrap()).is_empty());
}

fn workload(yaml: &str) -> Workload {
    let obj: kube::api::DynamicObject = serde_yaml::from_str(yaml).unwrap();
    let kind = match obj.types.as_ref().unwrap().kind.as_str() {
        "DaemonSet" => TargetKind::DaemonSet,
        "ReplicaSet" => TargetKind::ReplicaSet,
        _ => TargetKind::Deployment,
    };
    Workload::from_dynamic(kind, &obj).unwrap()
}

#[test]
fn zero_replicas_and_daemonset_nodes_are_said_plainly() {
    let zero = workload(
        "{apiVersion: apps/v1, kind: Deployment, metadata: {name: web}, spec: {replicas: 0, template: {}}}",
    );
    let problem = blocked(&zero).unwrap();
    assert_eq!(problem.reason, NO_REPLICAS);
    assert_eq!(
        problem.message,
        "Deployment web has 0 replicas; scale it up to get the debugger"
    );
    let ds = workload(
        "{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: agent}, spec: {template: {}}, status: {desiredNumberScheduled: 3}}",
    );
    assert_eq!(blocked(&ds), None);
    let pod = |name: &str, ready| DebugPod {
        name: name.to_owned(),
        container: "c".to_owned(),
        ready,
        attach: String::new(),
        copy_of: None,
        reason: None,
        message: None,
    };
    assert_eq!(
        rollout_note(&ds, &[pod("a", true), pod("b", true), pod("c", false)]).as_deref(),
        Some("DaemonSet agent runs the debugger on 2 of 3 nodes")
    );
}

fn pod_with(name: &str, containers: &[&str], leaving: bool) -> Pod {
    let mut pod: Pod = serde_yaml::from_str(&format!(
        "{{metadata: {{name: {name}}}, spec: {{containers: [{}]}}}}",
        containers
            .iter()
            .map(|c| format!("{{name: {c}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .unwrap();
    if leaving {
        pod.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-24T10:00:00Z".parse().unwrap(),
            ));
    }
    pod
}

#[test]
fn pods_a_workload_will_not_replace_are_left_behind_and_said_so() {
    let pods = [
        pod_with("web-a", &["nginx", "dbg"], false),
        pod_with("web-b", &["nginx"], false),
        pod_with("web-c", &["nginx", "dbg"], true),
    ];
    let rs = workload(
        "{apiVersion: apps/v1, kind: ReplicaSet, metadata: {name: web-1}, spec: {template: {}}}",
    );
    assert_eq!(
        leftovers(&rs, &pods, "dbg"),
        [
            "pod web-a still runs the debugger dbg: ReplicaSet web-1 replaces pods only when they are deleted; delete the pod to remove the debugger"
        ]
    );
    let paused = workload(
        "{apiVersion: apps/v1, kind: Deployment, metadata: {name: web}, spec: {paused: true, template: {}}}",
    );
    assert_eq!(paused.rollout, Rollout::Paused);
    assert_eq!(
        leftovers(&paused, &pods, "dbg"),
        [
            "pod web-a still runs the debugger dbg: Deployment web is paused; resume it to roll the debugger out"
        ]
    );
    let rolling = workload(
        "{apiVersion: apps/v1, kind: Deployment, metadata: {name: web}, spec: {template: {}}}",
    );
    assert!(
        leftovers(&rolling, &pods, "dbg").is_empty(),
        "a rollout replaces them"
    );
    let on_delete = workload(
        "{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: agent}, spec: {updateStrategy: {type: OnDelete}, template: {}}}",
    );
    assert_eq!(leftovers(&on_delete, &pods, "dbg").len(), 1);
}
