//! The orphan sweep: a debugger whose session is gone is removed (Sidecar) or stopped
//! (Ephemeral) all the same.
//!
//! A session's finalizer holds it until its debugger is removed, and the
//! ValidatingAdmissionPolicy lets only the operator (and cluster admins) remove that
//! finalizer. A cluster admin who strips it anyway, or a restore of workloads from a
//! backup, can still leave a workload's pod template carrying a debugger that no session
//! stands for. The leader looks at start and every `--sweep-interval`: each server-side
//! apply field manager of a session (`shellcar.dev/<session>`) on a Deployment,
//! StatefulSet, DaemonSet or ReplicaSet of a namespace where no session of that name
//! exists is removed, as the session's own teardown would, and a Warning Event
//! `OrphanRemoved` on the workload says so. With `--watch-namespaces`, only the watched
//! namespaces are swept.
//!
//! An Ephemeral debugger whose session is gone is found by the marks on its pod (the
//! session annotation of a container named as that session's debugger): it is stopped
//! from the operator's image and its marks are released, as its session's teardown would,
//! with the same Event on the pod. Copies need no sweep: each is owned by its session, and
//! the garbage collector deletes it with the session.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::events::{Event, EventType};
use tracing::{info, warn};

use crate::crd::{DebugSession, EphemeralTeardown, TargetKind};
use crate::k8s::workload;
use crate::naming;
use crate::runtime::error_chain;
use crate::session::context::Context;
use crate::session::modes::{ephemeral, sidecar};
use crate::session::scope::Scope;

/// The kinds whose pod templates Sidecar sessions change.
const KINDS: [TargetKind; 4] = [
    TargetKind::Deployment,
    TargetKind::StatefulSet,
    TargetKind::DaemonSet,
    TargetKind::ReplicaSet,
];

/// A session's field manager found on a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub namespace: String,
    pub kind: TargetKind,
    pub name: String,
    pub uid: Option<String>,
    pub manager: String,
}

/// The managers in `found` that no session in `sessions` stands for: none of the sessions
/// of that namespace has that field manager.
pub fn orphans<'a>(
    found: Vec<Found>,
    sessions: impl IntoIterator<Item = &'a DebugSession>,
) -> Vec<Found> {
    let alive: BTreeSet<(String, String)> = sessions
        .into_iter()
        .filter_map(|s| {
            let name = s.metadata.name.as_deref()?;
            let ns = s.metadata.namespace.clone()?;
            Some((ns, naming::field_manager(name)))
        })
        .collect();
    found
        .into_iter()
        .filter(|f| !alive.contains(&(f.namespace.clone(), f.manager.clone())))
        .collect()
}

/// An Ephemeral debugger in a pod, as the pod's marks name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marked {
    pub namespace: String,
    pub pod: String,
    pub session: String,
    pub container: String,
}

/// The Ephemeral debuggers in `pods` whose session is not among `sessions`: a session
/// annotation `debug.shellcar.dev/<container>: <session>` where `<container>` is that
/// session's debugger and an ephemeral container of the pod. Sidecar pods carry the same
/// annotation from their template; their debugger is a regular container, swept with the
/// template.
pub fn ephemeral_orphans<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    sessions: impl IntoIterator<Item = &'a DebugSession>,
) -> Vec<Marked> {
    let alive: BTreeSet<(String, String)> = sessions
        .into_iter()
        .filter_map(|s| Some((s.metadata.namespace.clone()?, s.metadata.name.clone()?)))
        .collect();
    let mut found = Vec::new();
    for pod in pods {
        let namespace = pod.namespace().unwrap_or_default();
        let ephemeral = pod
            .spec
            .iter()
            .flat_map(|s| s.ephemeral_containers.iter().flatten());
        for container in ephemeral.map(|c| c.name.as_str()) {
            let Some(session) = pod
                .annotations()
                .get(&naming::session_annotation(container))
            else {
                continue;
            };
            if naming::container_name(session) != container
                || alive.contains(&(namespace.clone(), session.clone()))
            {
                continue;
            }
            found.push(Marked {
                namespace: namespace.clone(),
                pod: pod.name_any(),
                session: session.clone(),
                container: container.to_owned(),
            });
        }
    }
    found
}

