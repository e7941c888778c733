//! The workloads a session can target, read through one dynamic code path.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ManagedFieldsEntry, OwnerReference,
};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::core::labels::Selector;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::crd::TargetKind;

/// Errors reading a workload.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {kind} {name}")]
    Kube {
        kind: TargetKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name} has no pod template")]
    NoTemplate { kind: TargetKind, name: String },
}

/// How a workload replaces its pods after its template changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// The workload's controller replaces pods by itself.
    Automatic,
    /// Pods take the new template only when they are deleted (ReplicaSets, `OnDelete`).
    OnDelete,
}

/// A workload with a pod template, as the operator needs to see it.
#[derive(Clone, Debug)]
pub struct Workload {
    pub kind: TargetKind,
    pub name: String,
    pub uid: Option<String>,
    pub template: PodTemplateSpec,
    pub managed_fields: Vec<ManagedFieldsEntry>,
    /// The controller that owns this workload, if any (a Deployment for its ReplicaSets).
    pub controller: Option<OwnerReference>,
    pub rollout: Rollout,
    pub deleting: bool,
    /// The workload's `spec.selector` (labels and expressions); `None` when it has none
    /// or it cannot be read, which selects no pods.
    pub selector: Option<Selector>,
    /// How many pods it asks for: `spec.replicas` (1 when unset); for a DaemonSet, the
    /// nodes it should run on (`status.desiredNumberScheduled`).
    pub replicas: Option<i64>,
    /// Why it cannot create pods: the message of its `ReplicaFailure` condition (a quota,
    /// a webhook, a Pod Security refusal).
    pub replica_failure: Option<String>,
}

/// The API resource of a workload kind; `None` for Pods, which have no template.
pub fn api_resource(kind: TargetKind) -> Option<ApiResource> {
    let (group, version) = match kind {
        TargetKind::Pod => return None,
        _ => ("apps", "v1"),
    };
    Some(ApiResource::from_gvk(&GroupVersionKind::gvk(
        group,
        version,
        kind.as_str(),
    )))
}

impl Workload {
    /// Reads the parts shellcar needs from a workload object.
    pub fn from_dynamic(kind: TargetKind, obj: &DynamicObject) -> Result<Self, Error> {
        let name = obj.name_any();
        let spec = obj.data.get("spec");
        let template = spec
            .and_then(|s| s.get("template"))
            .and_then(|t| serde_json::from_value::<PodTemplateSpec>(t.clone()).ok())
            .ok_or_else(|| Error::NoTemplate {
                kind,
                name: name.clone(),
            })?;
        let strategy = spec
            .and_then(|s| s.get("updateStrategy"))
            .and_then(|u| u.get("type"))
            .and_then(|t| t.as_str());
        let rollout = match (kind, strategy) {
            (TargetKind::ReplicaSet, _) | (_, Some("OnDelete")) => Rollout::OnDelete,
            _ => Rollout::Automatic,
        };
        let selector = spec
            .and_then(|s| s.get("selector"))
            .and_then(|s| serde_json::from_value::<LabelSelector>(s.clone()).ok())
            .and_then(|s| Selector::try_from(s).ok());
        let status = obj.data.get("status");
        let replicas = match kind {
            TargetKind::DaemonSet => status
                .and_then(|s| s.get("desiredNumberScheduled"))
                .and_then(serde_json::Value::as_i64),
            _ => Some(
                spec.and_then(|s| s.get("replicas"))
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(1),
            ),
        };
        let replica_failure = status
            .and_then(|s| s.get("conditions"))
            .and_then(serde_json::Value::as_array)
            .and_then(|conditions| {
                conditions.iter().find(|c| {
                    c.get("type").and_then(serde_json::Value::as_str) == Some("ReplicaFailure")
                        && c.get("status").and_then(serde_json::Value::as_str) == Some("True")
                })
            })
            .map(|c| {
                c.get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("it cannot create pods")
                    .to_owned()
            });
        Ok(Workload {
            replicas,
            replica_failure,
            selector,
            kind,
            uid: obj.uid(),
            template,
            managed_fields: obj.managed_fields().to_vec(),
            controller: obj
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .cloned(),
            rollout,
            deleting: obj.metadata.deletion_timestamp.is_some(),
            name,
        })
    }

