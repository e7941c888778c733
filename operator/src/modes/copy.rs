//! Copy mode: a copy of a pod that shares its process namespace and carries the debugger,
//! and joins nothing (no Service, no ReplicaSet). Teardown deletes the copy; the session
//! also owns it, so the garbage collector removes it if teardown never runs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::{Outcome, Request, resolved, select, target_pods};
use crate::context::Error;
use crate::crd::TargetKind;
use crate::validate::Invalid;
use crate::{exposure, naming};

/// The copy of `source` for session `session`, named `name`, with `debugger` added and
/// owned by `owner` (the session), so that it is garbage collected with the session even
/// if teardown never ran.
///
/// Labels are replaced by shellcar's own, so no Service selects the copy and no
/// ReplicaSet adopts it; probes are removed, so a paused or signalled process does not get
/// the copy restarted; the node is left to the scheduler, as `kubectl debug --copy-to` does.
pub fn build(
    source: &Pod,
    (session, requester): (&str, &str),
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
            annotations: Some({
                let mut marks = naming::marks(&debugger.name, session, requester);
                marks.insert(naming::COPY_OF_ANNOTATION.to_owned(), source_name);
                marks
            }),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Creates the session's copy of one running pod of the target, unless it exists.
pub async fn apply(req: &Request<'_>) -> Result<Outcome, Error> {
    let copy_name = naming::copy_name(req.name);
    let existing = req
        .pods()
        .get_opt(&copy_name)
        .await
        .map_err(Error::pod("reading", &copy_name))?;
    let Some((target, pods)) = target_pods(&req.ctx.client, req.ns, req.target()).await? else {
        if existing.is_some() {
            // The copy outlives its source: it is a copy.
            let target = req
                .previous_target
                .cloned()
                .unwrap_or_else(|| resolved(req.target().kind, &req.target().name, None));
            return Ok(Outcome::Applied {
                target,
                pods: req.debug_pods().await?,
                note: Some("the copied pod no longer exists".to_owned()),
                exposure: Vec::new(),
                blocked: None,
                changes: Vec::new(),
            });
        }
        return Ok(req.missing());
    };
    let exposure = pods
        .first()
        .and_then(|p| p.spec.as_ref())
        .map(exposure::report)
        .unwrap_or_default();
    match existing {
        Some(pod) if !is_copy_of(&pod, req.name, &req.container) => {
            return Ok(Invalid::NameConflict { pod: copy_name }.into());
        }
        Some(_) => {}
        None => {
            let selection = req.session.spec.pods;
            let Some(source) = select(pods, selection, req.name, &req.container)
                .into_iter()
                .next()
            else {
                return Ok(Outcome::Missing {
                    message: format!("{} {} has no running pod to copy", target.kind, target.name),
                });
            };
            if let Some(spec) = &source.spec
                && spec.host_pid == Some(true)
            {
                return Ok(Invalid::HostPid {
                    kind: TargetKind::Pod,
                    name: source.name_any(),
                }
                .into());
            }
            let mut owner = req.session.controller_owner_ref(&()).ok_or(Error::NoUid)?;
            // Setting blockOwnerDeletion needs rights on the session's finalizers.
            owner.block_owner_deletion = None;
            let marks = (req.name, req.requester);
            let pod = build(&source, marks, &copy_name, &req.debugger(), owner);
            match req.pods().create(&PostParams::default(), &pod).await {
                Ok(_) => info!(copy = %copy_name, source = %source.name_any(), "created a copy"),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(Error::pod("creating", &copy_name)(e)),
            }
        }
    }
    Ok(Outcome::Applied {
        target,
        pods: req.debug_pods().await?,
        note: None,
        exposure,
        blocked: None,
        changes: Vec::new(),
    })
}

/// True when `pod` is the copy made by session `session`, whose debugger is `container`.
fn is_copy_of(pod: &Pod, session: &str, container: &str) -> bool {
    pod.annotations()
        .get(&naming::session_annotation(container))
        .map(String::as_str)
        == Some(session)
}

/// Deletes the copy of session `session` (whose debugger is `container`), if there is one.
pub async fn teardown(pods: &Api<Pod>, session: &str, container: &str) -> Result<(), Error> {
    let copy_name = naming::copy_name(session);
    let Some(copy) = pods
        .get_opt(&copy_name)
        .await
        .map_err(Error::pod("reading", &copy_name))?
    else {
        return Ok(());
    };
    if !is_copy_of(&copy, session, container) || copy.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    match pods.delete(&copy_name, &DeleteParams::default()).await {
        Ok(_) => info!(copy = %copy_name, "deleted the copy"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(Error::pod("deleting", &copy_name)(e)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        let debugger =
            crate::debugger::container(&Debugger::default(), "shellcar-dbg-1", "busybox");
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
}
