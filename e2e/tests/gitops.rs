//! A debugged workload as a GitOps tool sees it, against the real API server.
//!
//! - The `jqPathExpressions` of config/argocd/application-ignore-differences.yaml, run with
//!   the real jq the way Argo CD runs them (`del(EXPR)`, one after another), make a Deployment
//!   during a session what it was before, while keeping the user's own template fields.
//! - A sync as Argo CD does it (`kubectl apply`, or server-side apply as `argocd-controller`)
//!   while a session runs leaves the debugger in place, and teardown still restores git's
//!   template exactly.
//! - A sync that copies the live debugger into what it applies (what the sync option
//!   RespectIgnoreDifferences=true does with those expressions) makes the syncing manager a
//!   co-owner of the debugger's fields: teardown can no longer remove them. The README
//!   warns against it; this test keeps that warning true.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use shellcar_e2e::workload::{
    NGINX_CONTAINER, nginx_deployment, pretty, template_containers, template_shares_processes,
};
use shellcar_e2e::{Fixture, kubectl};

/// The field manager of Argo CD's server-side apply syncs.
const ARGOCD_MANAGER: &str = "argocd-controller";

/// The busybox image the cluster scripts build.
const BUSYBOX_IMAGE: &str = "shellcar.local/busybox:1.36";

/// The Application snippet that the README shows and users copy.
const IGNORE_DIFFERENCES: &str = "config/argocd/application-ignore-differences.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The `jqPathExpressions` that the Application snippet gives for `kind`.
fn ignore_expressions(kind: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(repo(IGNORE_DIFFERENCES))
        .with_context(|| format!("reading {IGNORE_DIFFERENCES}"))?;
    let app: Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {IGNORE_DIFFERENCES}"))?;
    let entry = app["spec"]["ignoreDifferences"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["kind"] == kind))
        .with_context(|| format!("{IGNORE_DIFFERENCES} has no ignoreDifferences for {kind}"))?;
    entry["jqPathExpressions"]
        .as_array()
        .context("no jqPathExpressions")?
        .iter()
        .map(|e| {
            e.as_str()
                .map(str::to_owned)
                .context("an expression is not a string")
        })
        .collect()
}

