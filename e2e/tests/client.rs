//! The client side as a user runs it: `shellcar debug`, `ls`, `extend`, `end`, the same
//! binary as the kubectl plugin `kubectl shellcar`, and an interactive `debug` in a
//! pseudo-terminal.
//!
//! Every command runs the `shellcar` binary that `e2e/deploy` builds, as a ServiceAccount
//! of the test's namespace with a kubeconfig of its own, and with PATH starting at a
//! scratch directory that holds `kubectl` (the cluster's own kubectl, which `debug`
//! runs to attach) and `kubectl-shellcar` (a symlink to the binary, as a plugin install
//! makes it).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::PolicyRule;
use shellcar::crd::{DebugSession, Phase};
use shellcar_e2e::Fixture;
use shellcar_e2e::cli::{self, Run};
use shellcar_e2e::identity::{User, rule_for};
use shellcar_e2e::kubectl;
use shellcar_e2e::workload::assert_template_restored;

/// The Deployment every test debugs.
const WEB: &str = "web";

/// The debugger image the cluster has (imported by `e2e/cluster`).
const BUSYBOX_IMAGE: &str = "shellcar.local/busybox:1.36";

/// Bound on one run of the CLI, waits for Ready and teardown included.
const CLI_TIMEOUT: Duration = Duration::from_secs(150);

/// A directory to put first on PATH: `kubectl` (the cluster's kubectl) and
/// `kubectl-shellcar` (the shellcar binary, as a plugin). Removed when dropped.
struct PluginPath {
    dir: PathBuf,
}

impl PluginPath {
    fn create(tag: &str) -> Result<PluginPath> {
        let dir = std::env::temp_dir().join(format!("shellcar-e2e-path-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let kubectl = which(&kubectl::binary())?;
        symlink(&kubectl, dir.join("kubectl"))?;
        symlink(cli::shellcar_binary()?, dir.join("kubectl-shellcar"))?;
        Ok(PluginPath { dir })
    }

    /// PATH with this directory first.
    fn path(&self) -> std::ffi::OsString {
        let mut path = self.dir.clone().into_os_string();
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        path
    }
}

impl Drop for PluginPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `name` as a path: itself when it has a slash, else found on PATH.
fn which(name: &std::ffi::OsStr) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.components().count() > 1 {
        return Ok(path.to_owned());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{} is not on PATH", path.display()))
}

/// Runs `program args` as `user` with PATH from `path`, stdin not a terminal; killed after
/// [`CLI_TIMEOUT`].
async fn run(user: &User, path: &PluginPath, program: &Path, args: &[&str]) -> Result<Run> {
    let env = [
        ("KUBECONFIG", user.kubeconfig().into()),
        ("PATH", path.path()),
    ];
    cli::run(program, args, &env, CLI_TIMEOUT).await
}

/// Runs `shellcar args`.
async fn shellcar(user: &User, path: &PluginPath, args: &[&str]) -> Result<Run> {
    run(user, path, &cli::shellcar_binary()?, args).await
}

/// User `dev`: everything with sessions, get and patch on Deployment web (what a Sidecar
/// session stands in for), and what `kubectl attach` needs.
async fn developer(f: &Fixture) -> Result<User> {
    let dev = f.user("dev").await?;
    let attach = PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["pods".to_owned(), "pods/attach".to_owned()]),
        verbs: ["get", "list", "create"].map(String::from).to_vec(),
        ..PolicyRule::default()
    };
    dev.grant(
        "dev-debug-web",
        vec![rule_for::<Deployment>(&["get", "patch"], &[WEB]), attach],
    )
    .await?;
    Ok(dev)
}

/// The value of `key` in `debug --attach=false`'s output (`session  NAME`).
fn field<'a>(run: &'a Run, key: &str) -> Result<&'a str> {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .with_context(|| format!("`{}` printed no {key:?} line: {run:#?}", run.command))
}

/// The line of `ls`'s table for session `name`, split into cells.
fn row(run: &Run, name: &str) -> Option<Vec<String>> {
    run.stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(name))
}

