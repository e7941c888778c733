//! Sidecar mode: the debugger joins the workload's pod template through server-side apply
//! under the session's own field manager, and teardown applies an empty intent with the
//! same manager, so the API server removes exactly the session's fields.
//!
//! The intents are built by pure functions ([`change`] for a session's); [`apply`],
//! `dry_run` and [`teardown`] send them.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tracing::info;

use super::{DryRun, Outcome, Owner, Request, Trial, owns_fields, resolved, verdict};
use crate::api_error::ApiError;
use crate::crd::{DebugPod, TargetChange, TargetKind};
use crate::k8s::workload::{self, Rollout, Workload};
use crate::rules::validate::{self, Invalid};
use crate::session::context::Workloads;
use crate::session::error::Error;
use crate::session::status::{NO_REPLICAS, Problem, REPLICA_FAILURE};
use crate::{k8s::managed, naming, rules::exposure};

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
fn claims_share_process_namespace(current: Option<bool>, managed: &[ManagedFieldsEntry]) -> bool {
    current != Some(true)
        || owned_by(
            managed,
            &SHARE_PROCESS_NAMESPACE,
            naming::is_session_manager,
        )
}

/// The intent of one session on a workload: its container, the shared process namespace,
/// the shared `debugged` label and annotations naming the session and its requester.
fn sidecar_intent(
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
fn empty_intent(kind: TargetKind, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": kind.as_str(),
        "metadata": { "name": name },
    })
}

/// The change Sidecar mode makes to `workload`: the intent that adds `debugger`, marked
/// with `marks` (the session's name and requester). Both [`apply`] and `dry_run` send it.
pub fn change(workload: &Workload, marks: (&str, &str), debugger: &Container) -> Value {
    let claim_sharing = claims_share_process_namespace(
        workload
            .template
            .spec
            .as_ref()
            .and_then(|s| s.share_process_namespace),
        &workload.managed_fields,
    );
    sidecar_intent(
        workload.kind,
        &workload.name,
        marks,
        debugger,
        claim_sharing,
    )
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
    warn_if_recreated(req, &workload).await;
    if let Err(invalid) = validate::target(&req.session.spec, &workload) {
        return Ok(invalid.into());
    }
    let intent = change(&workload, (req.name, req.requester), &req.debugger());
    let Some(api) = workload::api(client, req.ns, kind) else {
        return Ok(req.missing());
    };
    // Sent only when it would change something: a settled session costs no request.
    let live = json!({ "spec": { "template": &workload.template } });
    let holds = managed::apply_holds(&intent, &live, &workload.managed_fields, &req.manager);
    if !holds {
        let params = PatchParams::apply(&req.manager);
        let sent = api
            .patch(&workload.name, &params, &Patch::Apply(&intent))
            .await;
        if let Err(e) = sent {
            return match ApiError::of(&e) {
                ApiError::Conflict(message) => Ok(Invalid::Conflict {
                    kind,
                    name: workload.name.clone(),
                    message,
                }
                .into()),
                _ => Err(Error::Apply {
                    kind,
                    name: workload.name.clone(),
                    source: e,
                }),
            };
        }
    }
    // The workload's own pods, by owner UID: a pod that only carries the annotation is not.
    let target = resolved(workload.kind, &workload.name, workload.uid.clone());
    let pods = req.debug_pods(Owner::Target(&target)).await?;
    Ok(applied(req, &workload, pods))
}

/// Tells the session's owner, with a Warning Event, that its target workload was deleted
/// and created again since the status last saw it.
async fn warn_if_recreated(req: &Request<'_>, workload: &Workload) {
    if let Some(previous) = req.previous_target.and_then(|t| t.uid.as_ref())
        && workload.uid.as_ref() != Some(previous)
    {
        let note = format!(
            "{} {} was deleted and created again; injecting into the new one",
            workload.kind, workload.name
        );
        req.ctx
            .publish(req.session, EventType::Warning, "TargetRecreated", note)
            .await;
    }
}

