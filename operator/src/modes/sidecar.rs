//! Sidecar mode: the debugger joins the workload's pod template through server-side apply
//! under the session's own field manager, and teardown applies an empty intent with the
//! same manager, so the API server removes exactly the session's fields.
//!
//! The intents are built by pure functions; [`apply`] and [`teardown`] send them.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::Client;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::{Value, json};
use tracing::info;

use super::{Outcome, Request, owns_fields, resolved};
use crate::context::{Error, Workloads};
use crate::crd::{DebugPod, TargetChange, TargetKind};
use crate::status::{NO_REPLICAS, Problem, REPLICA_FAILURE};
use crate::validate::{self, Invalid};
use crate::workload::{self, Rollout, Workload};
use crate::{exposure, managed, naming};

const SHARE_PROCESS_NAMESPACE: [&str; 4] =
    ["f:spec", "f:template", "f:spec", "f:shareProcessNamespace"];

/// True when a field manager that `pred` accepts owns the field at `path`.
fn owned_by(managed: &[ManagedFieldsEntry], path: &[&str], pred: impl Fn(&str) -> bool) -> bool {
    managed.iter().any(|entry| {
        entry.manager.as_deref().is_some_and(&pred)
            && entry.fields_v1.as_ref().is_some_and(|fields| {
                path.iter()
                    .try_fold(&fields.0, |node, key| node.get(key))
                    .is_some()
            })
    })
}

/// Whether a session's intent should claim `shareProcessNamespace: true`.
///
/// Claim it when the template does not share yet, or when another shellcar session already
/// holds it (sharing ownership keeps it until the last session ends). Do not claim a `true`
/// that only the user set: it must survive teardown even if the user's manager is missing
/// from `managedFields`, which happens for objects written before field tracking.
pub fn claims_share_process_namespace(
    current: Option<bool>,
    managed: &[ManagedFieldsEntry],
) -> bool {
    current != Some(true)
        || owned_by(
            managed,
            &SHARE_PROCESS_NAMESPACE,
            naming::is_session_manager,
        )
}

/// The intent of one session on a workload: its container, the shared process namespace,
/// the shared `debugged` label and annotations naming the session and its requester.
pub fn sidecar_intent(
    kind: TargetKind,
    name: &str,
    (session, requester): (&str, &str),
    container: &Container,
    share_process_namespace: bool,
) -> Value {
    let mut pod_spec = json!({ "containers": [container] });
    if share_process_namespace {
        pod_spec["shareProcessNamespace"] = json!(true);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind.as_str(),
        "metadata": { "name": name },
        "spec": {
            "template": {
                "metadata": {
                    "labels": { naming::DEBUGGED_LABEL: "true" },
                    "annotations": naming::marks(&container.name, session, requester),
                },
                "spec": pod_spec,
            }
        }
    })
}

/// The empty intent that, applied with a session's field manager, removes every field
/// that session owns and nothing that anyone else owns.
pub fn empty_intent(kind: TargetKind, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": kind.as_str(),
        "metadata": { "name": name },
    })
}

/// Adds the debugger to the target workload's pod template.
pub async fn apply(req: &Request<'_>) -> Result<Outcome, Error> {
    let target = req.target();
    let kind = target.kind;
    let client = &req.ctx.client;
    let workloads = &req.ctx.caches.workloads;
    let Some(workload) = workloads
        .read(client, req.ns, kind, &target.name)
        .await?
        .filter(|w| !w.deleting)
    else {
        return Ok(req.missing());
    };
    if let Some(previous) = req.previous_target.and_then(|t| t.uid.as_ref())
        && workload.uid.as_ref() != Some(previous)
    {
        let note = format!(
            "{kind} {} was deleted and created again; injecting into the new one",
            workload.name
        );
        req.ctx
            .publish(req.session, EventType::Warning, "TargetRecreated", note)
            .await;
    }
    if let Err(invalid) = validate::target(&req.session.spec, &workload) {
        return Ok(invalid.into());
    }
    let claim_sharing = claims_share_process_namespace(
        workload
            .template
            .spec
            .as_ref()
            .and_then(|s| s.share_process_namespace),
        &workload.managed_fields,
    );
    let intent = sidecar_intent(
        kind,
        &workload.name,
        (req.name, req.requester),
        &req.debugger(),
        claim_sharing,
    );
    let Some(api) = workload::api(client, req.ns, kind) else {
        return Ok(req.missing());
    };
    let params = PatchParams::apply(&req.manager);
    // Sent only when it would change something: a settled session costs no request.
    let live = json!({ "spec": { "template": &workload.template } });
    let holds = managed::apply_holds(&intent, &live, &workload.managed_fields, &req.manager);
    let sent = if holds {
        Ok(())
    } else {
        api.patch(&workload.name, &params, &Patch::Apply(&intent))
            .await
            .map(drop)
    };
    match sent {
        Ok(()) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            return Ok(Invalid::Conflict {
                kind,
                name: workload.name.clone(),
                message: status.message,
            }
            .into());
        }
        Err(source) => {
            return Err(Error::Apply {
                kind,
                name: workload.name.clone(),
                source,
            });
        }
    }
    let pods = req.debug_pods().await?;
    let changes = req
        .started_at
        .map(|since| target_changes(&workload.managed_fields, since))
        .unwrap_or_default();
    Ok(Outcome::Applied {
        note: rollout_note(&workload, &pods),
        blocked: blocked(&workload),
        changes,
        exposure: workload
            .template
            .spec
            .as_ref()
            .map(exposure::report)
            .unwrap_or_default(),
        target: resolved(kind, &workload.name, workload.uid.clone()),
        pods,
    })
}

