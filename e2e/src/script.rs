//! Running the cluster script (`e2e/cluster`) from a test: for the tests that take parts
//! of the cluster down and bring them back (`kill`, `up`, `status`). Such a test must be
//! the only one in its binary, so that no other test runs meanwhile (cargo runs test
//! binaries one after another).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

/// What `up` prints when it throws the state away (e2e/cluster, `wipe_and_start`).
const WIPE_MARKER: &str = "WIPING";

/// The second node, as `e2e/cluster` names it, and its components as `kill` and `status`
/// name them: its own kubelet and containerd, in a network namespace of their own. The
/// first node also runs the control plane, so a test can take only the second one down.
pub const NODE_2: &str = "shellcar-node-2";
pub const NODE_2_COMPONENTS: [&str; 2] = ["kubelet-2", "containerd-2"];

/// What one run of the cluster script printed on stderr, and how long it took.
pub struct Run {
    pub stderr: String,
    pub took: Duration,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cluster")
}

/// Runs `e2e/cluster ARGS...` and fails if it fails, showing what it printed.
///
/// Its output goes to files, not pipes: the daemons `up` starts must not be able to keep
/// a pipe of ours open (they log to files of their own anyway), or reading it would wait
/// for them to exit.
pub async fn cluster_script(args: &[&str]) -> Result<Run> {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let script = script();
        let dir = std::env::temp_dir();
        let tag = format!("shellcar-cluster-script-{}", std::process::id());
        let (out_path, err_path) = (
            dir.join(format!("{tag}.out")),
            dir.join(format!("{tag}.err")),
        );
        let start = Instant::now();
        let status = Command::new(&script)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        let took = start.elapsed();
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        let command = format!("e2e/cluster {}", args.join(" "));
        eprintln!("--- {command} ({took:.1?}, {status}):\n{stderr}{stdout}---");
        if !status.success() {
            bail!("{command} failed ({status}):\n{stderr}");
        }
        Ok(Run { stderr, took })
    })
    .await?
}

/// `e2e/cluster up`, which must keep the state: fails if `up` says it wiped.
pub async fn up_keeping_state() -> Result<Duration> {
    let run = cluster_script(&["up"]).await?;
    ensure!(
        !run.stderr.contains(WIPE_MARKER),
        "`e2e/cluster up` wiped the cluster instead of restarting over its state:\n{}",
        run.stderr
    );
    Ok(run.took)
}

/// The PID of each running component, from `e2e/cluster status` (`NAME running (pid N)`).
pub async fn running_pids() -> Result<BTreeMap<String, String>> {
    // `status` exits 1 while something is down; only its lines matter here.
    let script = script();
    let out =
        tokio::task::spawn_blocking(move || Command::new(script).arg("status").output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            (words.next()? == "running").then_some(())?;
            let pid = words.next()?.strip_prefix('(')?;
            (pid == "pid").then_some(())?;
            let pid = words.next()?.trim_end_matches(')');
            Some((name.to_owned(), pid.to_owned()))
        })
        .collect())
}
