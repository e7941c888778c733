//! The workloads that tests debug: an nginx Deployment, its rollouts, template and pods.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use shellcar::naming;

use crate::TIMEOUT;
use crate::cluster::{is_ready, pod_summary};
use crate::wait::{Polled, poll};

/// The nginx image the cluster scripts build from Debian's nginx (`worker_processes 1`).
pub const NGINX_IMAGE: &str = "shellcar.local/nginx:1.22";
/// Name of the application container of [`nginx_deployment`].
pub const NGINX_CONTAINER: &str = "nginx";

/// True for a label or annotation key that shellcar sets on a pod or pod template: its
/// labels, the annotations naming the sessions, and the annotation of a Copy session's
/// pod. Keys under the session annotations' prefix count too, so that a mark added to
/// the operator later is still found.
pub fn is_shellcar_key(key: &str) -> bool {
    [
        naming::DEBUGGED_LABEL,
        naming::EPHEMERAL_DEBUGGED_LABEL,
        naming::COPY_OF_ANNOTATION,
    ]
    .contains(&key)
        || key.starts_with(naming::SESSION_ANNOTATION_PREFIX)
}

/// The pod template of real nginx that the test workloads share, pods labelled
/// `app=<name>`. Grace period is short so that rollouts do not wait for slow terminations.
pub fn nginx_template(name: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": NGINX_CONTAINER,
                "image": NGINX_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 80}],
            }],
        },
    })
}

/// A Deployment `name` of real nginx (see [`nginx_template`]).
pub fn nginx_deployment(name: &str, replicas: i32) -> Result<Deployment> {
    let value = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": nginx_template(name),
        },
    });
    Ok(serde_json::from_value(value)?)
}

/// A DaemonSet `name` of real nginx, one pod per node (see [`nginx_template`]).
pub fn nginx_daemonset(name: &str) -> Result<DaemonSet> {
    let value = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": nginx_template(name),
        },
    });
    Ok(serde_json::from_value(value)?)
}

/// Parameters to create an object as a user would, with field manager `shellcar-e2e`.
pub fn as_user() -> PostParams {
    PostParams {
        field_manager: Some("shellcar-e2e".to_owned()),
        ..PostParams::default()
    }
}

/// Handle on the Deployments and pods of one namespace.
#[derive(Clone)]
pub struct Workloads {
    pub namespace: String,
    pub deployments: Api<Deployment>,
    pub pods: Api<Pod>,
    raw: Api<DynamicObject>,
}

impl Workloads {
    pub fn new(client: &Client, namespace: &str) -> Workloads {
        Workloads {
            namespace: namespace.to_owned(),
            deployments: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            raw: Api::namespaced_with(
                client.clone(),
                namespace,
                &ApiResource::erase::<Deployment>(&()),
            ),
        }
    }

    /// Creates the Deployment as a user would (field manager `shellcar-e2e`) and waits
    /// until it has rolled out.
    pub async fn create_deployment(&self, deployment: &Deployment) -> Result<Deployment> {
        let name = deployment.name_any();
        self.deployments
            .create(&as_user(), deployment)
            .await
            .with_context(|| format!("creating Deployment {name}"))?;
        self.wait_rollout(&name).await
    }

    /// Waits until the Deployment's latest spec is observed and all of its replicas are
    /// updated and available, with no old replica left.
    pub async fn wait_rollout(&self, name: &str) -> Result<Deployment> {
        poll(
            &format!("Deployment {}/{name} to roll out", self.namespace),
            TIMEOUT,
            || async {
                let d = self.deployments.get(name).await?;
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let status = d.status.clone().unwrap_or_default();
                let done = d.metadata.generation.is_some()
                    && status.observed_generation >= d.metadata.generation
                    && status.replicas == Some(want)
                    && status.updated_replicas == Some(want)
                    && status.available_replicas == Some(want)
                    && status.ready_replicas == Some(want);
                Ok(if done {
                    Polled::Done(d)
                } else {
                    Polled::NotYet(format!(
                        "generation {:?}, status {}",
                        d.metadata.generation,
                        serde_json::to_string(&status)?
                    ))
                })
            },
        )
        .await
    }

