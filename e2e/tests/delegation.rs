//! Delegated access (issue 18): a DebugPolicy's `access` says what a requester must hold
//! on the target. Direct (the default, and the built-in default where no policy selects a
//! namespace): the permission the session stands in for, here `patch` on the Deployment.
//! Delegated: the verb `debug` on it, and shellcar makes the change with its own power;
//! direct power counts for nothing there and skips no approval. Either: one or the other.
//! Env from a Secret needs `get` on that Secret whatever the model.
//!
//! Each test acts as real ServiceAccounts of its own namespace, holding only the Roles the
//! test binds: `debugger` may use DebugSessions and `debug` web, no more; `patcher` may use
//! DebugSessions and patch web, no more. Policies select the test's namespace only (see
//! [`Fixture::policy`]).

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use shellcar::crd::Phase;
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::attack;
use shellcar_e2e::identity::{User, may_debug, may_patch};
use shellcar_e2e::kubectl;
use shellcar_e2e::policy::TestPolicy;
use shellcar_e2e::session::{admitted_by, refusal, sidecar};
use shellcar_e2e::workload::pretty;

/// The Deployment every test debugs.
const WEB: &str = "web";

/// The ttl of every session here: long enough never to run out during a test.
const TTL: &str = "30m";

/// Web as shellcar names it in a refusal.
const WEB_OBJECT: &str = r#"deployments.apps "web""#;

/// The ClusterRole that `config/rbac` ships for people who may ask shellcar to debug.
const DEBUGGER_ROLE: &str = "shellcar-debugger";

/// User `debugger`: DebugSessions and the verb `debug` on Deployment web, and nothing
/// else; checked to hold no `patch` on web.
async fn debugger(f: &Fixture) -> Result<User> {
    let user = f.user("debugger").await?;
    user.grant("debugger-debug-web", vec![may_debug::<Deployment>(&[WEB])])
        .await?;
    assert!(
        !user.can("patch", "apps", "deployments", Some(WEB)).await?,
        "{} must not be allowed to patch Deployment {WEB} for these tests",
        user.username
    );
    Ok(user)
}

/// User `patcher`: DebugSessions and `get`, `patch` on Deployment web, and nothing else;
/// checked to hold no `debug` on web.
async fn patcher(f: &Fixture) -> Result<User> {
    let user = f.user("patcher").await?;
    user.grant("patcher-patch-web", vec![may_patch(&[WEB])])
        .await?;
    assert!(
        !user.can("debug", "apps", "deployments", Some(WEB)).await?,
        "{} must not hold `debug` on Deployment {WEB} for these tests",
        user.username
    );
    Ok(user)
}

/// DebugPolicy `<namespace>-<suffix>` with `access` and the rest of `spec`, judged
/// Ready by the operator.
async fn access_policy(f: &Fixture, access: &str, mut spec: Value) -> Result<TestPolicy> {
    spec["access"] = json!(access);
    let policy = f.policy(&access.to_lowercase(), spec).await?;
    policy.wait_ready("True").await?;
    Ok(policy)
}

/// Creates session `manifest` as `user` (the webhook having been seen to admit it), and
/// waits until it is Active under `policy` with its debugger in web's template.
async fn runs_under(f: &Fixture, user: &User, manifest: Value, policy: &TestPolicy) -> Result<()> {
    let name = manifest["metadata"]["name"]
        .as_str()
        .context("the manifest has no name")?
        .to_owned();
    f.wait_admitted_as(user, &manifest).await?;
    user.sessions
        .create_raw(manifest)
        .await
        .with_context(|| format!("{} creating session {name}", user.username))?;
    let s = f.sessions.wait_active(&name).await?;
    assert_eq!(
        admitted_by(&s),
        Some(policy.name.as_str()),
        "status.policy of {name}: {:#?}",
        s.status
    );
    let stored = f.sessions.get_json(&name).await?;
    assert_eq!(
        stored["spec"]["requester"]["username"].as_str(),
        Some(user.username.as_str()),
        "spec.requester of {name}: {}",
        pretty(&stored["spec"])
    );
    f.workloads
        .assert_debugged(WEB, &[&naming::container_name(&name)])
        .await?;
    Ok(())
}

