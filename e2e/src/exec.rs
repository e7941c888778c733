//! Running commands in a container, as `kubectl exec` does, and reading `ps` output.

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

/// How `ps ax` shows nginx's master process.
pub const NGINX_MASTER: &str = "nginx: master process";
/// How `ps ax` shows an nginx worker process.
pub const NGINX_WORKER: &str = "nginx: worker process";

/// Runs `command` in `container` of `pod` and returns its stdout; fails when the command
/// does not succeed, with its stderr.
pub async fn exec(pods: &Api<Pod>, pod: &str, container: &str, command: &[&str]) -> Result<String> {
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .tty(false);
    let what = || format!("exec {command:?} in {pod}/{container}");
    let mut process = pods
        .exec(pod, command.iter().copied(), &params)
        .await
        .with_context(what)?;
    let mut stdout = process.stdout().context("exec has no stdout")?;
    let mut stderr = process.stderr().context("exec has no stderr")?;
    let status = process.take_status().context("exec has no status")?;
    let (mut out, mut err) = (String::new(), String::new());
    let (read_out, read_err) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    read_out.with_context(what)?;
    read_err.with_context(what)?;
    let status = status.await;
    process.join().await.with_context(what)?;
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => Ok(out),
        Some(s) => bail!(
            "{} failed: {} {}\nstdout: {out}\nstderr: {err}",
            what(),
            s.reason.unwrap_or_default(),
            s.message.unwrap_or_default()
        ),
        None => bail!(
            "{} ended without a status\nstdout: {out}\nstderr: {err}",
            what()
        ),
    }
}

/// The processes `ps ax` lists in `container` of `pod`.
pub async fn ps(pods: &Api<Pod>, pod: &str, container: &str) -> Result<Vec<Process>> {
    Ok(processes(&exec(pods, pod, container, &["ps", "ax"]).await?))
}

/// One line of `ps ax`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub command: String,
}

/// Parses `ps ax` output. The columns before COMMAND are taken from the header (busybox
/// prints `PID USER TIME COMMAND` or, in some builds, `PID USER COMMAND`).
pub fn processes(ps: &str) -> Vec<Process> {
    let mut lines = ps.lines();
    let Some(skip) = lines.next().and_then(|header| {
        header
            .split_whitespace()
            .position(|column| column == "COMMAND" || column == "CMD")
    }) else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let pid = fields.first()?.parse().ok()?;
            let command = fields.get(skip..)?.join(" ");
            Some(Process { pid, command })
        })
        .collect()
}

/// The processes whose command starts with `prefix`.
pub fn find<'a>(processes: &'a [Process], prefix: &str) -> Vec<&'a Process> {
    processes
        .iter()
        .filter(|p| p.command.starts_with(prefix))
        .collect()
}

/// Asserts that `processes`, a debugger's `ps ax` in a pod whose containers share one
/// process namespace, show that namespace with nginx in it: the pod's /pause as PID 1,
/// one nginx master and at least one worker. Returns the master.
pub fn assert_sees_shared_nginx(processes: &[Process]) -> &Process {
    assert!(
        find(processes, "/pause").iter().any(|p| p.pid == 1),
        "/pause is not PID 1: {processes:#?}"
    );
    let masters = find(processes, NGINX_MASTER);
    assert_eq!(
        masters.len(),
        1,
        "one nginx master expected: {processes:#?}"
    );
    assert!(
        !find(processes, NGINX_WORKER).is_empty(),
        "no nginx worker: {processes:#?}"
    );
    masters[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `out` and checks that it lists /pause as PID 1, then the nginx master and
    /// worker with PIDs `master` and `worker`; returns the processes.
    fn parse_nginx(out: &str, master: u32, worker: u32) -> Vec<Process> {
        let ps = processes(out);
        assert_eq!(
            ps[0],
            Process {
                pid: 1,
                command: "/pause".to_owned()
            }
        );
        assert_eq!(find(&ps, NGINX_MASTER)[0].pid, master);
        assert_eq!(find(&ps, NGINX_WORKER)[0].pid, worker);
        ps
    }

    #[test]
    fn busybox_ps_without_time_is_parsed() {
        let out = "PID   USER     COMMAND\n    1 65535    /pause\n    6 root     nginx: master process nginx -g daemon off;\n   12 33       nginx: worker process\n";
        parse_nginx(out, 6, 12);
    }

    #[test]
    fn busybox_ps_is_parsed() {
        let out = "PID   USER     TIME  COMMAND\n    1 65535     0:00 /pause\n    7 root      0:00 nginx: master process nginx -g daemon off;\n   13 www-data  0:00 nginx: worker process\n   14 root      0:00 sh -c while true; do sh; done\n";
        let ps = parse_nginx(out, 7, 13);
        assert_eq!(ps.len(), 4);
    }
}