    /// Names of the containers of the pod template.
    pub fn container_names(&self) -> Vec<&str> {
        self.template
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// The API of workloads of `kind` in `namespace`; `None` for Pods.
pub fn api(client: &Client, namespace: &str, kind: TargetKind) -> Option<Api<DynamicObject>> {
    api_resource(kind).map(|r| Api::namespaced_with(client.clone(), namespace, &r))
}

/// The workload `kind`/`name` in `namespace`, or `None` when it does not exist.
pub async fn fetch(
    client: &Client,
    namespace: &str,
    kind: TargetKind,
    name: &str,
) -> Result<Option<Workload>, Error> {
    let Some(api) = api(client, namespace, kind) else {
        return Ok(None);
    };
    let obj = api.get_opt(name).await.map_err(|source| Error::Kube {
        kind,
        name: name.to_owned(),
        source,
    })?;
    obj.map(|o| Workload::from_dynamic(kind, &o)).transpose()
}

/// The workload `kind`/`name` in `namespace` as the watch cache `cached` holds it, if it
/// holds it in full ([`slim`] keeps only the targets of sessions whole).
pub fn cached(
    cached: &Store<DynamicObject>,
    namespace: &str,
    kind: TargetKind,
    name: &str,
) -> Option<Workload> {
    let resource = api_resource(kind)?;
    let obj = cached.get(&ObjectRef::new_with(name, resource).within(namespace))?;
    obj.data.get("spec")?;
    Workload::from_dynamic(kind, &obj).ok()
}

/// The workload `kind`/`name` in `namespace` from the watch cache `cached` where it
/// holds it in full, else from the API server: a workload no session targeted when the
/// cache saw it last, or one the cache has not seen (yet).
pub async fn read(
    cached_in: &Store<DynamicObject>,
    client: &Client,
    namespace: &str,
    kind: TargetKind,
    name: &str,
) -> Result<Option<Workload>, Error> {
    match cached(cached_in, namespace, kind, name) {
        Some(found) => Ok(Some(found)),
        None => fetch(client, namespace, kind, name).await,
    }
}

/// Slims a workload for the watch cache to what [`Workload::from_dynamic`] reads, so a
/// cluster of many workloads costs little memory. A workload no session targets
/// (`targeted` false) keeps only its identity: a session that comes to target it reads
/// it once from the API server, and its next change (the session's own apply) brings it
/// into the cache whole.
pub fn slim(obj: &mut DynamicObject, targeted: bool) {
    let meta = &mut obj.metadata;
    meta.annotations = None;
    meta.labels = None;
    meta.finalizers = None;
    if !targeted {
        meta.managed_fields = None;
        meta.owner_references = None;
        obj.data = serde_json::json!({});
        return;
    }
    // Others' entries matter only for whether (and when) they changed the pod template
    // (sidecar::target_changes), and for who holds shareProcessNamespace
    // (sidecar::claims_share_process_namespace): keep those, and the sessions' own.
    if let Some(entries) = meta.managed_fields.as_mut() {
        entries.retain(|e| {
            e.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:template").is_some())
        });
    }
    let Some(data) = obj.data.as_object_mut() else {
        return;
    };
    if let Some(spec) = data.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.retain(|k, _| {
            matches!(
                k.as_str(),
                "template" | "updateStrategy" | "selector" | "replicas"
            )
        });
    }
    if let Some(status) = data.get_mut("status").and_then(|s| s.as_object_mut()) {
        status.retain(|k, _| matches!(k.as_str(), "desiredNumberScheduled" | "conditions"));
        if let Some(conditions) = status.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            conditions.retain(|c| c.get("type").and_then(|t| t.as_str()) == Some("ReplicaFailure"));
            for c in conditions.iter_mut() {
                if let Some(c) = c.as_object_mut() {
                    c.retain(|k, _| matches!(k.as_str(), "type" | "status" | "message"));
                }
            }
        }
    }
    data.retain(|k, _| matches!(k.as_str(), "spec" | "status"));
}

/// What a session sees of a slimmed workload: its identity, generation (its spec), the
/// status [`slim`] keeps, and whether it is being deleted. Changes to anything else (the
/// status a workload controller writes while pods come and go) wake no session.
pub fn fingerprint(obj: &DynamicObject) -> u64 {
    let mut hasher = DefaultHasher::new();
    obj.metadata.uid.hash(&mut hasher);
    obj.metadata.generation.hash(&mut hasher);
    obj.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    obj.data
        .get("status")
        .map(ToString::to_string)
        .hash(&mut hasher);
    hasher.finish()
}

/// The pod spec the debugger would join in `namespace`: a Pod target's own spec, a
/// workload's template; `None` when the target does not exist (yet) or has no template.
pub async fn pod_spec(
    client: &Client,
    namespace: &str,
    kind: TargetKind,
    name: &str,
) -> Result<Option<PodSpec>, Error> {
    if kind == TargetKind::Pod {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let pod = pods.get_opt(name).await.map_err(|source| Error::Kube {
            kind,
            name: name.to_owned(),
            source,
        })?;
        return Ok(pod.and_then(|p| p.spec));
    }
    match fetch(client, namespace, kind, name).await {
        Ok(found) => Ok(found.and_then(|w| w.template.spec)),
        Err(Error::NoTemplate { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fixture(yaml: &str) -> Workload {
        let obj: DynamicObject = serde_yaml::from_str(yaml).unwrap();
        let kind: TargetKind =
            serde_json::from_value(serde_json::Value::String(obj.types.clone().unwrap().kind))
                .unwrap();
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
        let mut writer = kube::runtime::reflector::store::Writer::new(
            api_resource(TargetKind::DaemonSet).unwrap(),
        );
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(obj));
        let store = writer.as_reader();
        assert!(cached(&store, "shop", TargetKind::DaemonSet, "agent").is_none());
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
}