/// Stops and releases the orphaned Ephemeral debuggers among the debugged pods; returns
/// how many it handled.
async fn sweep_ephemeral(ctx: &Context) -> usize {
    let Some(store) = ctx.caches.debugged_pods.get() else {
        return 0;
    };
    let pods = store.state();
    let sessions = ctx.caches.sessions.state();
    let orphans = ephemeral_orphans(
        pods.iter().map(AsRef::as_ref),
        sessions.iter().map(AsRef::as_ref),
    );
    let mut handled = 0;
    for Marked {
        namespace,
        pod,
        session,
        container,
    } in orphans
    {
        // Read whole: the cache keeps no managedFields, which releasing the marks needs.
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let live = match api.get_opt(&pod).await {
            Ok(Some(live)) => live,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, %namespace, %pod, "reading a pod with an orphaned debugger");
                continue;
            }
        };
        let manager = naming::field_manager(&session);
        let teardown = ephemeral::Teardown {
            session: &session,
            container: &container,
            manager: &manager,
            policy: EphemeralTeardown::Leave,
            recycle: false,
            stopper: ctx.policy.stopper.as_ref(),
        };
        match ephemeral::teardown(&api, vec![live.clone()], &teardown).await {
            Ok(lines) => {
                handled += 1;
                info!(%namespace, %pod, %container, "stopped an orphaned ephemeral debugger");
                let note = format!(
                    "no DebugSession {session} exists in {namespace} (its finalizer was removed before its teardown): {}",
                    lines.join(" ").trim_end()
                );
                let reference = ObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    name: Some(pod.clone()),
                    namespace: Some(namespace.clone()),
                    uid: live.uid(),
                    ..Default::default()
                };
                publish_orphan(ctx, note, &reference).await;
            }
            Err(e) => {
                warn!(error = %error_chain(&e), %namespace, %pod, "stopping an orphaned ephemeral debugger")
            }
        }
    }
    handled
}

/// Publishes the Warning Event `OrphanRemoved` on `reference`.
async fn publish_orphan(ctx: &Context, note: String, reference: &ObjectReference) {
    let event = Event {
        type_: EventType::Warning,
        reason: "OrphanRemoved".to_owned(),
        note: Some(note),
        action: "Sweep".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, "could not publish an event");
    }
}

/// Every session field manager on every workload the controller watches, from a
/// metadata-only list per kind (and per watched namespace).
async fn find(ctx: &Context) -> Result<Vec<Found>, kube::Error> {
    let scope = Scope::of(&ctx.policy.namespaces);
    let mut found = Vec::new();
    for kind in KINDS {
        let Some(resource) = workload::api_resource(kind) else {
            continue;
        };
        for (_, api) in scope.apis_with(&ctx.client, &resource) {
            find_in(&api, kind, &mut found).await?;
        }
    }
    Ok(found)
}

/// Adds the session field managers on the workloads of `kind` that `api` lists to `found`.
async fn find_in(
    api: &Api<DynamicObject>,
    kind: TargetKind,
    found: &mut Vec<Found>,
) -> Result<(), kube::Error> {
    for object in api.list_metadata(&ListParams::default()).await?.items {
        let meta = object.metadata;
        let managers = meta.managed_fields.iter().flatten();
        for manager in managers.filter_map(|m| m.manager.as_deref()) {
            let one = Found {
                namespace: meta.namespace.clone().unwrap_or_default(),
                kind,
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone(),
                manager: manager.to_owned(),
            };
            // A manager may hold an Apply and an Update entry.
            if naming::is_session_manager(manager) && !found.contains(&one) {
                found.push(one);
            }
        }
    }
    Ok(())
}

/// One sweep; returns how many orphans it removed.
pub async fn sweep(ctx: &Context) -> Result<usize, kube::Error> {
    // Workloads first, sessions second: a session created in between has applied nothing
    // before it reached the cache, so it is never taken for an orphan.
    let found = find(ctx).await?;
    let sessions = ctx.caches.sessions.state();
    let orphans = orphans(found, sessions.iter().map(AsRef::as_ref));
    let mut removed = 0;
    for orphan in orphans {
        let Found {
            namespace,
            kind,
            name,
            uid,
            manager,
        } = &orphan;
        let workloads = &ctx.caches.workloads;
        match sidecar::teardown(&ctx.client, workloads, namespace, *kind, name, manager).await {
            Ok(_) => {
                removed += 1;
                info!(%namespace, %kind, %name, %manager, "removed an orphaned debugger");
                let note = format!(
                    "removed what field manager {manager} had added to the pod template: no DebugSession of that name exists in {namespace} (its finalizer was removed before its teardown)"
                );
                let reference = ObjectReference {
                    api_version: Some("apps/v1".to_owned()),
                    kind: Some(kind.as_str().to_owned()),
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    uid: uid.clone(),
                    ..Default::default()
                };
                publish_orphan(ctx, note, &reference).await;
            }
            Err(e) => {
                warn!(error = %error_chain(&e), %namespace, %kind, %name, "removing an orphaned debugger")
            }
        }
    }
    Ok(removed + sweep_ephemeral(ctx).await)
}

/// Sweeps once the sessions are known, then every `interval`, for as long as the leader
/// runs the controller.
pub async fn run(ctx: Arc<Context>, interval: Duration) {
    loop {
        match sweep(&ctx).await {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "orphan sweep"),
            Err(e) => warn!(error = %error_chain(&e), "orphan sweep"),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests;