/// `object` with everything that `expressions` select deleted, as Argo CD normalizes the
/// live and the desired object before comparing them: `jq 'del(EXPR)'` for each in turn.
fn normalized(object: &Value, expressions: &[String]) -> Result<Value> {
    let mut current = object.clone();
    for expression in expressions {
        let mut child = Command::new("jq")
            .args(["--compact-output", &format!("del({expression})")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running jq (Debian package jq)")?;
        child
            .stdin
            .take()
            .context("jq's stdin")?
            .write_all(serde_json::to_string(&current)?.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "jq 'del({expression})' failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        current = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("reading jq's output for {expression}"))?;
    }
    Ok(current)
}

/// Deployment `name` exactly as the API server returns it (as Argo CD reads the live object),
/// as JSON.
async fn deployment(f: &Fixture, name: &str) -> Result<Value> {
    let raw: Api<DynamicObject> = Api::namespaced_with(
        f.cluster.client.clone(),
        f.ns(),
        &ApiResource::erase::<Deployment>(&()),
    );
    let d = raw
        .get(name)
        .await
        .with_context(|| format!("reading Deployment {name}"))?;
    Ok(serde_json::to_value(d)?)
}

/// nginx Deployment `name` whose template also carries what a user might set that looks like
/// shellcar's: an annotation of its own and a second container.
fn annotated_deployment(name: &str) -> Result<Deployment> {
    let mut d = serde_json::to_value(nginx_deployment(name, 1)?)?;
    let template = &mut d["spec"]["template"];
    template["metadata"]["annotations"] = json!({"shop.example/team": "checkout"});
    template["spec"]["containers"]
        .as_array_mut()
        .context("containers")?
        .push(json!({
            "name": "tail",
            "image": BUSYBOX_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sleep", "100000"],
        }));
    Ok(serde_json::from_value(d)?)
}

#[tokio::test]
async fn ignore_differences_hide_exactly_what_a_session_adds() -> Result<()> {
    let expressions = ignore_expressions("Deployment")?;
    let f = Fixture::new("gitops-ignore").await?;
    f.workloads
        .create_deployment(&nginx_deployment("web", 1)?)
        .await?;
    f.workloads
        .create_deployment(&annotated_deployment("api")?)
        .await?;
    let mut cases = vec![];
    for name in ["web", "api"] {
        cases.push((name, deployment(&f, name).await?));
    }
    let (web, api) = tokio::try_join!(
        f.debug_deployment("web-debug", "web", "30m"),
        f.debug_deployment("api-debug", "api", "30m"),
    )?;

    for ((name, before), debugger) in cases.iter().zip([web, api]) {
        let template = f.workloads.assert_debugged(name, &[&debugger]).await?;
        let during = deployment(&f, name).await?;
        assert_eq!(during["spec"]["template"], template);
        // The session really changed the template: the comparison below means something.
        let was = &before["spec"]["template"];
        assert_ne!(&template, was, "Deployment {name} was not debugged");
        assert!(template_containers(&template).contains(&debugger));
        assert_eq!(template_shares_processes(&template), Some(true));

        let plain = normalized(before, &expressions)?;
        let debugged = normalized(&during, &expressions)?;
        assert_eq!(
            debugged["spec"]["template"],
            plain["spec"]["template"],
            "Deployment {name}: the ignored differences leave more than the template before the session\n--- before ---\n{}\n--- during ---\n{}",
            pretty(&plain["spec"]["template"]),
            pretty(&debugged["spec"]["template"])
        );
        // And they hide nothing of the user's own template.
        assert_eq!(
            &plain["spec"]["template"], was,
            "Deployment {name}: the expressions remove a field of the user's template"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_sync_during_a_session_keeps_the_debugger_and_teardown_still_restores_git() -> Result<()>
{
    let f = Fixture::new("gitops-sync").await?;
    let git = serde_json::to_value(nginx_deployment("web", 1)?)?;
    // Argo CD's default sync is `kubectl apply`: the Deployment carries its
    // last-applied-configuration from the start.
    let created = kubectl::apply(None, f.ns(), &git).await?;
    ensure!(created.status.success(), "{created:?}");
    f.workloads.wait_rollout("web").await?;
    let before = f.workloads.template("web").await?;

    let debugger = f.debug_deployment("sync", "web", "30m").await?;
    f.workloads.assert_debugged("web", &[&debugger]).await?;

    // A client-side sync (the default) and a server-side one (ServerSideApply=true).
    let synced = kubectl::apply(None, f.ns(), &git).await?;
    ensure!(synced.status.success(), "{synced:?}");
    f.workloads.assert_debugged("web", &[&debugger]).await?;
    let ssa = PatchParams::apply(ARGOCD_MANAGER).force();
    f.workloads
        .deployments
        .patch("web", &ssa, &Patch::Apply(&git))
        .await
        .context("server-side apply as argocd-controller")?;
    f.workloads.assert_debugged("web", &[&debugger]).await?;
    f.sessions.wait_active("sync").await?;

    f.sessions.delete_and_wait_gone("sync").await?;
    f.workloads.assert_restored("web", &before, 1).await?;
    Ok(())
}

#[tokio::test]
async fn applying_the_live_debugger_as_argocd_pins_it_past_teardown() -> Result<()> {
    let f = Fixture::new("gitops-respect").await?;
    let git = serde_json::to_value(nginx_deployment("web", 1)?)?;
    f.workloads
        .deployments
        .patch(
            "web",
            &PatchParams::apply(ARGOCD_MANAGER),
            &Patch::Apply(&git),
        )
        .await
        .context("creating Deployment web as argocd-controller")?;
    f.workloads.wait_rollout("web").await?;

    let debugger = f.debug_deployment("respect", "web", "30m").await?;
    let live = f.workloads.assert_debugged("web", &[&debugger]).await?;
    // What RespectIgnoreDifferences=true applies: git, with the ignored fields taken from
    // the live object.
    let mut pre_patched = git.clone();
    pre_patched["spec"]["template"] = live;
    f.workloads
        .deployments
        .patch(
            "web",
            &PatchParams::apply(ARGOCD_MANAGER).force(),
            &Patch::Apply(&pre_patched),
        )
        .await
        .context("server-side apply of the pre-patched Deployment")?;

    f.sessions.delete_and_wait_gone("respect").await?;
    let after = f.workloads.template("web").await?;
    assert_eq!(
        template_containers(&after),
        [NGINX_CONTAINER, debugger.as_str()],
        "teardown removed the debugger that argocd-controller also applied: the README's \
         warning about RespectIgnoreDifferences=true is out of date\n{}",
        pretty(&after)
    );
    Ok(())
}
