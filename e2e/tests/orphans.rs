//! Nothing left behind when a finalizer is removed by hand. A cluster admin (the only one
//! besides the operator whom the ValidatingAdmissionPolicy lets do it) strips the teardown
//! finalizer of a live Sidecar session and deletes it: the session is gone at once, its
//! debugger still in the Deployment's template. The leader's orphan sweep removes it when
//! it starts leading (and every `--sweep-interval`), and says so in an Event.
//!
//! A test binary of its own: it moves the Lease to the standby replica.

use std::time::Instant;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::Value;
use shellcar_e2e::attack;
use shellcar_e2e::leader::pod_of;
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::{Fixture, OPERATOR_NAMESPACE, TIMEOUT};

const WEB: &str = "web";

/// The container names of a pod template, as JSON.
fn containers(template: &Value) -> Vec<&str> {
    template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[tokio::test]
async fn a_debugger_whose_finalizer_was_stripped_is_swept() -> Result<()> {
    let (f, before) = Fixture::with_deployment("orphan", WEB, 1).await?;
    let container = f.debug_deployment("lost", WEB, "30m").await?;

    // As the cluster admin: strip the finalizer, then delete.
    f.sessions.strip_finalizers("lost").await?;
    f.sessions.delete_and_wait_gone("lost").await?;
    let template = f.workloads.template(WEB).await?;
    assert!(
        containers(&template).contains(&container.as_str()),
        "the debugger must still be there for this test: {template}"
    );

    // A new leader sweeps when it starts.
    let old = f.cluster.wait_leader().await?;
    let since = Instant::now();
    Api::<Pod>::namespaced(f.cluster.client.clone(), OPERATOR_NAMESPACE)
        .delete(pod_of(&old), &DeleteParams::default())
        .await
        .with_context(|| format!("deleting the leader's pod {}", pod_of(&old)))?;
    f.cluster.wait_new_leader(&old, since).await?;

    poll("the orphaned debugger to be swept", TIMEOUT, || async {
        let now = f.workloads.template(WEB).await?;
        Ok(if now == before {
            Polled::Done(())
        } else {
            Polled::NotYet(format!("containers: {:?}", containers(&now)))
        })
    })
    .await?;
    let event = f
        .events
        .wait_for("Deployment", WEB, "Warning", "OrphanRemoved")
        .await?;
    let restored = f.workloads.template(WEB).await? == before;
    attack::record(
        "a cluster admin strips the finalizer and deletes the session, stranding its debugger",
        "the leader's orphan sweep removes the debugger, Event OrphanRemoved",
        format!("template restored: {restored}; Event: {}", event.message),
        restored && event.message.contains("shellcar.dev/lost"),
    );
    assert!(event.message.contains("shellcar.dev/lost"), "{event:?}");
    Ok(())
}
