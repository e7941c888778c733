//! Pod observation: which pods carry a session's debugger, and whether it runs there or
//! why not, as Kubernetes says it. The modes report these pods; [`super::status`] turns
//! them into Ready's reason and message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerState, Pod};
use kube::ResourceExt;

use crate::crd::DebugPod;
use crate::k8s::owners::Owners;
use crate::naming;

/// Most pods `status.pods` lists, so that a session on a large DaemonSet or Deployment
/// keeps a status of bounded size.
const MAX_STATUS_PODS: usize = 50;

/// The pods of `namespace` that carry the debugger container of `session`, by name, at
/// most [`MAX_STATUS_PODS`].
///
/// A pod carries it when `owners` owns it (by owner UID: the session's target, or the
/// session itself for a copy) and its annotation names the session. The annotation alone
/// proves nothing: anyone who may create pods can write it. Terminating pods (old
/// replicas on their way out) are left out.
pub fn debug_pods(
    pods: &[Pod],
    owners: &Owners,
    namespace: &str,
    session: &str,
    container: &str,
) -> Vec<DebugPod> {
    let annotation = naming::session_annotation(container);
    let mut found: BTreeMap<String, DebugPod> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some()
            || pod.annotations().get(&annotation).map(String::as_str) != Some(session)
            || !owners.owns(pod)
        {
            continue;
        }
        let name = pod.name_any();
        // Sidecar and Copy debuggers are containers, Ephemeral ones ephemeral containers.
        let state = pod
            .status
            .iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.ephemeral_container_statuses.iter().flatten())
            })
            .find(|c| c.name == container)
            .and_then(|c| c.state.as_ref());
        let ready = state.is_some_and(|s| s.running.is_some());
        let (reason, message) = if ready {
            (None, None)
        } else {
            why_not_running(pod, state)
        };
        found.insert(
            name.clone(),
            DebugPod {
                attach: naming::attach_command(namespace, &name, container),
                container: container.to_owned(),
                copy_of: pod.annotations().get(naming::COPY_OF_ANNOTATION).cloned(),
                name,
                ready,
                reason,
                message,
            },
        );
    }
    found.into_values().take(MAX_STATUS_PODS).collect()
}

/// Waiting reasons of a container that will not run without someone's help: the Ready
/// reason becomes the waiting reason, and a Warning Event says so.
pub const FAILING_REASONS: [&str; 9] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
    UNSCHEDULABLE,
];

/// The reason of a pod the scheduler cannot place (its PodScheduled condition's reason).
pub const UNSCHEDULABLE: &str = "Unschedulable";

/// Why the debugger container in `pod` (with `state`) is not running, as Kubernetes
/// says it: the container's waiting reason when it is one of [`FAILING_REASONS`], else an
/// unschedulable pod's scheduler message.
fn why_not_running(pod: &Pod, state: Option<&ContainerState>) -> (Option<String>, Option<String>) {
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
        && let Some(reason) = waiting
            .reason
            .as_deref()
            .filter(|r| FAILING_REASONS.contains(r))
    {
        return (Some(reason.to_owned()), waiting.message.clone());
    }
    let unscheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .filter(|c| c.status == "False");
    match unscheduled {
        Some(c) => (
            Some(c.reason.clone().unwrap_or_else(|| UNSCHEDULABLE.to_owned())),
            c.message.clone(),
        ),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests;
