//! Copy mode: a bare nginx Pod is copied with a shared process namespace and the
//! debugger; the copy joins no Service, has no probes, belongs to the session and goes
//! with it; the source pod is never touched.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use shellcar::crd::{DebugPod, Mode, TargetKind};
use shellcar::naming;
use shellcar_e2e::exec::{assert_sees_shared_nginx, ps};
use shellcar_e2e::pod::{assert_pod_untouched, pod_identity, running_instance};
use shellcar_e2e::session::session;
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::{NGINX_CONTAINER, pod_containers, pod_shares_processes};
use shellcar_e2e::{Fixture, TIMEOUT};

fn has_probe(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .filter(|c| {
            c.readiness_probe.is_some() || c.liveness_probe.is_some() || c.startup_probe.is_some()
        })
        .map(|c| c.name.clone())
        .collect()
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

/// The addresses (ready or not) of Service `name`'s Endpoints.
async fn endpoint_ips(api: &Api<Endpoints>, name: &str) -> Result<Vec<String>> {
    let Some(endpoints) = api.get_opt(name).await? else {
        return Ok(Vec::new());
    };
    Ok(endpoints
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| {
            s.addresses
                .iter()
                .flatten()
                .chain(s.not_ready_addresses.iter().flatten())
        })
        .map(|a| a.ip.clone())
        .collect())
}

#[tokio::test]
async fn copy_shares_processes_and_leaves_the_source_alone() -> Result<()> {
    // The source has a readiness probe, which the copy must not keep, and a Service that
    // selects it, which must not select the copy.
    let (f, source) = Fixture::with_pod("copy", "web", true).await?;
    assert_eq!(has_probe(&source), vec![NGINX_CONTAINER.to_owned()]);
    let source_ip = pod_ip(&source).context("the source has no IP")?;
    let before = pod_identity(&source);
    let nginx = running_instance(&source, NGINX_CONTAINER).context("nginx is not running")?;
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }))?;
    Api::<Service>::namespaced(f.cluster.client.clone(), f.ns())
        .create(&PostParams::default(), &service)
        .await?;
    let endpoints: Api<Endpoints> = Api::namespaced(f.cluster.client.clone(), f.ns());

    let mut request = session("cp", TargetKind::Pod, "web", "30m")?;
    request.spec.mode = Mode::Copy;
    let created = f.sessions.create(&request).await?;
    let copy_name = naming::copy_name("cp");
    let container = naming::container_name("cp");

    // Status: Ready, listing the copy, what it copies and how to attach.
    let s = f.sessions.wait_active("cp").await?;
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.mode, Some(Mode::Copy), "{status:#?}");
    assert_eq!(
        status.pods,
        vec![DebugPod {
            reason: None,
            message: None,
            name: copy_name.clone(),
            container: container.clone(),
            ready: true,
            attach: naming::attach_command(f.ns(), &copy_name, &container),
            copy_of: Some("web".to_owned()),
        }]
    );

    // The copy: shared processes, shellcar's label only, no probes, owned by the session.
    let copy = f.workloads.pods.get(&copy_name).await?;
    let copy_uid = copy.uid().context("no uid")?;
    assert!(
        pod_shares_processes(&copy),
        "the copy does not share processes"
    );
    assert_eq!(
        copy.labels(),
        &BTreeMap::from([(naming::DEBUGGED_LABEL.to_owned(), "true".to_owned())]),
        "the copy must carry none of the source's labels"
    );
    assert_eq!(
        copy.annotations()
            .get(naming::COPY_OF_ANNOTATION)
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(
        pod_containers(&copy),
        vec![NGINX_CONTAINER.to_owned(), container.clone()]
    );
    assert!(
        has_probe(&copy).is_empty(),
        "probes kept in {:?}",
        has_probe(&copy)
    );
    let owners = copy.owner_references();
    assert_eq!(owners.len(), 1, "{owners:#?}");
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            Some(owners[0].uid.as_str()),
            owners[0].controller
        ),
        ("DebugSession", "cp", created.uid().as_deref(), Some(true)),
        "{owners:#?}"
    );

    // `ps ax` in the copy's debugger: the shared namespace, /pause as PID 1, and nginx.
    let processes = ps(&f.workloads.pods, &copy_name, &container).await?;
    assert_sees_shared_nginx(&processes);

    // The Service still selects only the source.
    let copy_ip = pod_ip(&f.workloads.pods.get(&copy_name).await?).context("copy has no IP")?;
    let ips = poll("Service web's endpoints", TIMEOUT, || async {
        let ips = endpoint_ips(&endpoints, "web").await?;
        Ok(if ips.contains(&source_ip) {
            Polled::Done(ips)
        } else {
            Polled::NotYet(format!("{ips:?}"))
        })
    })
    .await?;
    assert_eq!(
        ips,
        vec![source_ip.clone()],
        "the Service selects the copy ({copy_ip})"
    );

    // The source was never touched.
    let during = f.workloads.pods.get("web").await?;
    assert_pod_untouched(&before, &during, "during");
    assert_eq!(
        running_instance(&during, NGINX_CONTAINER),
        Some(nginx.clone())
    );

    // Deleting the session deletes the copy, and only the copy.
    f.sessions.delete_and_wait_gone("cp").await?;
    f.workloads.wait_pod_gone(&copy_name, &copy_uid).await?;
    let left: Vec<String> = f
        .workloads
        .pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(left, vec!["web".to_owned()]);
    let after = f.workloads.pods.get("web").await?;
    assert_pod_untouched(&before, &after, "after");
    assert_eq!(running_instance(&after, NGINX_CONTAINER), Some(nginx));
    Ok(())
}

#[tokio::test]
async fn an_expired_copy_is_deleted_and_nothing_is_left() -> Result<()> {
    let (f, source) = Fixture::with_pod("copy-ttl", "web", true).await?;
    let before = pod_identity(&source);

    let mut request = session("cp", TargetKind::Pod, "web", "30s")?;
    request.spec.mode = Mode::Copy;
    f.sessions.create(&request).await?;
    let copy_name = naming::copy_name("cp");
    f.sessions.wait_active("cp").await?;
    let copy_uid = f
        .workloads
        .pods
        .get(&copy_name)
        .await?
        .uid()
        .context("no uid")?;

    let s = f.sessions.wait_expired("cp").await?;
    let status = s.status.clone().context("no status")?;
    assert!(
        status.leftovers.is_empty(),
        "a deleted copy leaves nothing: {:?}",
        status.leftovers
    );
    f.workloads.wait_pod_gone(&copy_name, &copy_uid).await?;
    let after = f.workloads.pods.get("web").await?;
    assert_pod_untouched(&before, &after, "after");
    Ok(())
}