/// What a person should know about the rollout: pods that follow only when deleted, and
/// on how many nodes a DaemonSet runs the debugger.
fn rollout_note(workload: &Workload, pods: &[DebugPod]) -> Option<String> {
    if workload.rollout == Rollout::OnDelete && pods.is_empty() {
        return Some(format!(
            "{} {} replaces pods only when they are deleted: delete a pod to get the debugger",
            workload.kind, workload.name
        ));
    }
    if workload.kind == TargetKind::DaemonSet {
        let running = pods.iter().filter(|p| p.ready).count();
        let nodes = workload.replicas.unwrap_or_default();
        return Some(format!(
            "DaemonSet {} runs the debugger on {running} of {nodes} nodes",
            workload.name
        ));
    }
    None
}

/// Why the workload cannot run the debugger at all: no replicas, or no pods created.
fn blocked(workload: &Workload) -> Option<Problem> {
    let (kind, name) = (workload.kind, &workload.name);
    if let Some(failure) = &workload.replica_failure {
        return Some(Problem {
            reason: REPLICA_FAILURE,
            message: format!("{kind} {name} cannot create pods: {failure}"),
        });
    }
    (kind != TargetKind::DaemonSet && workload.replicas == Some(0)).then(|| Problem {
        reason: NO_REPLICAS,
        message: format!("{kind} {name} has 0 replicas; scale it up to get the debugger"),
    })
}

/// The field managers other than shellcar's that changed the pod template after `since`
/// (read from managedFields: each manager's entry carries the time of its last change).
pub fn target_changes(managed: &[ManagedFieldsEntry], since: Timestamp) -> Vec<TargetChange> {
    let mut changes: Vec<TargetChange> = managed
        .iter()
        .filter(|e| e.subresource.as_deref().is_none_or(str::is_empty))
        .filter(|e| {
            e.manager
                .as_deref()
                .is_some_and(|m| !naming::is_session_manager(m) && m != naming::CONTROLLER_MANAGER)
        })
        .filter(|e| e.time.as_ref().is_some_and(|t| t.0 > since))
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:template").is_some())
        })
        .filter_map(|e| {
            Some(TargetChange {
                manager: e.manager.clone()?,
                time: e.time.clone()?,
            })
        })
        .collect();
    changes.sort_by(|a, b| a.manager.cmp(&b.manager));
    changes.dedup_by(|a, b| a.manager == b.manager);
    changes
}

/// Removes everything `manager` owns on workload `kind` `name`, if it exists and the
/// manager owns anything there.
///
/// The watch cache answers when it says the manager owns fields: the empty intent goes
/// out without a read. Where it says not, the API server is asked: a cache a moment
/// behind the session's own apply must not leave the debugger in place.
pub async fn teardown(
    client: &Client,
    workloads: &Workloads,
    ns: &str,
    kind: TargetKind,
    name: &str,
    manager: &str,
) -> Result<(), Error> {
    let owned = |w: &Workload| owns_fields(&w.managed_fields, manager);
    if !workloads.cached(ns, kind, name).is_some_and(|w| owned(&w)) {
        let Some(workload) = workload::fetch(client, ns, kind, name).await? else {
            return Ok(());
        };
        if !owned(&workload) {
            return Ok(());
        }
    }
    let Some(api) = workload::api(client, ns, kind) else {
        return Ok(());
    };
    api.patch(
        name,
        &PatchParams::apply(manager),
        &Patch::Apply(empty_intent(kind, name)),
    )
    .await
    .map_err(|source| Error::Teardown {
        kind,
        name: name.to_owned(),
        source,
    })?;
    info!(%kind, %name, %manager, "removed the debugger");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Debugger;
    use crate::debugger;

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
}
