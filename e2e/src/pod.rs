//! Bare Pods that tests debug in Ephemeral and Copy modes, and what a user reads of a
//! pod: its containers' states, its ephemeral containers, shellcar's marks on it.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;
use serde_json::{Value, json};
use shellcar::naming;

use crate::TIMEOUT;
use crate::cluster::{is_ready, pod_summary};
use crate::wait::{Polled, poll};
use crate::workload::{NGINX_CONTAINER, NGINX_IMAGE, Workloads, as_user, is_shellcar_key, pretty};

/// How the operator's stopper containers are named (`shellcar::naming::stopper_name`).
pub const STOPPER_PREFIX: &str = "shellcar-stop-";

/// A bare Pod `name` (no controller) of real nginx, labelled `app=<name>`, with a short
/// grace period; with `readiness` a `tcpSocket: 80` readiness probe.
pub fn nginx_pod(name: &str, readiness: bool) -> Result<Pod> {
    let mut container = json!({
        "name": NGINX_CONTAINER,
        "image": NGINX_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 80}],
    });
    if readiness {
        container["readinessProbe"] = json!({"tcpSocket": {"port": 80}, "periodSeconds": 2});
    }
    let value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [container],
        },
    });
    Ok(serde_json::from_value(value)?)
}

impl Workloads {
    /// Creates the Pod as a user would (field manager `shellcar-e2e`) and waits until it
    /// is Ready.
    pub async fn create_pod(&self, pod: &Pod) -> Result<Pod> {
        let name = pod.name_any();
        self.pods
            .create(&as_user(), pod)
            .await
            .with_context(|| format!("creating Pod {name}"))?;
        self.wait_pod(&name, "Ready", is_ready).await
    }

    /// Waits until Pod `name` exists and satisfies `pred`; returns it.
    pub async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&Pod) -> bool,
    ) -> Result<Pod> {
        poll(
            &format!("Pod {}/{name} {what}", self.namespace),
            TIMEOUT,
            || async {
                Ok(match self.pods.get_opt(name).await? {
                    Some(pod) if pred(&pod) => Polled::Done(pod),
                    Some(pod) => Polled::NotYet(format!(
                        "{}; ephemeral containers {:?}; labels {:?}",
                        pod_summary(&pod),
                        ephemeral_states(&pod),
                        pod.labels()
                    )),
                    None => Polled::NotYet("absent".to_owned()),
                })
            },
        )
        .await
    }

    /// Waits until ephemeral debugger `container` in `source` (the pod as it was before
    /// the session) has terminated, and asserts that this stopped debugger is all that
    /// changed in the pod's containers: the pod is still `source` (same UID, not
    /// replaced), `container` is its only ephemeral container besides the operator's
    /// stopped stopper, and nginx is still the same running process, never restarted.
    /// Returns the pod.
    pub async fn wait_debugger_stopped(&self, source: &Pod, container: &str) -> Result<Pod> {
        let name = source.name_any();
        let nginx = running_instance(source, NGINX_CONTAINER)
            .with_context(|| format!("nginx is not running in pod {name}"))?;
        let after = self
            .wait_pod(
                &name,
                "with the ephemeral debugger (and its stopper) terminated",
                |p| {
                    ephemeral_terminated(p, container)
                        && ephemeral_containers(p)
                            .iter()
                            .filter(|c| c.starts_with(STOPPER_PREFIX))
                            .all(|c| ephemeral_terminated(p, c))
                },
            )
            .await?;
        assert_eq!(after.uid(), source.uid(), "pod {name} was replaced");
        // Beside the debugger, at most the operator's stopper, itself stopped.
        let others: Vec<String> = ephemeral_containers(&after)
            .into_iter()
            .filter(|c| c != container)
            .collect();
        assert!(
            others.len() <= 1
                && others
                    .iter()
                    .all(|c| c.starts_with(STOPPER_PREFIX) && ephemeral_terminated(&after, c)),
            "pod {name} has ephemeral containers other than the debugger and its stopper: {:?}",
            ephemeral_states(&after)
        );
        assert_eq!(
            running_instance(&after, NGINX_CONTAINER),
            Some(nginx),
            "nginx must keep running, never restarted"
        );
        Ok(after)
    }

    /// Waits until no pod named `name` with UID `uid` exists any more (deleted, or
    /// replaced by a pod of the same name).
    pub async fn wait_pod_gone(&self, name: &str, uid: &str) -> Result<()> {
        poll(
            &format!("Pod {}/{name} (uid {uid}) to be gone", self.namespace),
            TIMEOUT,
            || async {
                Ok(match self.pods.get_opt(name).await? {
                    Some(pod) if pod.uid().as_deref() == Some(uid) => {
                        Polled::NotYet(pod_summary(&pod))
                    }
                    _ => Polled::Done(()),
                })
            },
        )
        .await
    }
}

