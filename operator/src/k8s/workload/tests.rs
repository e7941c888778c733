use super::*;

pub(crate) fn fixture(yaml: &str) -> Workload {
    let obj: DynamicObject = serde_yaml::from_str(yaml).unwrap();
    let kind: TargetKind =
        serde_json::from_value(serde_json::Value::String(obj.types.clone().unwrap().kind)).unwrap();
    Workload::from_dynamic(kind, &obj).unwrap()
}

const TARGET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: shop
  uid: u-1
  generation: 2
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{...}"}
  labels: {app: agent}
  managedFields:
  - {manager: kubectl, operation: Update, fieldsV1: {"f:spec": {"f:template": {"f:spec": {}}}}}
  - {manager: kube-controller-manager, operation: Update, subresource: status, fieldsV1: {"f:status": {}}}
spec:
  revisionHistoryLimit: 10
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: OnDelete}
  template: {spec: {containers: [{name: agent, image: agent}]}}
status:
  desiredNumberScheduled: 3
  numberReady: 2
  conditions:
  - {type: ReplicaFailure, status: "True", reason: FailedCreate, message: quota, lastTransitionTime: "2026-11-24T10:00:00Z"}
  - {type: Other, status: "True"}
"#;

#[test]
fn a_slimmed_target_keeps_what_a_session_reads() {
    let full: DynamicObject = serde_yaml::from_str(TARGET).unwrap();
    let mut slim_obj = full.clone();
    slim(&mut slim_obj, true);
    assert_eq!(slim_obj.metadata.annotations, None);
    let managers: Vec<_> = slim_obj
        .managed_fields()
        .iter()
        .filter_map(|e| e.manager.as_deref())
        .collect();
    assert_eq!(
        managers,
        ["kubectl"],
        "only entries that touch the template"
    );
    assert_eq!(
        slim_obj.data["status"],
        serde_json::json!({"desiredNumberScheduled": 3, "conditions": [
            {"type": "ReplicaFailure", "status": "True", "message": "quota"}]})
    );
    assert!(slim_obj.data["spec"].get("revisionHistoryLimit").is_none());
    let (a, b) = (
        Workload::from_dynamic(TargetKind::DaemonSet, &full).unwrap(),
        Workload::from_dynamic(TargetKind::DaemonSet, &slim_obj).unwrap(),
    );
    assert_eq!(a.template, b.template);
    assert_eq!(
        (a.replicas, a.replica_failure),
        (b.replicas, b.replica_failure)
    );
    assert_eq!((a.rollout, a.selector), (b.rollout, b.selector));
    assert_eq!(a.managed_fields[..1], b.managed_fields[..]);
}

#[test]
fn a_workload_no_session_targets_keeps_only_its_identity() {
    let mut obj: DynamicObject = serde_yaml::from_str(TARGET).unwrap();
    slim(&mut obj, false);
    assert_eq!(obj.data, serde_json::json!({}));
    assert_eq!(obj.managed_fields(), &[]);
    assert_eq!(obj.metadata.uid.as_deref(), Some("u-1"));
    // Not served from the cache: read from the API server instead.
    let mut writer =
        kube::runtime::reflector::store::Writer::new(api_resource(TargetKind::DaemonSet).unwrap());
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(obj));
    let store = writer.as_reader();
    assert!(cached(&store, "shop", TargetKind::DaemonSet, "agent").is_none());
}

#[test]
fn a_replica_set_no_session_targets_keeps_its_controller() {
    // Its Deployment's UID is how a pod is told to be the Deployment's (k8s::owners).
    let mut obj: DynamicObject = serde_yaml::from_str(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-7c9f
  namespace: shop
  uid: rs-1
  ownerReferences:
  - {apiVersion: apps/v1, kind: Deployment, name: web, uid: d-1, controller: true}
  - {apiVersion: v1, kind: ConfigMap, name: extra, uid: c-1}
spec: {template: {spec: {containers: []}}}
"#,
    )
    .unwrap();
    slim(&mut obj, false);
    let refs = obj.owner_references();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].uid.as_str(), refs[0].controller),
        ("d-1", Some(true))
    );
}

