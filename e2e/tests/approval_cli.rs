//! `shellcar approve` and `shellcar reject`, the approvers' client commands, run as real
//! users (ServiceAccounts with kubeconfigs of their own) against sessions that a policy
//! holds in AwaitingApproval: what they print, when they refuse, and what the webhook
//! records from them.
//!
//! They run the `shellcar` binary that `e2e/deploy` builds (`target/<profile>/shellcar`,
//! beside the test executable's `deps/`), with `KUBECONFIG` set to the user's kubeconfig,
//! `-n` given explicitly and stdin not a terminal. Every policy is made with
//! [`Fixture::policy`], which selects only the test's own namespace.

use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use shellcar::crd::{DebugSession, Phase, Profile, TargetKind};
use shellcar::naming::{self, APPROVE_ANNOTATION, REJECT_ANNOTATION};
use shellcar_e2e::Fixture;
use shellcar_e2e::cli::{self, Run};
use shellcar_e2e::identity::{User, rule_for};
use shellcar_e2e::policy::TestPolicy;
use shellcar_e2e::session::session;
use shellcar_e2e::workload::{NGINX_CONTAINER, nginx_deployment, pretty};

/// The Deployment every test debugs.
const WEB: &str = "web";

/// The ttl of every session here: long enough never to run out during a test.
const TTL: &str = "30m";

/// Bound on one run of the CLI: it makes two or three API calls.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The Secret env var of web's nginx container (test 1), and the Secret filling it.
const SECRET_ENV: &str = "DB_PASSWORD";
const SECRET_NAME: &str = "db-credentials";

/// Runs `shellcar <args>` as `user` (`KUBECONFIG` = the user's kubeconfig), stdin not a
/// terminal, killed after [`CLI_TIMEOUT`].
async fn shellcar(user: &User, args: &[&str]) -> Result<Run> {
    let env = [("KUBECONFIG", user.kubeconfig().into())];
    cli::run(&cli::shellcar_binary()?, args, &env, CLI_TIMEOUT).await
}

/// Session `name` on Deployment web with the default debugger, as JSON as a user writes
/// it.
fn request(name: &str) -> Result<Value> {
    let mut s = session(name, TargetKind::Deployment, WEB, TTL)?;
    s.spec.debugger.profile = Profile::General;
    Ok(serde_json::to_value(s)?)
}

/// A policy requiring approval (deadline 1h) for the test's namespace, Ready.
async fn approval_policy(f: &Fixture) -> Result<TestPolicy> {
    let policy = f
        .policy(
            "approval",
            json!({"approval": {"required": true, "deadline": "1h"}}),
        )
        .await?;
    policy.wait_ready("True").await?;
    Ok(policy)
}

/// User `dev`, who may do everything with sessions (and, with `may_approve`, holds the
/// verb `approve` too), creates session `name`; waits until it awaits approval under
/// `policy`.
async fn requested(
    f: &Fixture,
    policy: &TestPolicy,
    name: &str,
    may_approve: bool,
) -> Result<User> {
    let dev = f.user("dev").await?;
    dev.grant(
        "dev-patch-web",
        vec![rule_for::<Deployment>(&["get", "patch"], &[WEB])],
    )
    .await?;
    if may_approve {
        dev.grant(
            "dev-approve",
            vec![rule_for::<DebugSession>(&["approve"], &[])],
        )
        .await?;
    }
    dev.sessions
        .create_raw(request(name)?)
        .await
        .with_context(|| format!("dev creating session {name}"))?;
    let s = f
        .sessions
        .wait_refused(name, Phase::AwaitingApproval, "AwaitingApproval")
        .await?;
    assert_eq!(
        s.status.as_ref().and_then(|st| st.policy.as_deref()),
        Some(policy.name.as_str()),
        "{:#?}",
        s.status
    );
    Ok(dev)
}

/// User `lead`, who may get and patch sessions and holds `verbs` (approve, reject).
async fn approver(f: &Fixture, verbs: &[&str]) -> Result<User> {
    let lead = User::create(&f.cluster, f.ns(), "lead").await?;
    let mut all = vec!["get", "patch"];
    all.extend_from_slice(verbs);
    lead.grant("lead-decide", vec![rule_for::<DebugSession>(&all, &[])])
        .await?;
    Ok(lead)
}