/// The outcome of an apply that put the debugger in `workload`'s template, whose pods
/// carrying it are `pods`.
fn applied(req: &Request<'_>, workload: &Workload, pods: Vec<DebugPod>) -> Outcome {
    let changes = req
        .started_at
        .map(|since| target_changes(&workload.managed_fields, since))
        .unwrap_or_default();
    Outcome::Applied {
        note: rollout_note(workload, &pods),
        blocked: blocked(workload),
        changes,
        exposure: workload
            .template
            .spec
            .as_ref()
            .map(exposure::report)
            .unwrap_or_default(),
        target: resolved(workload.kind, &workload.name, workload.uid.clone()),
        pods,
    }
}

/// Sends the session's [`change`] to its target workload with `dryRun=All`. The webhook
/// reads the workload itself (it has no watch cache); a target not there yet is skipped.
pub(super) async fn dry_run(trial: &Trial<'_>) -> Result<DryRun, Error> {
    let target = trial.target();
    let fetched = workload::fetch(trial.client, &trial.ns, target.kind, &target.name).await;
    let found = match fetched {
        Ok(found) => found,
        Err(e @ workload::Error::Kube { .. }) => return Err(e.into()),
        Err(e @ workload::Error::NoTemplate { .. }) => {
            return Ok(DryRun::Rejected(e.to_string()));
        }
    };
    let (Some(found), Some(api)) = (found, workload::api(trial.client, &trial.ns, target.kind))
    else {
        return Ok(DryRun::Skipped(format!(
            "{} {} not found",
            target.kind, target.name
        )));
    };
    let intent = change(&found, trial.marks(), &trial.debugger());
    let params = PatchParams::apply(&naming::field_manager(&trial.name)).dry_run();
    let sent = api
        .patch(&found.name, &params, &Patch::Apply(&intent))
        .await;
    verdict(sent.map(drop), |source| Error::Apply {
        kind: target.kind,
        name: found.name.clone(),
        source,
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
    if workload.rollout == Rollout::Paused && pods.is_empty() {
        return Some(format!(
            "Deployment {} is paused: its pods get the debugger once it is resumed",
            workload.name
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
fn target_changes(managed: &[ManagedFieldsEntry], since: Timestamp) -> Vec<TargetChange> {
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
/// behind the session's own apply must not leave the debugger in place. Returns the
/// workload as it was read, `None` when it is gone.
pub async fn teardown(
    client: &Client,
    workloads: &Workloads,
    ns: &str,
    kind: TargetKind,
    name: &str,
    manager: &str,
) -> Result<Option<Workload>, Error> {
    let owned = |w: &Workload| owns_fields(&w.managed_fields, manager);
    let workload = match workloads.cached(ns, kind, name).filter(owned) {
        Some(cached) => cached,
        None => match workload::fetch(client, ns, kind, name).await? {
            Some(fetched) if owned(&fetched) => fetched,
            other => return Ok(other),
        },
    };
    let Some(api) = workload::api(client, ns, kind) else {
        return Ok(Some(workload));
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
    Ok(Some(workload))
}

/// The pods among `pods` that run debugger `container` and are not on their way out.
pub fn carrying<'a>(pods: &'a [Pod], container: &'a str) -> impl Iterator<Item = &'a Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(move |p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.containers.iter().any(|c| c.name == container))
        })
}

/// What status and Events say about pods of `workload` that still run debugger
/// `container` after its template was restored, because the workload does not replace
/// them by itself: a ReplicaSet, an `OnDelete` StatefulSet or DaemonSet, a paused
/// Deployment. Pods on their way out and pods of a workload that rolls out by itself
/// (they are being replaced) are not leftovers.
pub fn leftovers(workload: &Workload, pods: &[Pod], container: &str) -> Vec<String> {
    let why = match workload.rollout {
        Rollout::Automatic => return Vec::new(),
        Rollout::OnDelete => format!(
            "{} {} replaces pods only when they are deleted; delete the pod to remove the debugger",
            workload.kind, workload.name
        ),
        Rollout::Paused => format!(
            "Deployment {} is paused; resume it to roll the debugger out",
            workload.name
        ),
    };
    carrying(pods, container)
        .map(|p| {
            format!(
                "pod {} still runs the debugger {container}: {why}",
                p.name_any()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