#[test]
fn the_fingerprint_ignores_status_a_session_does_not_read() {
    let mut obj: DynamicObject = serde_yaml::from_str(TARGET).unwrap();
    slim(&mut obj, true);
    let before = fingerprint(&obj);
    let mut progress: DynamicObject = serde_yaml::from_str(TARGET).unwrap();
    progress.data["status"]["numberReady"] = serde_json::json!(3);
    progress.metadata.resource_version = Some("99".to_owned());
    slim(&mut progress, true);
    assert_eq!(fingerprint(&progress), before);
    let mut nodes = obj.clone();
    nodes.data["status"]["desiredNumberScheduled"] = serde_json::json!(4);
    assert_ne!(fingerprint(&nodes), before);
    let mut edited = obj.clone();
    edited.metadata.generation = Some(3);
    assert_ne!(fingerprint(&edited), before);
    let mut recreated = obj;
    recreated.metadata.uid = Some("u-2".to_owned());
    assert_ne!(fingerprint(&recreated), before);
}

#[test]
fn reads_a_deployment() {
    let w = fixture(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, uid: u-1}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers: [{name: init, image: busybox}]
      containers: [{name: nginx, image: nginx}]
"#,
    );
    assert_eq!(w.name, "web");
    assert_eq!(w.uid.as_deref(), Some("u-1"));
    assert_eq!(w.rollout, Rollout::Automatic);
    assert_eq!(w.container_names(), ["nginx", "init"]);
    assert_eq!(
        w.selector.map(|s| s.to_string()).as_deref(),
        Some("app=web")
    );
    assert!(w.controller.is_none());
}

#[test]
fn replicasets_and_on_delete_do_not_roll_out() {
    let rs = fixture(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-abc
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: d-1, controller: true}]
spec: {template: {spec: {containers: [{name: nginx}]}}}
"#,
    );
    assert_eq!(rs.rollout, Rollout::OnDelete);
    assert_eq!(rs.controller.unwrap().kind, "Deployment");
    let ds = fixture(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  updateStrategy: {type: OnDelete}
  template: {spec: {containers: [{name: agent}]}}
"#,
    );
    assert_eq!(ds.rollout, Rollout::OnDelete);
}

#[test]
fn selector_expressions_are_kept() {
    let w = fixture(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  selector:
    matchExpressions: [{key: tier, operator: In, values: [db]}]
  template: {spec: {containers: [{name: db}]}}
"#,
    );
    assert_eq!(
        w.selector.map(|s| s.to_string()).as_deref(),
        Some("tier in (db)")
    );
}

#[test]
fn a_workload_without_template_is_an_error() {
    let obj: DynamicObject =
        serde_yaml::from_str("{apiVersion: apps/v1, kind: Deployment, metadata: {name: x}}")
            .unwrap();
    assert!(matches!(
        Workload::from_dynamic(TargetKind::Deployment, &obj),
        Err(Error::NoTemplate { .. })
    ));
}

#[test]
fn replicas_nodes_and_replica_failures_are_read() {
    let scaled_down = fixture(
        "{apiVersion: apps/v1, kind: Deployment, metadata: {name: web}, spec: {replicas: 0, template: {}}}",
    );
    assert_eq!(scaled_down.replicas, Some(0));
    let unset = fixture(
        "{apiVersion: apps/v1, kind: StatefulSet, metadata: {name: db}, spec: {template: {}}}",
    );
    assert_eq!(unset.replicas, Some(1));
    let ds = fixture(
        "{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: agent}, spec: {template: {}}, status: {desiredNumberScheduled: 3}}",
    );
    assert_eq!(ds.replicas, Some(3));
    assert_eq!(ds.replica_failure, None);
    let quota = fixture(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {template: {}}
status:
  conditions:
  - {type: Available, status: "True"}
  - {type: ReplicaFailure, status: "True", reason: FailedCreate, message: 'pods "web-1" is forbidden: exceeded quota: pods'}
"#,
    );
    assert_eq!(
        quota.replica_failure.as_deref(),
        Some("pods \"web-1\" is forbidden: exceeded quota: pods")
    );
}