    /// The Deployment's `.spec.template` exactly as the API server returns it.
    pub async fn template(&self, name: &str) -> Result<Value> {
        let raw = self
            .raw
            .get(name)
            .await
            .with_context(|| format!("reading Deployment {name}"))?;
        Ok(raw.data["spec"]["template"].clone())
    }

    /// Waits until Deployment `name`'s pod template is exactly `before` again, for a
    /// teardown that the operator starts on its own (a revocation, a refusal); on timeout
    /// the error shows what of shellcar is still in it and the template last seen.
    pub async fn wait_template(&self, name: &str, before: &Value) -> Result<()> {
        poll(
            &format!(
                "Deployment {}/{name}'s template to be as before the session",
                self.namespace
            ),
            TIMEOUT,
            || async {
                let now = self.template(name).await?;
                Ok(if &now == before {
                    Polled::Done(())
                } else {
                    Polled::NotYet(format!(
                        "shellcar traces {:?} in\n{}",
                        shellcar_traces(before, &now),
                        pretty(&now)
                    ))
                })
            },
        )
        .await
    }

    /// Pods matching `selector` that are not being deleted.
    pub async fn live_pods(&self, selector: &str) -> Result<Vec<Pod>> {
        let pods = self
            .pods
            .list(&ListParams::default().labels(selector))
            .await?;
        Ok(pods
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// Waits until exactly `count` live pods match `selector`, all Ready and all
    /// satisfying `pred`; returns them.
    pub async fn wait_pods(
        &self,
        selector: &str,
        count: usize,
        what: &str,
        pred: impl Fn(&Pod) -> bool,
    ) -> Result<Vec<Pod>> {
        poll(
            &format!("{count} Ready pods {selector} in {} {what}", self.namespace),
            TIMEOUT,
            || async {
                let pods = self.live_pods(selector).await?;
                let done = pods.len() == count && pods.iter().all(|p| is_ready(p) && pred(p));
                Ok(if done {
                    Polled::Done(pods)
                } else {
                    Polled::NotYet(format!(
                        "{:?}",
                        pods.iter()
                            .map(|p| format!(
                                "{} containers={:?}",
                                pod_summary(p),
                                pod_containers(p)
                            ))
                            .collect::<Vec<_>>()
                    ))
                })
            },
        )
        .await
    }

    /// Reads Deployment `name`'s pod template and asserts that a session has injected
    /// its debugger: each of `debuggers` (container names) is in the template exactly
    /// once, and the template shares one process namespace, which a sidecar debugger needs
    /// to see the application's processes. Returns the template.
    pub async fn assert_debugged(&self, name: &str, debuggers: &[&str]) -> Result<Value> {
        let template = self.template(name).await?;
        let containers = template_containers(&template);
        for debugger in debuggers {
            let count = containers.iter().filter(|c| c == debugger).count();
            assert_eq!(
                count,
                1,
                "Deployment {name}'s template must carry debugger {debugger} once, not {count} times:\n{}",
                pretty(&template)
            );
        }
        assert_eq!(
            template_shares_processes(&template),
            Some(true),
            "Deployment {name}'s template does not share one process namespace:\n{}",
            pretty(&template)
        );
        Ok(template)
    }

    /// Asserts that Deployment `name` is back to what it was before any session, as
    /// teardown must leave it: its pod template is exactly `before` (see
    /// [`assert_template_restored`]), and once it has rolled out, its `replicas` pods (label
    /// `app=<name>`, as [`nginx_deployment`] makes them) are all Ready and of that template:
    /// the template's containers and nothing else (no debugger), sharing one process
    /// namespace only if `before` does. Returns the pods.
    pub async fn assert_restored(
        &self,
        name: &str,
        before: &Value,
        replicas: usize,
    ) -> Result<Vec<Pod>> {
        let after = self.template(name).await?;
        assert_template_restored(before, &after);
        self.wait_rollout(name).await?;
        let containers = template_containers(before);
        let shares = template_shares_processes(before).unwrap_or(false);
        let what = format!(
            "of the original template: containers {containers:?} only, sharing processes: {shares}"
        );
        self.wait_pods(&format!("app={name}"), replicas, &what, |p| {
            pod_containers(p) == containers && pod_shares_processes(p) == shares
        })
        .await
    }

    /// What a user sees of the namespace's workloads: every Deployment's generation and
    /// template, and every pod with its UID and containers.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        for d in self.raw.list(&ListParams::default()).await? {
            snapshot.deployments.insert(
                d.name_any(),
                (d.metadata.generation, d.data["spec"]["template"].clone()),
            );
        }
        for p in self.pods.list(&ListParams::default()).await? {
            snapshot.pods.insert(
                p.name_any(),
                (p.uid().unwrap_or_default(), pod_containers(&p)),
            );
        }
        Ok(snapshot)
    }
}