/// `debug deploy/web --attach=false` creates a session under a generated name and returns
/// once it is Active, printing the name and the attach command; `ls` lists it as Active
/// with its target, mode and requester; `extend` raises `expiresAt` by what it adds; `end`
/// deletes it and waits, after which it is gone and the Deployment's template is exactly
/// what it was. The same `ls` works as `kubectl shellcar ls` through the plugin on PATH.
#[tokio::test]
async fn debug_without_attach_then_ls_extend_and_end() -> Result<()> {
    let (f, before) = Fixture::with_deployment("cli-life", WEB, 1).await?;
    let dev = developer(&f).await?;
    let path = PluginPath::create(f.ns())?;
    let ns = f.ns();

    let debug = shellcar(
        &dev,
        &path,
        &[
            "debug",
            "deploy/web",
            "-n",
            ns,
            "--image",
            BUSYBOX_IMAGE,
            "--ttl",
            "30m",
            "--attach=false",
        ],
    )
    .await?;
    assert!(debug.status.success(), "{debug:#?}");
    let name = field(&debug, "session")?.to_owned();
    assert!(name.starts_with("web-debug-"), "generated name {name}");
    assert!(
        field(&debug, "attach")?.starts_with(&format!("kubectl attach -it -n {ns} web-")),
        "{debug:#?}"
    );
    // Without a terminal, each phase is a plain line on stderr; the ones between may pass
    // too fast to be seen, the last one cannot.
    assert!(
        debug.stderr.contains(&format!("{name}: Active")),
        "the progress lines must show phase Active: {debug:#?}"
    );
    let active = f.sessions.wait_active(&name).await?;
    assert_eq!(
        active.spec.debugger.image.as_deref(),
        Some(BUSYBOX_IMAGE),
        "{active:#?}"
    );
    assert_eq!(
        active.spec.requester.as_ref().map(|r| r.username.as_str()),
        Some(dev.username.as_str())
    );

    let ls = shellcar(&dev, &path, &["ls", "-n", ns]).await?;
    assert!(ls.status.success(), "{ls:#?}");
    assert_eq!(
        ls.stdout
            .lines()
            .next()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "NAME",
            "TARGET",
            "MODE",
            "PHASE",
            "REQUESTER",
            "EXPIRES"
        ]),
        "{ls:#?}"
    );
    let cells = row(&ls, &name).with_context(|| format!("ls lists no {name}: {ls:#?}"))?;
    assert_eq!(
        cells[..5],
        [
            name.clone(),
            "deploy/web".to_owned(),
            "Sidecar".to_owned(),
            "Active".to_owned(),
            dev.username.clone()
        ],
        "{ls:#?}"
    );
    assert!(
        cells[5] == "in" && cells[6].ends_with('m'),
        "EXPIRES must read `in NNm`: {ls:#?}"
    );

    // The same binary as a kubectl plugin, found by the cluster's kubectl on PATH.
    let kubectl = path.dir.join("kubectl");
    let plugin = run(&dev, &path, &kubectl, &["shellcar", "ls", "-n", ns]).await?;
    assert!(plugin.status.success(), "{plugin:#?}");
    assert!(row(&plugin, &name).is_some(), "{plugin:#?}");
    let all = run(&dev, &path, &kubectl, &["shellcar", "ls", "--help"]).await?;
    assert!(
        all.stdout.contains("kubectl shellcar ls"),
        "help under kubectl must name `kubectl shellcar`: {all:#?}"
    );

    let expires = |s: &DebugSession| s.status.as_ref().and_then(|s| s.expires_at.clone());
    let old = expires(&active).context("no expiresAt")?.0;
    let extend = shellcar(&dev, &path, &["extend", &name, "15m", "-n", ns]).await?;
    assert!(extend.status.success(), "{extend:#?}");
    assert!(extend.stdout.contains("ttl 30m -> 45m"), "{extend:#?}");
    let extended = f
        .sessions
        .wait(&name, "expiresAt 15m later", |s| {
            expires(s).is_some_and(|at| at.0 > old)
        })
        .await?;
    assert_eq!(extended.spec.ttl, "45m");
    let new = expires(&extended).context("no expiresAt")?.0;
    assert_eq!(
        new.duration_since(old).as_secs(),
        15 * 60,
        "expiresAt {old} -> {new}"
    );

    let end = shellcar(&dev, &path, &["end", &name, "-n", ns]).await?;
    assert!(end.status.success(), "{end:#?}");
    assert!(
        end.stdout.contains(&format!(
            "DebugSession {name} ended: its debugger is removed from deploy/web"
        )),
        "{end:#?}"
    );
    // `end` returned: the session is already gone, and the template already restored.
    assert!(
        !f.sessions.names().await?.contains(&name),
        "{name} still exists after `end`"
    );
    f.workloads.wait_rollout(WEB).await?;
    assert_template_restored(&before, &f.workloads.template(WEB).await?);
    let after = shellcar(&dev, &path, &["ls", "-n", ns]).await?;
    assert!(row(&after, &name).is_none(), "{after:#?}");
    Ok(())
}

