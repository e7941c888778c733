use super::*;
use crate::crd::Debugger;
use serde_json::json;

#[test]
fn the_copy_shares_processes_joins_nothing_and_belongs_to_the_session() {
    let source: Pod = serde_yaml::from_str(
        r#"
metadata:
  name: web-7c9f-x2x8q
  namespace: shop
  labels: {app: web, pod-template-hash: 7c9f}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs, controller: true}]
  resourceVersion: "9"
spec:
  nodeName: node-1
  containers:
  - name: nginx
    image: nginx
    livenessProbe: {httpGet: {path: /, port: 80}}
    readinessProbe: {httpGet: {path: /, port: 80}}
  ephemeralContainers: [{name: old, image: busybox}]
status: {phase: Running}
"#,
    )
    .unwrap();
    let debugger = crate::session::modes::debugger::container(
        &Debugger::default(),
        "shellcar-dbg-1",
        "busybox",
    );
    let owner = OwnerReference {
        api_version: "debug.shellcar.dev/v1alpha1".to_owned(),
        kind: "DebugSession".to_owned(),
        name: "dbg".to_owned(),
        uid: "s-1".to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let copy = build(&source, ("dbg", ""), "shellcar-dbg-1", &debugger, owner);
    let copy = serde_json::to_value(copy).unwrap();
    assert_eq!(
        copy["metadata"],
        json!({
            "name": "shellcar-dbg-1",
            "namespace": "shop",
            "labels": {"debug.shellcar.dev/debugged": "true"},
            "annotations": {
                "debug.shellcar.dev/shellcar-dbg-1": "dbg",
                "shellcar.dev/copy-of": "web-7c9f-x2x8q",
            },
            "ownerReferences": [{
                "apiVersion": "debug.shellcar.dev/v1alpha1",
                "kind": "DebugSession",
                "name": "dbg",
                "uid": "s-1",
                "controller": true,
            }],
        })
    );
    let spec = &copy["spec"];
    assert_eq!(spec["shareProcessNamespace"], true);
    assert!(spec.get("nodeName").is_none());
    assert!(spec.get("ephemeralContainers").is_none());
    assert!(copy.get("status").is_none());
    assert_eq!(
        spec["containers"][0],
        json!({"name": "nginx", "image": "nginx"}),
        "probes are removed"
    );
    assert_eq!(spec["containers"][1]["name"], "shellcar-dbg-1");
    assert_eq!(spec["containers"][1]["tty"], true);
}

#[test]
fn a_pod_is_the_copy_only_when_the_session_controls_it() {
    // The pod carries the session's annotation in every case.
    let pod = |owner: &str| -> Pod {
        serde_yaml::from_str(&format!(
            "metadata: {{name: shellcar-dbg-1, annotations: {{debug.shellcar.dev/shellcar-dbg-1: dbg}}, ownerReferences: [{owner}]}}"
        ))
        .unwrap()
    };
    let session = |uid: &str, controller: bool| {
        format!(
            "{{apiVersion: debug.shellcar.dev/v1alpha1, kind: DebugSession, name: dbg, uid: {uid}, controller: {controller}}}"
        )
    };
    assert!(is_copy_of(&pod(&session("s-1", true)), "s-1"));
    assert!(!is_copy_of(&pod(""), "s-1"), "the annotation alone");
    assert!(
        !is_copy_of(&pod(&session("s-0", true)), "s-1"),
        "an earlier session of the same name"
    );
    assert!(
        !is_copy_of(&pod(&session("s-1", false)), "s-1"),
        "owned, but not controlled"
    );
}
