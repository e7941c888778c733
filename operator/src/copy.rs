//! What Copy mode changes: a copy of a pod that shares its process namespace and carries
//! the debugger, and joins nothing (no Service, no ReplicaSet).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::naming;

/// The copy of `source` for session `session`, named `name`, with `debugger` added and
/// owned by `owner` (the session), so that it is garbage collected with the session even
/// if teardown never ran.
///
/// Labels are replaced by shellcar's own, so no Service selects the copy and no
/// ReplicaSet adopts it; probes are removed, so a paused or signalled process does not get
/// the copy restarted; the node is left to the scheduler, as `kubectl debug --copy-to` does.
pub fn build(
    source: &Pod,
    session: &str,
    name: &str,
    debugger: &Container,
    owner: OwnerReference,
) -> Pod {
    let mut spec = source.spec.clone().unwrap_or_default();
    spec.node_name = None;
    spec.ephemeral_containers = None;
    spec.share_process_namespace = Some(true);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        c.liveness_probe = None;
        c.readiness_probe = None;
        c.startup_probe = None;
    }
    spec.containers.retain(|c| c.name != debugger.name);
    spec.containers.push(debugger.clone());
    let source_name = source.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: source.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                naming::DEBUGGED_LABEL.to_owned(),
                "true".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([
                (
                    naming::session_annotation(&debugger.name),
                    session.to_owned(),
                ),
                (naming::COPY_OF_ANNOTATION.to_owned(), source_name),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Debugger;
    use crate::inject::debugger_container;
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
        let debugger = debugger_container(&Debugger::default(), "shellcar-dbg-1", "busybox");
        let owner = OwnerReference {
            api_version: "debug.shellcar.dev/v1alpha1".to_owned(),
            kind: "DebugSession".to_owned(),
            name: "dbg".to_owned(),
            uid: "s-1".to_owned(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let copy = build(&source, "dbg", "shellcar-dbg-1", &debugger, owner);
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
}