/// Asserts that session `name` still awaits approval, undecided and without the
/// annotations.
async fn assert_still_awaiting(f: &Fixture, name: &str, after: &str) -> Result<()> {
    let stored = f.sessions.get_json(name).await?;
    assert_eq!(
        stored["status"]["phase"],
        "AwaitingApproval",
        "after {after}: {}",
        pretty(&stored["status"])
    );
    assert!(
        stored["spec"]["approval"].is_null(),
        "after {after}, spec.approval: {}",
        pretty(&stored["spec"])
    );
    for key in [APPROVE_ANNOTATION, REJECT_ANNOTATION] {
        assert!(
            stored["metadata"]["annotations"][key].is_null(),
            "after {after}, annotation {key} is stored: {}",
            pretty(&stored["metadata"])
        );
    }
    Ok(())
}

/// Secret `name` holding `key: value`, created as the admin.
async fn create_secret(f: &Fixture, name: &str, key: &str, value: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {key: value},
    }))?;
    Api::<Secret>::namespaced(f.cluster.client.clone(), f.ns())
        .create(&PostParams::default(), &secret)
        .await
        .with_context(|| format!("creating Secret {name}"))?;
    Ok(())
}

/// `shellcar approve` by someone who may approve: without `--yes` and with stdin not a
/// terminal it refuses, telling to pass `--yes`, and changes nothing; with `--yes` it
/// prints the exposure report (the Secret env var by name, never its value), records the
/// approver in `spec.approval`, and the session starts.
#[tokio::test]
async fn approve_asks_for_yes_without_a_terminal_then_shows_the_exposure_and_starts_it()
-> Result<()> {
    let f = Fixture::new("cli-approve").await?;
    let secret_value = format!("pw-of-{}", f.ns());
    create_secret(&f, SECRET_NAME, "password", &secret_value).await?;
    let mut web = nginx_deployment(WEB, 1)?;
    web.spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .context("no pod spec")?
        .containers[0]
        .env = Some(vec![serde_json::from_value(json!({
        "name": SECRET_ENV,
        "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "password"}},
    }))?]);
    f.workloads.create_deployment(&web).await?;
    let policy = approval_policy(&f).await?;
    let lead = approver(&f, &["approve"]).await?;
    requested(&f, &policy, "incident", false).await?;

    let reason = "INC-7: lead read the exposure";
    let asked = shellcar(
        &lead,
        &["approve", "incident", "-n", f.ns(), "--reason", reason],
    )
    .await?;
    assert!(
        !asked.status.success(),
        "`{}` without --yes and without a terminal succeeded: {asked:#?}",
        asked.command
    );
    assert!(
        asked.stderr.contains("--yes") && asked.stderr.contains("not a terminal"),
        "without a terminal, the refusal must say to pass --yes: {asked:#?}"
    );
    assert_still_awaiting(&f, "incident", "approve without --yes").await?;

    let run = shellcar(
        &lead,
        &[
            "approve",
            "incident",
            "-n",
            f.ns(),
            "--reason",
            reason,
            "--yes",
        ],
    )
    .await?;
    assert!(
        run.status.success(),
        "`{}` by {}, who may approve, failed: {run:#?}",
        run.command,
        lead.username
    );
    assert!(
        run.stdout
            .contains(&format!("{SECRET_ENV} (Secret {SECRET_NAME})"))
            && run.stdout.contains(&format!("container {NGINX_CONTAINER}")),
        "the summary must list {NGINX_CONTAINER}'s env {SECRET_ENV} from Secret {SECRET_NAME}: \
         {run:#?}"
    );
    assert!(
        !run.stdout.contains(&secret_value) && !run.stderr.contains(&secret_value),
        "the Secret's value was printed: {run:#?}"
    );
    assert!(
        run.stdout
            .contains(&format!("approved by {}", lead.username)),
        "the CLI must report the approval by {}: {run:#?}",
        lead.username
    );

    f.sessions.wait_active("incident").await?;
    f.workloads
        .assert_debugged(WEB, &[&naming::container_name("incident")])
        .await?;
    let stored = f.sessions.get_json("incident").await?;
    let approval = &stored["spec"]["approval"];
    assert_eq!(
        approval["approver"].as_str(),
        Some(lead.username.as_str()),
        "spec.approval: {}",
        pretty(approval)
    );
    assert_eq!(approval["decision"], "Approved", "{}", pretty(approval));
    assert_eq!(
        approval["reason"].as_str(),
        Some(reason),
        "{}",
        pretty(approval)
    );
    Ok(())
}

