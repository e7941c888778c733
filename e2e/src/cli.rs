//! The `shellcar` binary as a user runs it from a terminal-less shell: with a kubeconfig of
//! their own, stdin not a terminal, bounded in time, everything it printed kept.

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// What one run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// The `shellcar` binary that `e2e/deploy` built: the test executable is
/// `target/<profile>/deps/<test>-<hash>`, the binary `target/<profile>/shellcar`.
pub fn shellcar_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("shellcar"))
        .with_context(|| format!("{} has no grandparent directory", exe.display()))?;
    if !binary.is_file() {
        bail!(
            "the shellcar binary {} is missing: build it with `cargo build -p shellcar` \
             (e2e/deploy does) before running these tests",
            binary.display()
        );
    }
    Ok(binary)
}

/// Runs `program args` with `env` added, stdin `/dev/null`, killed after `timeout`. Fails
/// only when it cannot be run or does not end in time; its exit status is in the result.
/// The run blocks a thread of its own, so the test's runtime keeps serving its clients.
pub async fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, OsString)],
    timeout: Duration,
) -> Result<Run> {
    let line = format!("{} {}", program.display(), args.join(" "));
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // An error's message, not anyhow's backtrace of it.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = line.clone();
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || wait(command, &what, timeout))
            .await
            .context("the CLI's thread panicked")??;
    eprintln!("ran {line}: {status}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    Ok(Run {
        command: line,
        status,
        stdout,
        stderr,
    })
}

/// Spawns `command`, reads both pipes to the end, and waits at most `timeout`.
fn wait(
    mut command: Command,
    what: &str,
    timeout: Duration,
) -> Result<(ExitStatus, String, String)> {
    let mut child = command.spawn().with_context(|| format!("running {what}"))?;
    let mut out = child.stdout.take().context("no stdout pipe")?;
    let mut err = child.stderr.take().context("no stderr pipe")?;
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        out.read_to_end(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        err.read_to_end(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |t: std::thread::JoinHandle<std::io::Result<Vec<u8>>>| -> Result<String> {
        let bytes = t
            .join()
            .map_err(|_| anyhow::anyhow!("a pipe reader panicked"))??;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let (stdout, stderr) = (read(out)?, read(err)?);
    match status {
        Some(status) => Ok((status, stdout, stderr)),
        None => {
            bail!("{what} did not end within {timeout:?}; stdout:\n{stdout}\nstderr:\n{stderr}")
        }
    }
}
