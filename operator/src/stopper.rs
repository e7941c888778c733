//! The stopper: `shellcar stop-debugger <container-id>`, run from the operator's own image
//! as a second ephemeral container beside an Ephemeral session's debugger.
//!
//! Kubernetes cannot remove or stop an ephemeral container, so a debugger must be stopped
//! from inside the pod. Doing that with the debugger's own image (its `sh`, `cat`, `kill`,
//! a deadline file in its filesystem) lets whoever controls the shell keep it alive past
//! its ttl: replace `/bin/cat`, move the deadline. The stopper brings its own code: it
//! shares the target's process namespace, as the debugger does, finds the processes whose
//! cgroup names the debugger's container ID (as the container runtime reports it in the
//! pod's status), and kills them until none is left. The target's processes sit in other
//! cgroups and are never touched.

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where the kubelet reads the message of a terminated container.
const TERMINATION_LOG: &str = "/dev/termination-log";

/// How long the stopper keeps killing (processes may fork while it works).
const ROUNDS: u32 = 100;
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Fewest hex digits a container ID must have: an empty or short ID would match the
/// cgroups of other containers.
const MIN_ID_LEN: usize = 32;

/// The bare container ID in `id`: a status's `containerd://<hex>` or the hex itself; `None`
/// unless it is at least [`MIN_ID_LEN`] lowercase hex digits.
pub fn container_id(id: &str) -> Option<&str> {
    let bare = id.rsplit_once("://").map_or(id, |(_, bare)| bare);
    let hex = bare.len() >= MIN_ID_LEN
        && bare
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex.then_some(bare)
}

/// True when the contents of a `/proc/PID/cgroup` file put the process in the container
/// with ID `id`: a cgroup path with `id` as one of its components, whole or within a
/// systemd scope (`cri-containerd-<id>.scope`).
pub fn in_container(cgroup: &str, id: &str) -> bool {
    cgroup.lines().any(|line| {
        let path = line.splitn(3, ':').nth(2).unwrap_or_default();
        path.split('/').any(|part| {
            part == id
                || part
                    .strip_suffix(".scope")
                    .and_then(|scope| scope.rsplit_once('-'))
                    .is_some_and(|(_, tail)| tail == id)
        })
    })
}

/// True when the contents of a `/proc/PID/stat` file describe a zombie, which has already
/// died and only waits to be reaped.
pub fn is_zombie(stat: &str) -> bool {
    // The state follows the command name, which is in parentheses and may hold any byte.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        == Some("Z")
}

/// The live processes under `proc` (a procfs root) in the container with ID `id`.
pub fn processes(proc: &Path, id: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut found: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let dir = proc.join(pid.to_string());
            let cgroup = fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
            let stat = fs::read_to_string(dir.join("stat")).unwrap_or_default();
            in_container(&cgroup, id) && !is_zombie(&stat)
        })
        .collect();
    found.sort_unstable();
    found
}

/// How a stop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// No process of the container is left; `killed` were signalled.
    All { killed: usize },
    /// These processes are still there: the stopper may not signal them, or they outlived
    /// every round.
    Remaining { pids: Vec<i32>, denied: bool },
}

impl Stopped {
    /// The termination message the operator reads back from the pod's status.
    pub fn message(&self, id: &str) -> String {
        let short = &id[..12.min(id.len())];
        match self {
            Stopped::All { killed } => {
                format!("stopped {killed} processes of container {short}")
            }
            Stopped::Remaining { pids, denied } => format!(
                "processes {pids:?} of container {short} are still running{}",
                if *denied {
                    " (not permitted to signal them)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Kills every process of container `id` found under `proc`, round after round, until
/// none is left.
pub fn stop(proc: &Path, id: &str) -> Stopped {
    let mut killed = 0;
    let mut denied = false;
    for _ in 0..ROUNDS {
        let pids = processes(proc, id);
        if pids.is_empty() {
            return Stopped::All { killed };
        }
        denied = false;
        for pid in pids {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) => killed += 1,
                Err(Errno::EPERM) => denied = true,
                Err(_) => {}
            }
        }
        std::thread::sleep(ROUND_PAUSE);
    }
    Stopped::Remaining {
        pids: processes(proc, id),
        denied,
    }
}

/// The `stop-debugger` command: stops container `id` (as the pod's status names it) and
/// leaves the outcome as the container's termination message.
pub fn run(id: &str) -> ExitCode {
    let Some(id) = container_id(id) else {
        eprintln!("error: {id:?} is not a container ID");
        return ExitCode::from(2);
    };
    let stopped = stop(Path::new("/proc"), id);
    let message = stopped.message(id);
    println!("{message}");
    // Best effort: the status then carries the message.
    let _ = fs::write(TERMINATION_LOG, &message);
    match stopped {
        Stopped::All { .. } => ExitCode::SUCCESS,
        Stopped::Remaining { .. } => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests;
