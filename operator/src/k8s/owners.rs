//! Which pods belong to what, by the UIDs of their owner references.
//!
//! Names and annotations can be chosen by anyone who may create a pod in the namespace;
//! the UID of an owner cannot be pointed at another object. So a pod counts as a
//! target's (or a session's) only through its controller's UID: a Pod target is its own
//! UID; a StatefulSet, DaemonSet or ReplicaSet controls its pods directly; a Deployment
//! controls ReplicaSets that control its pods; a session controls its copy.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::{ResolvedTarget, TargetKind};
use crate::k8s::workload::{self, Error};

/// The objects whose pods count: pods controlled by one of `controllers`, and the pods
/// whose own UID is one of `pods`. Owns nothing when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners {
    controllers: BTreeSet<String>,
    pods: BTreeSet<String>,
}

impl Owners {
    /// The pods controlled by the object with UID `uid`.
    pub fn controller(uid: &str) -> Self {
        Owners {
            controllers: BTreeSet::from([uid.to_owned()]),
            pods: BTreeSet::new(),
        }
    }

    /// The one pod with UID `uid`.
    pub fn pod(uid: &str) -> Self {
        Owners {
            controllers: BTreeSet::new(),
            pods: BTreeSet::from([uid.to_owned()]),
        }
    }

    /// The pods of a Deployment with UID `deployment`, through those of `replica_sets`
    /// (their metadata) that it controls.
    pub fn deployment<'a>(
        deployment: &str,
        replica_sets: impl IntoIterator<Item = &'a ObjectMeta>,
    ) -> Self {
        let controllers = replica_sets
            .into_iter()
            .filter(|rs| controller_uid(rs) == Some(deployment))
            .filter_map(|rs| rs.uid.clone())
            .collect();
        Owners {
            controllers,
            pods: BTreeSet::new(),
        }
    }

    /// Adds the pods `other` owns.
    pub fn extend(&mut self, other: Owners) {
        self.controllers.extend(other.controllers);
        self.pods.extend(other.pods);
    }

    /// True when `pod` is one of these owners' pods.
    pub fn owns(&self, pod: &Pod) -> bool {
        pod.metadata
            .uid
            .as_ref()
            .is_some_and(|uid| self.pods.contains(uid))
            || controller_uid(&pod.metadata).is_some_and(|uid| self.controllers.contains(uid))
    }
}

/// The controller reference of an object (the owner reference with `controller: true`).
pub fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// The UID of the controller of an object.
fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    controller(meta).map(|o| o.uid.as_str())
}

/// The owners of `target`'s pods, as far as `pods` need them: for a Deployment, the
/// ReplicaSets that control any of `pods` are looked up, in the watch cache
/// `replica_sets` where it knows them by that UID, else from the API server. A target
/// without a UID owns nothing.
pub async fn of(
    client: &Client,
    replica_sets: Option<&Store<DynamicObject>>,
    namespace: &str,
    target: &ResolvedTarget,
    pods: &[Pod],
) -> Result<Owners, Error> {
    let Some(uid) = target.uid.as_deref() else {
        return Ok(Owners::default());
    };
    match target.kind {
        TargetKind::Pod => Ok(Owners::pod(uid)),
        TargetKind::StatefulSet | TargetKind::DaemonSet | TargetKind::ReplicaSet => {
            Ok(Owners::controller(uid))
        }
        TargetKind::Deployment => {
            let wanted = replica_sets_of(pods);
            let mut found = Vec::new();
            for (name, rs_uid) in wanted {
                if let Some(meta) =
                    replica_set(client, replica_sets, namespace, &name, &rs_uid).await?
                {
                    found.push(meta);
                }
            }
            Ok(Owners::deployment(uid, &found))
        }
    }
}

/// The ReplicaSets (name to UID) that control any of `pods`.
fn replica_sets_of(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .filter_map(|p| controller(&p.metadata))
        .filter(|o| o.kind == "ReplicaSet")
        .map(|o| (o.name.clone(), o.uid.clone()))
        .collect()
}

/// The metadata of ReplicaSet `name` in `namespace` if its UID is `uid`: from `cached`
/// when it holds that one, else from the API server (a cache a moment behind a rollout).
async fn replica_set(
    client: &Client,
    cached: Option<&Store<DynamicObject>>,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<Option<ObjectMeta>, Error> {
    let kind = TargetKind::ReplicaSet;
    let same = |meta: &ObjectMeta| meta.uid.as_deref() == Some(uid);
    if let Some(store) = cached
        && let Some(resource) = workload::api_resource(kind)
        && let Some(obj) = store.get(&ObjectRef::new_with(name, resource).within(namespace))
        && same(&obj.metadata)
    {
        return Ok(Some(obj.metadata.clone()));
    }
    let Some(api) = workload::api(client, namespace, kind) else {
        return Ok(None);
    };
    let fetched = api.get_opt(name).await.map_err(|source| Error::Kube {
        kind,
        name: name.to_owned(),
        source,
    })?;
    Ok(fetched.map(|rs| rs.metadata).filter(same))
}

/// The pods of `pods` that `owners` owns.
pub fn owned(pods: Vec<Pod>, owners: &Owners) -> Vec<Pod> {
    pods.into_iter().filter(|p| owners.owns(p)).collect()
}

#[cfg(test)]
mod tests;
