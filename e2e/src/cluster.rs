//! The cluster under test and the operator deployed into it.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, LogParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use shellcar::crd::DebugSession;

use crate::TIMEOUT;
use crate::wait::{Polled, poll};

/// Namespace and name of the operator's Deployment, as `config/default` names them.
pub const OPERATOR_NAMESPACE: &str = "shellcar-system";
pub const OPERATOR_DEPLOYMENT: &str = "shellcar-controller";
/// Label selector of the operator's pods.
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=shellcar";

const HOW_TO_DEPLOY: &str = "run `make e2e` (cluster up, operator deployed from config/, tests), \
     or `e2e/cluster up && e2e/deploy` before `e2e/cluster exec -- cargo test -p shellcar-e2e`";

/// A client for the cluster, checked to have the CRD and a running operator.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
}

impl Cluster {
    /// Connects with the usual kubeconfig (`KUBECONFIG`) and checks that shellcar is
    /// deployed: the CRD exists and the controller has an available replica (waiting for
    /// one, since another test may have just restarted it).
    pub async fn connect() -> Result<Cluster> {
        let client = Client::try_default().await.context(
            "no usable kubeconfig: run the tests inside the cluster's network namespace, \
             `e2e/cluster exec -- cargo test -p shellcar-e2e`",
        )?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd_name = DebugSession::crd_name();
        let crd = crds.get_opt(crd_name).await.context(
            "cannot reach the API server: is the local cluster up (`e2e/cluster status`)?",
        )?;
        if crd.is_none() {
            bail!("the DebugSession CRD ({crd_name}) is not installed: {HOW_TO_DEPLOY}");
        }
        let cluster = Cluster { client };
        let deployments: Api<Deployment> =
            Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
        if deployments.get_opt(OPERATOR_DEPLOYMENT).await?.is_none() {
            bail!(
                "the operator is not deployed (no Deployment {OPERATOR_NAMESPACE}/{OPERATOR_DEPLOYMENT}): {HOW_TO_DEPLOY}"
            );
        }
        cluster.wait_operator_ready(&BTreeSet::new()).await?;
        Ok(cluster)
    }

    fn operator_pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE)
    }

    /// The operator's pods.
    pub async fn operator_pods(&self) -> Result<Vec<Pod>> {
        Ok(self
            .operator_pods_api()
            .list(&ListParams::default().labels(OPERATOR_SELECTOR))
            .await?
            .items)
    }

    /// Kills every operator pod at once, as `kubectl delete pod --grace-period=0 --force`
    /// does, and returns their UIDs.
    pub async fn kill_operator(&self) -> Result<BTreeSet<String>> {
        let pods = self.operator_pods().await?;
        if pods.is_empty() {
            bail!("no operator pod to kill ({OPERATOR_SELECTOR} in {OPERATOR_NAMESPACE})");
        }
        let api = self.operator_pods_api();
        let mut killed = BTreeSet::new();
        for pod in pods {
            let name = pod.name_any();
            api.delete(&name, &DeleteParams::default().grace_period(0))
                .await
                .with_context(|| format!("killing operator pod {name}"))?;
            killed.extend(pod.uid());
        }
        Ok(killed)
    }

    /// Waits until an operator pod that is not one of `excluded` (UIDs) is Ready, and
    /// returns its name.
    pub async fn wait_operator_ready(&self, excluded: &BTreeSet<String>) -> Result<String> {
        poll("a Ready operator pod", TIMEOUT, || async {
            let pods = self.operator_pods().await?;
            let ready = pods.iter().find(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.uid().is_none_or(|uid| !excluded.contains(&uid))
                    && is_ready(p)
            });
            Ok(match ready {
                Some(pod) => Polled::Done(pod.name_any()),
                None => Polled::NotYet(format!(
                    "operator pods: {:?} ({HOW_TO_DEPLOY})",
                    pods.iter().map(pod_summary).collect::<Vec<_>>()
                )),
            })
        })
        .await
    }

    /// The last lines of the operator's log, for error messages.
    pub async fn operator_log_tail(&self) -> String {
        let Ok(pods) = self.operator_pods().await else {
            return "(cannot list the operator pods)".to_owned();
        };
        let Some(pod) = pods.iter().find(|p| is_ready(p)).or(pods.first()) else {
            return "(no operator pod)".to_owned();
        };
        let params = LogParams {
            tail_lines: Some(40),
            ..LogParams::default()
        };
        self.operator_pods_api()
            .logs(&pod.name_any(), &params)
            .await
            .unwrap_or_else(|e| format!("(cannot read the operator's log: {e})"))
    }
}

/// True when the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `name (phase, ready)` of a pod, for messages.
pub fn pod_summary(pod: &Pod) -> String {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let deleting = if pod.metadata.deletion_timestamp.is_some() {
        ", terminating"
    } else {
        ""
    };
    format!(
        "{} ({phase}, ready={}{deleting})",
        pod.name_any(),
        is_ready(pod)
    )
}

/// The names of the nodes whose Ready condition is True.
pub async fn ready_nodes(client: &Client) -> anyhow::Result<BTreeSet<String>> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(nodes
        .items
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(ResourceExt::name_any)
        .collect())
}