/// Names of the pod's ephemeral containers, from its spec.
pub fn ephemeral_containers(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

/// The state of every ephemeral container the pod's status reports, as `kubectl get pod
/// -o yaml` shows it: name → `running`, `waiting (REASON)` or `terminated (exit N)`.
pub fn ephemeral_states(pod: &Pod) -> BTreeMap<String, String> {
    pod.status
        .as_ref()
        .and_then(|s| s.ephemeral_container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| (c.name.clone(), state_word(c))).collect())
        .unwrap_or_default()
}

fn state_word(status: &ContainerStatus) -> String {
    let Some(state) = &status.state else {
        return "unknown".to_owned();
    };
    if state.running.is_some() {
        "running".to_owned()
    } else if let Some(t) = &state.terminated {
        format!("terminated (exit {})", t.exit_code)
    } else if let Some(w) = &state.waiting {
        format!("waiting ({})", w.reason.clone().unwrap_or_default())
    } else {
        "unknown".to_owned()
    }
}

/// True when the pod's status reports ephemeral container `name` as terminated.
pub fn ephemeral_terminated(pod: &Pod, name: &str) -> bool {
    ephemeral_status(pod, name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.terminated.is_some())
}

/// True when the pod's status reports ephemeral container `name` as running.
pub fn ephemeral_running(pod: &Pod, name: &str) -> bool {
    ephemeral_status(pod, name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

fn ephemeral_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

/// The status of regular container `name` of the pod.
pub fn container_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

/// `(container ID, restart count)` of regular container `name` while it runs; `None`
/// when it is not running. The same pair before and after means the process was never
/// restarted.
pub fn running_instance(pod: &Pod, name: &str) -> Option<(String, i32)> {
    let status = container_status(pod, name)?;
    status.state.as_ref()?.running.as_ref()?;
    Some((status.container_id.clone()?, status.restart_count))
}

/// Everything of shellcar on a pod's metadata: its labels and annotations (see
/// [`is_shellcar_key`]), and fields owned by a session's field manager
/// ([`naming::field_manager`]).
pub fn shellcar_marks(pod: &Pod) -> Vec<String> {
    let mut marks: Vec<String> = pod
        .labels()
        .keys()
        .filter(|k| is_shellcar_key(k))
        .map(|k| format!("label {k}"))
        .collect();
    marks.extend(
        pod.annotations()
            .keys()
            .filter(|k| is_shellcar_key(k))
            .map(|k| format!("annotation {k}")),
    );
    marks.extend(
        pod.managed_fields()
            .iter()
            .filter_map(|m| m.manager.as_deref())
            .filter(|m| naming::is_session_manager(m))
            .map(|m| format!("field manager {m}")),
    );
    marks
}

/// What a user compares to see that a pod was left alone: its UID, labels, annotations
/// and spec, as JSON.
pub fn pod_identity(pod: &Pod) -> Value {
    json!({
        "uid": pod.uid(),
        "labels": pod.labels(),
        "annotations": pod.annotations(),
        "spec": pod.spec,
    })
}

/// Asserts that `pod` is the pod whose [`pod_identity`] was `before`, left alone: same UID,
/// labels, annotations and spec. `when` names the moment of `pod` in the message
/// ("during", "after").
pub fn assert_pod_untouched(before: &Value, pod: &Pod, when: &str) {
    let now = pod_identity(pod);
    assert_eq!(
        &now,
        before,
        "pod {} was changed\n--- before ---\n{}\n--- {when} ---\n{}",
        pod.name_any(),
        pretty(before),
        pretty(&now)
    );
}

/// Asserts that `pod` has nothing of a debugging session: no ephemeral container and no
/// shellcar marks (see [`shellcar_marks`]).
pub fn assert_undebugged(pod: &Pod) {
    let name = pod.name_any();
    assert!(
        ephemeral_containers(pod).is_empty(),
        "pod {name} has ephemeral containers: {:?}",
        ephemeral_containers(pod)
    );
    assert!(
        shellcar_marks(pod).is_empty(),
        "pod {name} has shellcar's marks: {:?}",
        shellcar_marks(pod)
    );
}
