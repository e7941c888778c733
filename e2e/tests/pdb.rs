//! The operator's PodDisruptionBudget is applied as config/manager ships it, as
//! `policy/v1` (the only version Kubernetes serves since 1.25), and guards the operator's
//! replicas: a voluntary disruption (a drain, an eviction) may take one of the two, never
//! both.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use shellcar_e2e::cluster::OPERATOR_DEPLOYMENT;
use shellcar_e2e::kubectl::kubectl;
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::Workloads;
use shellcar_e2e::{Cluster, OPERATOR_NAMESPACE, TIMEOUT};

/// The PodDisruptionBudget as shipped: config/manager's, named and placed by
/// config/default, rendered by the cluster's kubectl as e2e/deploy renders it.
async fn shipped() -> Result<PodDisruptionBudget> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/default");
    let path = path.to_string_lossy();
    let out = kubectl(None, &["kustomize", &path], None).await?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        out.command,
        out.stderr
    );
    for document in out.stdout.split("\n---\n") {
        let object: serde_yaml::Value =
            serde_yaml::from_str(document).context("parsing kustomize's output")?;
        if object["kind"].as_str() == Some("PodDisruptionBudget") {
            return Ok(serde_yaml::from_value(object)?);
        }
    }
    bail!("config/default renders no PodDisruptionBudget")
}

#[tokio::test]
async fn the_shipped_pod_disruption_budget_guards_the_operator() -> Result<()> {
    let cluster = Cluster::connect().await?;
    let shipped = shipped().await?;
    let name = shipped
        .metadata
        .name
        .clone()
        .context("the shipped PodDisruptionBudget has no name")?;
    let operator = Workloads::new(&cluster.client, OPERATOR_NAMESPACE)
        .wait_rollout(OPERATOR_DEPLOYMENT)
        .await?;
    let replicas = operator.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);

    // Read through policy/v1: the typed API asks for that version.
    let api: Api<PodDisruptionBudget> = Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    let live = api.get_opt(&name).await?.with_context(|| {
        format!(
            "PodDisruptionBudget {OPERATOR_NAMESPACE}/{name} is missing: e2e/deploy must apply \
             config/manager's as shipped"
        )
    })?;
    let (live_spec, shipped_spec) = (
        live.spec.clone().unwrap_or_default(),
        shipped.spec.clone().unwrap_or_default(),
    );
    assert_eq!(
        serde_json::to_value(&live_spec.min_available)?,
        serde_json::to_value(&shipped_spec.min_available)?,
        "minAvailable"
    );
    assert_eq!(
        serde_json::to_value(&live_spec.max_unavailable)?,
        serde_json::to_value(&shipped_spec.max_unavailable)?,
        "maxUnavailable"
    );
    assert_eq!(live_spec.selector, shipped_spec.selector, "selector");
    assert_eq!(
        live.metadata.namespace, shipped.metadata.namespace,
        "namespace"
    );

    // What `kubectl get pdb` shows: it selects every replica, all healthy, and allows
    // exactly one disruption.
    let min_available = shipped_spec
        .min_available
        .as_ref()
        .and_then(|m| match m {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(_) => None,
        })
        .context("the shipped PodDisruptionBudget sets no whole-number minAvailable")?;
    poll(
        &format!("PodDisruptionBudget {name} to count {replicas} healthy replicas"),
        TIMEOUT,
        || async {
            let pdb = api.get(&name).await?;
            let status = pdb.status.clone().unwrap_or_default();
            let done = status.observed_generation == pdb.metadata.generation
                && status.expected_pods == replicas
                && status.current_healthy == replicas
                && status.desired_healthy == min_available
                && status.disruptions_allowed == replicas - min_available;
            Ok(if done {
                Polled::Done(())
            } else {
                Polled::NotYet(serde_json::to_string(&status)?)
            })
        },
    )
    .await?;
    assert_eq!(
        replicas - min_available,
        1,
        "with {replicas} replicas and minAvailable {min_available}, one disruption at a time"
    );
    Ok(())
}