/// `shellcar reject --yes` by someone who may reject: the session fails with
/// ApprovalRejected and nothing of it ever reaches the workload; `shellcar approve --yes`
/// afterwards exits non-zero saying it was already rejected, and changes nothing.
#[tokio::test]
async fn reject_fails_the_session_untouched_and_a_later_approve_is_refused() -> Result<()> {
    let (f, before) = Fixture::with_deployment("cli-reject", WEB, 1).await?;
    let policy = approval_policy(&f).await?;
    let lead = approver(&f, &["approve", "reject"]).await?;
    requested(&f, &policy, "incident", false).await?;
    let untouched = f.workloads.snapshot().await?;

    let reason = "not during the sale";
    let run = shellcar(
        &lead,
        &["reject", "incident", "-n", f.ns(), "--reason", reason, "-y"],
    )
    .await?;
    assert!(
        run.status.success(),
        "`{}` by {}, who may reject, failed: {run:#?}",
        run.command,
        lead.username
    );
    assert!(
        run.stdout
            .contains(&format!("rejected by {}", lead.username)),
        "the CLI must report the rejection by {}: {run:#?}",
        lead.username
    );

    f.assert_failed("incident", "ApprovalRejected").await?;
    let stored = f.sessions.get_json("incident").await?;
    let approval = &stored["spec"]["approval"];
    assert_eq!(
        (approval["decision"].as_str(), approval["approver"].as_str()),
        (Some("Rejected"), Some(lead.username.as_str())),
        "spec.approval: {}",
        pretty(approval)
    );
    assert_eq!(
        f.workloads.template(WEB).await?,
        before,
        "a rejected session changed web's template"
    );
    assert_eq!(
        f.workloads.snapshot().await?,
        untouched,
        "a rejected session changed the namespace's workloads"
    );

    let again = shellcar(&lead, &["approve", "incident", "-n", f.ns(), "--yes"]).await?;
    assert!(
        !again.status.success(),
        "`{}` of a rejected session succeeded: {again:#?}",
        again.command
    );
    assert!(
        again.stderr.contains("already rejected"),
        "approving a rejected session must say it was already rejected: {again:#?}"
    );
    let after = f.sessions.get_json("incident").await?;
    assert_eq!(
        &after["spec"]["approval"], approval,
        "a refused approve changed spec.approval"
    );
    assert_eq!(
        after["status"]["phase"],
        "Failed",
        "{}",
        pretty(&after["status"])
    );
    assert_eq!(
        f.workloads.template(WEB).await?,
        before,
        "approving a rejected session changed web's template"
    );
    Ok(())
}

/// The requester, though they hold the verb `approve`, cannot approve their own session
/// through the CLI: it exits non-zero with the webhook's refusal naming them, and the
/// session still awaits approval.
#[tokio::test]
async fn the_requester_cannot_approve_their_own_session_with_the_cli() -> Result<()> {
    let (f, before) = Fixture::with_deployment("cli-self", WEB, 1).await?;
    let policy = approval_policy(&f).await?;
    let dev = requested(&f, &policy, "incident", true).await?;

    let run = shellcar(
        &dev,
        &[
            "approve",
            "incident",
            "-n",
            f.ns(),
            "--reason",
            "mine",
            "--yes",
        ],
    )
    .await?;
    assert!(
        !run.status.success(),
        "the requester {} approved their own session: {run:#?}",
        dev.username
    );
    assert!(
        run.stderr.contains(&dev.username) && run.stderr.contains("may not approve"),
        "the refusal must be the webhook's, naming {}: {run:#?}",
        dev.username
    );
    assert_still_awaiting(&f, "incident", "self-approval").await?;
    assert_eq!(
        f.workloads.template(WEB).await?,
        before,
        "a refused self-approval changed web's template"
    );
    Ok(())
}
