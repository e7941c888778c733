//! What shellcar is for: a shell next to real nginx sees its processes, signals them
//! and reads its filesystem through /proc, in each mode that puts a debugger beside a
//! workload's processes: Sidecar (the Deployment's pods share one process namespace),
//! Copy (a copy of its pod does) and Ephemeral (the debugger joins the nginx container's
//! process namespace).

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, ensure};
use shellcar::crd::{Mode, Phase, TargetKind};
use shellcar::naming;
use shellcar_e2e::exec::{
    self, NGINX_MASTER, NGINX_WORKER, Process, assert_sees_shared_nginx, exec, ps,
};
use shellcar_e2e::session::{condition_is, ready_pods, session};
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::{NGINX_CONTAINER, pod_containers, pod_shares_processes};
use shellcar_e2e::{Fixture, TIMEOUT};

/// Where the debugger sees nginx: in the pod's shared process namespace (Sidecar, Copy:
/// /pause is PID 1), or in the nginx container's own (Ephemeral: nginx's master is PID 1).
/// Returns nginx's master.
fn nginx_master(processes: &[Process], mode: Mode) -> u32 {
    if mode != Mode::Ephemeral {
        return assert_sees_shared_nginx(processes).pid;
    }
    let masters = exec::find(processes, NGINX_MASTER);
    assert_eq!(
        masters.len(),
        1,
        "one nginx master expected: {processes:#?}"
    );
    assert_eq!(
        masters[0].pid, 1,
        "in the nginx container's process namespace its master is PID 1: {processes:#?}"
    );
    masters[0].pid
}

/// The seed demo on Deployment web (real nginx) with a session in `mode`: status is
/// Ready with the exact attach command; `ps ax` in the debugger lists nginx; `kill -HUP`
/// of nginx's master replaces its workers while the master lives on; nginx's files are
/// readable through `/proc/<master>/root`, and only there.
async fn seed_demo(topic: &str, mode: Mode) -> Result<()> {
    let (f, _) = Fixture::with_deployment(topic, "web", 1).await?;
    let mut request = session("web-debug", TargetKind::Deployment, "web", "30m")?;
    request.spec.target.container = Some(NGINX_CONTAINER.to_owned());
    request.spec.mode = mode;
    f.sessions.create(&request).await?;

    // Status: Ready, in the mode asked for, with the pod and the exact command to attach.
    let s = f.sessions.wait_active("web-debug").await?;
    let container = naming::container_name("web-debug");
    let status = s.status.clone().context("no status")?;
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(status.mode, Some(mode), "{status:#?}");
    assert!(condition_is(&s, "Ready", "True"), "{status:#?}");
    assert_eq!(status.container.as_deref(), Some(container.as_str()));
    let pod = ready_pods(&s).into_iter().next().context("no ready pod")?;
    assert_eq!(pod.container, container);
    assert_eq!(
        pod.attach,
        naming::attach_command(f.ns(), &pod.name, &container)
    );

    // The pod named in status runs nginx, and the debugger beside it: as a container
    // sharing the pod's processes, or as an ephemeral container.
    let live = f.workloads.pods.get(&pod.name).await?;
    let containers = pod_containers(&live);
    assert!(
        containers.contains(&NGINX_CONTAINER.to_owned()),
        "pod {} has containers {containers:?}",
        pod.name
    );
    if mode == Mode::Ephemeral {
        assert!(
            !containers.contains(&container),
            "pod {} has the debugger as a regular container",
            pod.name
        );
    } else {
        assert!(
            containers.contains(&container) && pod_shares_processes(&live),
            "pod {} must carry the debugger {container} and share processes: {containers:?}",
            pod.name
        );
    }

    let pods = &f.workloads.pods;
    // `ps ax` lists the nginx master and a worker (and /pause as PID 1 where the pod
    // shares one process namespace).
    let before = ps(pods, &pod.name, &container).await?;
    let master = nginx_master(&before, mode);
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

#[tokio::test]
async fn sidecar_debugger_sees_signals_and_reads_nginx() -> Result<()> {
    seed_demo("seed-sidecar", Mode::Sidecar).await
}

#[tokio::test]
async fn copy_debugger_sees_signals_and_reads_nginx() -> Result<()> {
    seed_demo("seed-copy", Mode::Copy).await
}

#[tokio::test]
async fn ephemeral_debugger_sees_signals_and_reads_nginx() -> Result<()> {
    seed_demo("seed-ephemeral", Mode::Ephemeral).await
}