/// `debug` in a pseudo-terminal attaches by itself: the shell's prompt comes, `ps ax`
/// shows nginx's master process through the shared process namespace, and leaving the
/// shell ends the attach (kubectl attach has no detach keys on containerd: Ctrl-P Ctrl-Q
/// was tried and does nothing); with `--end-on-exit` (whose default debugger command is a
/// single `sh`) the session is then deleted and gone, and the template is exactly what it
/// was.
#[tokio::test]
async fn debug_in_a_terminal_attaches_and_ends_on_exit() -> Result<()> {
    let (f, before) = Fixture::with_deployment("cli-pty", WEB, 1).await?;
    let dev = developer(&f).await?;
    let path = PluginPath::create(f.ns())?;
    let ns = f.ns().to_owned();
    let mut command = Command::new(cli::shellcar_binary()?);
    command
        .args([
            "debug",
            "deploy/web",
            "-n",
            &ns,
            "--image",
            BUSYBOX_IMAGE,
            "--name",
            "pty",
            "--end-on-exit",
        ])
        .env("KUBECONFIG", dev.kubeconfig())
        .env("PATH", path.path())
        .env("TERM", "xterm");
    let transcript = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut session = expectrl::Session::spawn(command).context("spawning in a pty")?;
        session.set_expect_timeout(Some(CLI_TIMEOUT));
        let mut seen = String::new();
        let mut step = |session: &mut expectrl::Session, needle: &str| -> Result<()> {
            let found = session
                .expect(needle)
                .with_context(|| format!("waiting for {needle:?}; seen so far:\n{seen}"))?;
            seen.push_str(&String::from_utf8_lossy(found.before()));
            seen.push_str(needle);
            Ok(())
        };
        step(&mut session, "attaching: kubectl attach")?;
        // kubectl attach shows no prompt until the shell prints one again.
        session.send_line("")?;
        step(&mut session, "# ")?;
        session.send_line("ps ax")?;
        step(&mut session, "nginx: master")?;
        session.send_line("exit")?;
        step(
            &mut session,
            "ended: its debugger is removed from deploy/web",
        )?;
        step(&mut session, "\n")?;
        Ok(seen)
    })
    .await
    .context("the pty thread panicked")??;
    eprintln!("--- transcript ---\n{transcript}");
    assert!(
        transcript.contains("pty: Active"),
        "the phases must show on the way: {transcript}"
    );
    assert!(
        !f.sessions.names().await?.contains(&"pty".to_owned()),
        "session pty still exists after --end-on-exit"
    );
    f.workloads.wait_rollout(WEB).await?;
    assert_template_restored(&before, &f.workloads.template(WEB).await?);
    Ok(())
}

/// A session refused at creation (the built-in policy allows no SysAdmin) makes `debug`
/// exit non-zero with the API server's message, and creates nothing; a session that fails
/// later (an image that does not exist, after the operator's start deadline) makes it exit
/// non-zero with the session's reason and message.
#[tokio::test]
async fn debug_fails_with_the_refusal_or_the_sessions_message() -> Result<()> {
    let (f, before) = Fixture::with_deployment("cli-fail", WEB, 1).await?;
    let dev = developer(&f).await?;
    let path = PluginPath::create(f.ns())?;
    let ns = f.ns();

    let refused = shellcar(
        &dev,
        &path,
        &[
            "debug",
            "deploy/web",
            "-n",
            ns,
            "--profile=sysadmin",
            "--attach=false",
        ],
    )
    .await?;
    assert!(!refused.status.success(), "{refused:#?}");
    assert!(
        refused.stderr.starts_with("error: ") && refused.stderr.contains("SysAdmin"),
        "the refusal must name the profile: {refused:#?}"
    );
    assert!(
        f.sessions.names().await?.is_empty(),
        "a refused debug created a session"
    );

    let failed = shellcar(
        &dev,
        &path,
        &[
            "debug",
            "deploy/web",
            "-n",
            ns,
            "--name",
            "nope",
            "--image",
            "shellcar.local/nope:1",
            "--attach=false",
        ],
    )
    .await?;
    assert!(!failed.status.success(), "{failed:#?}");
    let stored = f
        .sessions
        .wait("nope", "phase Failed", |s| {
            s.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed)
        })
        .await?;
    let message = stored
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .context("a failed session without a message")?;
    assert!(
        failed
            .stderr
            .contains("DebugSession nope failed (StartTimeout)")
            && failed.stderr.contains(&message),
        "debug must print the reason and status.message {message:?}: {failed:#?}"
    );
    assert!(failed.stdout.is_empty(), "{failed:#?}");
    f.workloads.wait_rollout(WEB).await?;
    assert_template_restored(&before, &f.workloads.template(WEB).await?);
    Ok(())
}