/// Creates session `manifest` as `user` through the API, once the webhook is seen to
/// refuse it, and asserts the refusal contains `expected` and changed nothing. Records the
/// outcome as `attack` in the security report.
async fn refused(
    f: &Fixture,
    attack: &str,
    user: &User,
    manifest: Value,
    expected: &str,
) -> Result<()> {
    let before = f.workloads.snapshot().await?;
    f.wait_refused_at_admission_as(user, &manifest, &[expected])
        .await?;
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    let refused = refusal(
        &format!("{} creating session {name}", user.username),
        user.sessions.create_raw(manifest.clone()).await,
    )?;
    attack::record(
        attack,
        &format!("refused at apply time: {expected}"),
        &refused.message,
        refused.message.contains(expected),
    );
    assert!(
        refused.message.contains(expected),
        "the refusal must name the missing permission:\n  expected: {expected}\n  got: {}",
        refused.message
    );
    f.assert_nothing_changed(&before).await
}

/// Under `access: Delegated`, a user who may not patch web, and is shown so by the API
/// server itself, gets a running Sidecar session on it: shellcar injects the debugger,
/// and removes it when the user deletes the session, with its own power both times.
#[tokio::test]
async fn delegated_a_user_holding_only_debug_gets_a_running_sidecar() -> Result<()> {
    let (f, before) = Fixture::with_deployment("deleg-runs", WEB, 1).await?;
    let policy = access_policy(&f, "Delegated", json!({})).await?;
    let dev = debugger(&f).await?;

    // The API server refuses dev the change itself.
    let label = json!({"spec": {"template": {"metadata": {"labels": {"by": "dev"}}}}});
    let forbidden = refusal(
        "dev patching Deployment web",
        Api::<Deployment>::namespaced(dev.client.clone(), f.ns())
            .patch(WEB, &PatchParams::default(), &Patch::Merge(&label))
            .await,
    )?;
    assert!(
        forbidden.code == 403
            && forbidden
                .message
                .contains(r#"cannot patch resource "deployments""#),
        "dev's own patch of web must be forbidden: {forbidden:?}"
    );
    assert_eq!(
        f.workloads.template(WEB).await?,
        before,
        "web changed after a forbidden patch"
    );

    runs_under(&f, &dev, sidecar("delegated", WEB, TTL)?, &policy).await?;

    dev.sessions.delete_and_wait_gone("delegated").await?;
    f.workloads.assert_restored(WEB, &before, 1).await?;
    Ok(())
}

/// Where no DebugPolicy selects the namespace, the built-in default is Direct: `debug`
/// lends nothing, and `kubectl apply` names the `patch` the user lacks.
#[tokio::test]
async fn without_a_policy_debug_lends_nothing_and_apply_names_the_missing_patch() -> Result<()> {
    let (f, _) = Fixture::with_deployment("deleg-default", WEB, 1).await?;
    let dev = debugger(&f).await?;
    let before = f.workloads.snapshot().await?;

    let out = kubectl::apply(Some(dev.kubeconfig()), f.ns(), &sidecar("lent", WEB, TTL)?).await?;
    let expected = format!(
        "{} (needed by mode Sidecar)",
        dev.denial("patch", WEB_OBJECT)
    );
    attack::record(
        "no policy: debug alone used to borrow the operator's power",
        "refused at kubectl apply (built-in default Direct), naming the missing patch",
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success() && out.stderr.contains(&expected),
    );
    assert!(
        !out.status.success(),
        "`{}` as {} succeeded: {out:#?}",
        out.command,
        dev.username
    );
    assert!(
        out.stderr.contains(&expected),
        "kubectl must print the missing permission:\n  expected: {expected}\n  stderr: {}",
        out.stderr
    );
    f.assert_nothing_changed(&before).await?;
    Ok(())
}

/// Under `access: Direct`, `debug` counts for nothing: the debug-only user is refused,
/// naming `patch`, and the user who may patch web is admitted and runs.
#[tokio::test]
async fn direct_refuses_debug_alone_and_admits_patch() -> Result<()> {
    let (f, _) = Fixture::with_deployment("deleg-direct", WEB, 1).await?;
    let policy = access_policy(&f, "Direct", json!({})).await?;
    let dev = debugger(&f).await?;
    let ops = patcher(&f).await?;

    refused(
        &f,
        "Direct: a session on a target the requester may only debug, not patch",
        &dev,
        sidecar("by-debugger", WEB, TTL)?,
        &dev.denial("patch", WEB_OBJECT),
    )
    .await?;
    runs_under(&f, &ops, sidecar("by-patcher", WEB, TTL)?, &policy).await?;
    Ok(())
}

/// Under `access: Delegated`, direct power counts for nothing: the user who may patch web
/// but not `debug` it is refused, naming `debug`.
#[tokio::test]
async fn delegated_refuses_patch_without_debug() -> Result<()> {
    let (f, _) = Fixture::with_deployment("deleg-nopatch", WEB, 1).await?;
    let _policy = access_policy(&f, "Delegated", json!({})).await?;
    let ops = patcher(&f).await?;

    refused(
        &f,
        "Delegated: a session by someone who may patch the target but not debug it",
        &ops,
        sidecar("by-patcher", WEB, TTL)?,
        &ops.denial("debug", WEB_OBJECT),
    )
    .await
}

/// Under `access: Either`, `debug` and `patch` each suffice: both users' sessions run.
#[tokio::test]
async fn either_admits_debug_and_patch() -> Result<()> {
    let (f, _) = Fixture::with_deployment("deleg-either", WEB, 1).await?;
    let policy = access_policy(&f, "Either", json!({})).await?;
    let dev = debugger(&f).await?;
    let ops = patcher(&f).await?;

    runs_under(&f, &dev, sidecar("by-debugger", WEB, TTL)?, &policy).await?;
    runs_under(&f, &ops, sidecar("by-patcher", WEB, TTL)?, &policy).await?;
    f.workloads
        .assert_debugged(
            WEB,
            &[
                &naming::container_name("by-debugger"),
                &naming::container_name("by-patcher"),
            ],
        )
        .await?;
    Ok(())
}

/// The production setup: `access: Delegated` with approval. A user holding `debug`
/// (through the shipped ClusterRole shellcar-debugger) and also `patch` on web still waits
/// for approval, and web is left as it was: direct power skips nothing.
#[tokio::test]
async fn delegated_with_approval_holds_a_user_with_direct_power_too() -> Result<()> {
    let (f, _) = Fixture::with_deployment("deleg-approval", WEB, 1).await?;
    let policy = access_policy(&f, "Delegated", json!({"approval": {"required": true}})).await?;
    let lead = f.user("lead").await?;
    lead.bind_cluster_role(DEBUGGER_ROLE).await?;
    lead.grant("lead-patch-web", vec![may_patch(&[WEB])])
        .await?;
    let before = f.workloads.snapshot().await?;

    let manifest = sidecar("urgent", WEB, TTL)?;
    f.wait_admitted_as(&lead, &manifest).await?;
    lead.sessions
        .create_raw(manifest)
        .await
        .context("lead creating session urgent")?;
    let s = f
        .sessions
        .wait_refused("urgent", Phase::AwaitingApproval, "AwaitingApproval")
        .await?;
    let unchanged = f.workloads.snapshot().await? == before;
    attack::record(
        "Delegated with approval: a requester who also holds patch skips the approval",
        "held in AwaitingApproval, the workload untouched",
        format!(
            "phase {:?}, workloads unchanged: {unchanged}",
            s.status.as_ref().and_then(|st| st.phase)
        ),
        s.status.as_ref().and_then(|st| st.phase) == Some(Phase::AwaitingApproval) && unchanged,
    );
    assert_eq!(
        admitted_by(&s),
        Some(policy.name.as_str()),
        "{:#?}",
        s.status
    );
    assert_eq!(
        f.workloads.snapshot().await?,
        before,
        "a session awaiting approval changed the namespace's workloads"
    );
    Ok(())
}

/// Under `access: Delegated`, with a policy that allows env from Secrets, `debug` does
/// not lend read access: env from a Secret the user may not `get` is refused, naming the
/// Secret, while the same session without it is admitted.
#[tokio::test]
async fn delegated_env_from_a_secret_the_user_may_not_read_is_refused() -> Result<()> {
    let (f, _) = Fixture::with_deployment("deleg-secret", WEB, 1).await?;
    let _policy = access_policy(&f, "Delegated", json!({"secretEnv": true})).await?;
    f.create_secret("db", "pw", "hunter2").await?;
    let dev = debugger(&f).await?;
    assert!(
        !dev.can("get", "", "secrets", Some("db")).await?,
        "{} must not be allowed to read Secret db for this test",
        dev.username
    );

    f.wait_admitted_as(&dev, &sidecar("plain", WEB, TTL)?)
        .await?;
    let mut request = sidecar("pw", WEB, TTL)?;
    request["spec"]["debugger"]["env"] =
        json!([{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]);
    refused(
        &f,
        "Delegated: debugger env from a Secret the requester may not read",
        &dev,
        request,
        &dev.denial("get", r#"secrets "db""#),
    )
    .await
}
