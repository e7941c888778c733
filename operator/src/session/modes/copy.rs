//! Copy mode: a copy of a pod that shares its process namespace and carries the debugger,
//! and joins nothing (no Service, no ReplicaSet). Teardown deletes the copy; the session
//! also owns it, so the garbage collector removes it if teardown never runs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::{DryRun, Outcome, Owner, Request, Trial, resolved, select, verdict};
use crate::api_error::ApiError;
use crate::crd::DebugSession;
use crate::k8s::owners;
use crate::rules::validate::{self, Invalid};
use crate::session::error::Error;
use crate::{naming, rules::exposure};

/// The copy of `source` for session `session`, named `name`, with `debugger` added and
/// owned by `owner` (the session), so that it is garbage collected with the session even
/// if teardown never ran.
///
/// Labels are replaced by shellcar's own, so no Service selects the copy and no
/// ReplicaSet adopts it; probes are removed, so a paused or signalled process does not get
/// the copy restarted; the node is left to the scheduler, as `kubectl debug --copy-to` does.
fn build(
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

/// The change Copy mode makes: the copy of `source` carrying `debugger`, marked with
/// `marks` (the session's name and requester) and owned by the session through `owner`.
/// Both [`apply`] and `dry_run` send it.
pub fn change(
    source: &Pod,
    marks: (&str, &str),
    debugger: &Container,
    mut owner: OwnerReference,
) -> Result<Pod, Invalid> {
    validate::joinable_pod(source)?;
    // Setting blockOwnerDeletion needs rights on the session's finalizers.
    owner.block_owner_deletion = None;
    Ok(build(
        source,
        marks,
        &naming::copy_name(marks.0),
        debugger,
        owner,
    ))
}

/// Creates the session's copy of one running pod of the target, unless it exists.
///
/// The copy is the session's only when the session controls it (its owner reference, by
/// UID). A pod under the copy's name that it does not control (made by someone else,
/// perhaps while the session waited for approval) is never adopted, listed or deleted:
/// the session is refused with [`Invalid::NameTaken`] and the pod left as it is.
pub async fn apply(req: &Request<'_>) -> Result<Outcome, Error> {
    let copy_name = naming::copy_name(req.name);
    let session_uid = req.session.uid().ok_or(Error::NoUid)?;
    let existing = req
        .pods()
        .get_opt(&copy_name)
        .await
        .map_err(Error::pod("reading", &copy_name))?;
    if let Some(pod) = &existing
        && !is_copy_of(pod, &session_uid)
    {
        return Ok(Invalid::NameTaken { pod: copy_name }.into());
    }
    let Some((target, pods)) = req.target_pods().await? else {
        if existing.is_some() {
            // The copy outlives its source: it is a copy.
            let target = req
                .previous_target
                .cloned()
                .unwrap_or_else(|| resolved(req.target().kind, &req.target().name, None));
            return Ok(Outcome::Applied {
                target,
                pods: req.debug_pods(Owner::Session).await?,
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
    if existing.is_none() {
        let selection = req.session.spec.pods;
        let Some(source) = select(pods, selection, req.name, &req.container)
            .into_iter()
            .next()
        else {
            return Ok(Outcome::Missing {
                message: format!("{} {} has no running pod to copy", target.kind, target.name),
            });
        };
        let owner = req.session.controller_owner_ref(&()).ok_or(Error::NoUid)?;
        let pod = match change(&source, (req.name, req.requester), &req.debugger(), owner) {
            Ok(pod) => pod,
            Err(invalid) => return Ok(invalid.into()),
        };
        match req.pods().create(&PostParams::default(), &pod).await {
            Ok(_) => info!(copy = %copy_name, source = %source.name_any(), "created a copy"),
            Err(e) => match ApiError::of(&e) {
                // Created since it was read: by an earlier reconcile of this session that
                // did not see it yet, or by someone else, which the session must not adopt.
                ApiError::Conflict(_) => {
                    let now = req
                        .pods()
                        .get_opt(&copy_name)
                        .await
                        .map_err(Error::pod("reading", &copy_name))?;
                    if now.is_some_and(|p| !is_copy_of(&p, &session_uid)) {
                        return Ok(Invalid::NameTaken { pod: copy_name }.into());
                    }
                }
                _ => return Err(Error::pod("creating", &copy_name)(e)),
            },
        }
    }
    Ok(Outcome::Applied {
        target,
        pods: req.debug_pods(Owner::Session).await?,
        note: None,
        exposure,
        blocked: None,
        changes: Vec::new(),
    })
}

/// True when `pod` is the copy of the session with UID `session_uid`: the session
/// controls it. Its annotations (which anyone could write) do not count.
fn is_copy_of(pod: &Pod, session_uid: &str) -> bool {
    owners::controller(&pod.metadata).is_some_and(|o| o.uid == session_uid)
}

/// Deletes the copy of session `session` (UID `session_uid`), if there is one: the pod
/// under the copy's name that the session controls, and no other. The delete is bound to
/// that pod's UID, so a pod put under the same name meanwhile is not deleted.
pub async fn teardown(
    pods: &Api<Pod>,
    session: &str,
    session_uid: Option<&str>,
) -> Result<(), Error> {
    let copy_name = naming::copy_name(session);
    let Some(session_uid) = session_uid else {
        return Ok(());
    };
    let Some(copy) = pods
        .get_opt(&copy_name)
        .await
        .map_err(Error::pod("reading", &copy_name))?
    else {
        return Ok(());
    };
    if !is_copy_of(&copy, session_uid) || copy.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: copy.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&copy_name, &params).await {
        Ok(_) => info!(copy = %copy_name, "deleted the copy"),
        Err(e) => match ApiError::of(&e) {
            // Gone, or (a failed precondition) replaced by a pod that is not the copy.
            ApiError::NotFound | ApiError::Conflict(_) => {}
            _ => return Err(Error::pod("deleting", &copy_name)(e)),
        },
    }
    Ok(())
}

/// The uid a dry run's owner reference carries when the session has none to give.
const NO_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Sends the session's [`change`] for the first pod it would copy with `dryRun=All`.
pub(super) async fn dry_run(trial: &Trial<'_>) -> Result<DryRun, Error> {
    let source = match trial.first_pod().await {
        Ok(source) => source,
        Err(skipped) => return Ok(skipped),
    };
    let pod = match change(
        &source,
        trial.marks(),
        &trial.debugger(),
        dry_run_owner(trial.session),
    ) {
        Ok(pod) => pod,
        Err(invalid) => return Ok(DryRun::Rejected(invalid.to_string())),
    };
    let pods: Api<Pod> = Api::namespaced(trial.client.clone(), &trial.ns);
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let copy_name = naming::copy_name(&trial.name);
    verdict(
        pods.create(&params, &pod).await.map(drop),
        Error::pod("creating", &copy_name),
    )
}

/// The owner reference of the copy in a dry run: the session's, as the validating
/// webhook sees the uid the API server gave it, or one of its name with a placeholder
/// uid.
fn dry_run_owner(session: &DebugSession) -> OwnerReference {
    let mut owner = session
        .controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: DebugSession::api_version(&()).into_owned(),
            kind: DebugSession::kind(&()).into_owned(),
            name: session.name_any(),
            uid: NO_UID.to_owned(),
            controller: Some(true),
            block_owner_deletion: None,
        });
    if owner.uid.is_empty() {
        owner.uid = NO_UID.to_owned();
    }
    owner
}

#[cfg(test)]
mod tests;
