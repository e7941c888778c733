//! What shellcar is for: a shell next to real nginx sees its processes, signals them
//! and reads its filesystem through /proc.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, ensure};
use shellcar::crd::{Phase, TargetKind};
use shellcar::naming;
use shellcar_e2e::exec::{self, NGINX_MASTER, NGINX_WORKER, assert_sees_shared_nginx, exec, ps};
use shellcar_e2e::session::{condition_is, ready_pods, session};
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::{NGINX_CONTAINER, pod_containers, pod_shares_processes};
use shellcar_e2e::{Fixture, TIMEOUT};

#[tokio::test]
async fn debugger_sees_signals_and_reads_nginx() -> Result<()> {
    let (f, _) = Fixture::with_deployment("seed", "web", 1).await?;
    let mut request = session("web-debug", TargetKind::Deployment, "web", "30m")?;
    request.spec.target.container = Some(NGINX_CONTAINER.to_owned());
    f.sessions.create(&request).await?;

    // Status: Ready, with the pod and the exact command to attach.
    let s = f.sessions.wait_active("web-debug").await?;
    let container = naming::container_name("web-debug");
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.phase, Some(Phase::Active));
    assert!(condition_is(&s, "Ready", "True"), "{status:#?}");
    assert_eq!(status.container.as_deref(), Some(container.as_str()));
    let pod = ready_pods(&s).into_iter().next().context("no ready pod")?;
    assert_eq!(pod.container, container);
    assert_eq!(
        pod.attach,
        naming::attach_command(f.ns(), &pod.name, &container)
    );

    // The pod named in status is web's pod, with nginx and the debugger sharing processes.
    let live = f.workloads.pods.get(&pod.name).await?;
    let containers = pod_containers(&live);
    assert!(
        containers.contains(&NGINX_CONTAINER.to_owned()) && containers.contains(&container),
        "pod {} has containers {containers:?}",
        pod.name
    );
    assert!(
        pod_shares_processes(&live),
        "pod {} does not share processes",
        pod.name
    );

    let pods = &f.workloads.pods;
    // `ps ax` lists /pause (PID 1), the nginx master and a worker.
    let before = ps(pods, &pod.name, &container).await?;
    let master = assert_sees_shared_nginx(&before).pid;
    let old_workers: BTreeSet<u32> = exec::find(&before, NGINX_WORKER)
        .iter()
        .map(|p| p.pid)
        .collect();

    // `kill -HUP <master>` makes nginx replace its workers.
    exec(
        pods,
        &pod.name,
        &container,
        &["kill", "-HUP", &master.to_string()],
    )
    .await?;
    let after = poll("a new nginx worker after SIGHUP", TIMEOUT, || async {
        let now = ps(pods, &pod.name, &container).await?;
        let new_worker = exec::find(&now, NGINX_WORKER)
            .iter()
            .any(|p| !old_workers.contains(&p.pid));
        Ok(if new_worker {
            Polled::Done(now)
        } else {
            Polled::NotYet(format!("{now:?}"))
        })
    })
    .await?;
    let masters_after: Vec<u32> = exec::find(&after, NGINX_MASTER)
        .iter()
        .map(|p| p.pid)
        .collect();
    assert_eq!(
        masters_after,
        vec![master],
        "the master must survive SIGHUP: {after:#?}"
    );

    // nginx's filesystem is visible through /proc/<master>/root.
    let path = format!("/proc/{master}/root/etc/nginx/nginx.conf");
    let config = exec(pods, &pod.name, &container, &["head", "-n", "40", &path]).await?;
    ensure!(
        config.contains("worker_processes") && config.contains("events"),
        "{path} does not look like nginx's configuration:\n{config}"
    );
    // ... and only through it: the debugger's own filesystem has no nginx.
    let own = exec(
        pods,
        &pod.name,
        &container,
        &[
            "sh",
            "-c",
            "test -e /etc/nginx/nginx.conf && echo present || echo absent",
        ],
    )
    .await?;
    assert_eq!(
        own.trim(),
        "absent",
        "the debugger image unexpectedly has nginx"
    );
    Ok(())
}
