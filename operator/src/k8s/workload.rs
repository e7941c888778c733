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
    /// A paused Deployment: nothing rolls out until it is resumed.
    Paused,
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
        let paused = spec
            .and_then(|s| s.get("paused"))
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        let rollout = match (kind, strategy) {
            (TargetKind::ReplicaSet, _) | (_, Some("OnDelete")) => Rollout::OnDelete,
            (TargetKind::Deployment, _) if paused => Rollout::Paused,
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
/// (`targeted` false) keeps only its identity and its controller (which tells the
/// ReplicaSets of a Deployment, see [`crate::k8s::owners`]): a session that comes to
/// target it reads it once from the API server, and its next change (the session's own
/// apply) brings it into the cache whole.
pub fn slim(obj: &mut DynamicObject, targeted: bool) {
    let meta = &mut obj.metadata;
    meta.annotations = None;
    meta.labels = None;
    meta.finalizers = None;
    if !targeted {
        meta.managed_fields = None;
        if let Some(refs) = meta.owner_references.as_mut() {
            refs.retain(|o| o.controller == Some(true));
        }
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
                "template" | "updateStrategy" | "selector" | "replicas" | "paused"
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
mod tests;
