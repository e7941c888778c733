//! Running the cluster's kubectl, for what only kubectl shows a user: the `Warning:` lines
//! it prints for admission warnings.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context as _, Result};
use serde_json::Value;

/// Environment variable naming the cluster's kubectl (`e2e/cluster exec` sets it); without
/// it, `kubectl` from `PATH`.
pub const KUBECTL_ENV: &str = "SHELLCAR_KUBECTL";

/// What one kubectl run printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The lines of stderr that kubectl prints for warnings (`Warning: ...`).
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("Warning:"))
            .collect()
    }
}

/// The kubectl binary the tests run.
pub fn binary() -> OsString {
    std::env::var_os(KUBECTL_ENV).unwrap_or_else(|| "kubectl".into())
}

/// Runs kubectl with `args`, as the user of `kubeconfig` (`None`: the admin of
/// `KUBECONFIG`, as the rest of the tests), with `stdin` as its input. Fails only when
/// kubectl cannot be run; its exit status is in the output.
pub async fn kubectl(
    kubeconfig: Option<&Path>,
    args: &[&str],
    stdin: Option<String>,
) -> Result<Output> {
    let mut command = Command::new(binary());
    if let Some(path) = kubeconfig {
        command.arg("--kubeconfig").arg(path);
    }
    command
        .arg("--request-timeout=30s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = format!(
        "{} {}{}",
        binary().to_string_lossy(),
        kubeconfig.map_or(String::new(), |p| format!("--kubeconfig {} ", p.display())),
        args.join(" ")
    );
    let what = line.clone();
    // kubectl blocks; the test's runtime must keep serving its clients meanwhile.
    let output = tokio::task::spawn_blocking(move || -> std::io::Result<std::process::Output> {
        let mut child = command.spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())?;
        }
        child.wait_with_output()
    })
    .await
    .context("kubectl's thread panicked")?
    .with_context(|| {
        format!("running {what} (is the cluster's kubectl on PATH or in {KUBECTL_ENV}?)")
    })?;
    Ok(Output {
        command: line,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `kubectl apply -f -` of `manifest` in `namespace`, as the user of `kubeconfig` (see
/// [`kubectl`]).
pub async fn apply(kubeconfig: Option<&Path>, namespace: &str, manifest: &Value) -> Result<Output> {
    kubectl(
        kubeconfig,
        &["apply", "-n", namespace, "-f", "-"],
        Some(serde_json::to_string_pretty(manifest)?),
    )
    .await
}

/// A directory of the test's own under the system's temporary directory, removed when
/// dropped (unless `SHELLCAR_E2E_KEEP` is set), for files kubectl reads.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates (or empties) `<tmp>/shellcar-e2e-<name>`.
    pub fn create(name: &str) -> Result<Scratch> {
        let path = std::env::temp_dir().join(format!("shellcar-e2e-{name}"));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("emptying {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to file `name` in the directory, readable by its owner only (it
    /// may hold a token), and returns its path.
    pub fn write_private(&self, name: &str, contents: &[u8]) -> Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.path.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(contents)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SHELLCAR_E2E_KEEP").is_some() {
            eprintln!("keeping {} (SHELLCAR_E2E_KEEP)", self.path.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}