/// The Deployments and pods of a namespace at one moment; see [`Workloads::snapshot`].
#[derive(Debug, Default, PartialEq)]
pub struct Snapshot {
    /// name → (generation, `.spec.template`)
    pub deployments: BTreeMap<String, (Option<i64>, Value)>,
    /// name → (uid, container names)
    pub pods: BTreeMap<String, (String, Vec<String>)>,
}

/// Names of a pod's containers.
pub fn pod_containers(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

/// Whether the pod shares one process namespace among its containers.
pub fn pod_shares_processes(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false)
}

/// Names of the containers in a pod template (JSON).
pub fn template_containers(template: &Value) -> Vec<String> {
    template["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `.spec.shareProcessNamespace` of a pod template (JSON), if set.
pub fn template_shares_processes(template: &Value) -> Option<bool> {
    template["spec"]["shareProcessNamespace"].as_bool()
}

/// Everything of shellcar in pod template `after` that was not in `before`, the template
/// recorded before any session: containers added since (the debuggers), and shellcar's
/// labels and annotations (see [`is_shellcar_key`]).
pub fn shellcar_traces(before: &Value, after: &Value) -> Vec<String> {
    let original = template_containers(before);
    let mut traces: Vec<String> = template_containers(after)
        .into_iter()
        .filter(|c| !original.contains(c))
        .map(|c| format!("container {c}"))
        .collect();
    for field in ["labels", "annotations"] {
        if let Some(map) = after["metadata"][field].as_object() {
            traces.extend(
                map.keys()
                    .filter(|k| is_shellcar_key(k))
                    .map(|k| format!("{field} {k}")),
            );
        }
    }
    traces
}

/// Asserts that pod template `after` is exactly `before`, the template recorded before
/// any session: first that no shellcar trace remains in it (see [`shellcar_traces`]) and
/// that its `shareProcessNamespace` is as before (a user's setting survives, shellcar's
/// goes), for clear messages; then that it is equal to `before` in every field.
pub fn assert_template_restored(before: &Value, after: &Value) {
    let traces = shellcar_traces(before, after);
    assert!(
        traces.is_empty(),
        "shellcar traces remain in the template: {traces:?}\n{}",
        pretty(after)
    );
    assert_eq!(
        template_shares_processes(after),
        template_shares_processes(before),
        "shareProcessNamespace is not what it was before the session:\n{}",
        pretty(after)
    );
    assert_eq!(
        after,
        before,
        "the template after the session differs from the one before\n--- before ---\n{}\n--- after ---\n{}",
        pretty(before),
        pretty(after)
    );
}

/// Pretty JSON, for assertion messages.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
