//! DebugPolicies decide what sessions may do (issue 9): profiles, images, how many
//! sessions, and whether someone else must approve first; the webhook refuses at apply
//! time what no policy allows, and the operator ends a running session that a policy no
//! longer allows. Also Pod Security preflight and what status tells of the Secrets a
//! debugger can read.
//!
//! DebugPolicies are cluster-scoped and tests in other namespaces run meanwhile: every
//! policy here is made with [`Fixture::policy`], which selects only the test's own
//! namespace (by a label no other namespace carries) and deletes the policy when the test
//! ends.

use anyhow::{Context as _, Result};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use shellcar::crd::{DebugSession, Phase, Profile, TargetKind};
use shellcar::naming::{self, APPROVE_ANNOTATION, BUILT_IN_POLICY};
use shellcar_e2e::Fixture;
use shellcar_e2e::attack;
use shellcar_e2e::identity::{User, rule_for, service_account_username};
use shellcar_e2e::kubectl;
use shellcar_e2e::session::{admitted_by, session};
use shellcar_e2e::workload::{NGINX_CONTAINER, NGINX_IMAGE, nginx_deployment, pretty};

/// The Deployment every test debugs.
const WEB: &str = "web";

/// The debugger image of the local cluster (the operator's `--default-image`).
const BUSYBOX_IMAGE: &str = "shellcar.local/busybox:1.36";

/// The ttl of every session here: long enough never to run out during a test.
const TTL: &str = "30m";

/// The Pod Security label the webhook's preflight reads, and that the API server's Pod
/// Security admission enforces.
const POD_SECURITY_ENFORCE: &str = shellcar_e2e::psa::ENFORCE_LABEL;

/// Session `name` on Deployment web with debugger `profile` (and `image`, else the
/// operator's default), as JSON as a user writes it.
fn request(name: &str, profile: Profile, image: Option<&str>) -> Result<Value> {
    let mut s = session(name, TargetKind::Deployment, WEB, TTL)?;
    s.spec.debugger.profile = profile;
    s.spec.debugger.image = image.map(str::to_owned);
    Ok(serde_json::to_value(s)?)
}

/// `kubectl apply` of `manifest` as the admin, which must be refused with a message
/// naming every one of `parts`, and create nothing. Returns kubectl's stderr. Records the
/// outcome as `attack` in the security report.
async fn assert_apply_refused(
    f: &Fixture,
    attack: &str,
    manifest: &Value,
    parts: &[&str],
) -> Result<String> {
    let name = manifest["metadata"]["name"]
        .as_str()
        .context("the manifest has no name")?;
    let out = kubectl::apply(None, f.ns(), manifest).await?;
    attack::record(
        attack,
        &format!("refused at kubectl apply, naming {parts:?}"),
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success() && parts.iter().all(|p| out.stderr.contains(p)),
    );
    assert!(
        !out.status.success(),
        "`{}` of session {name} succeeded; it must be refused naming {parts:?}: {out:#?}",
        out.command
    );
    for part in parts {
        assert!(
            out.stderr.contains(part),
            "the refusal of session {name} must name {part:?}; stderr: {}",
            out.stderr
        );
    }
    assert!(
        f.sessions.api.get_opt(name).await?.is_none(),
        "session {name} exists after its refusal"
    );
    Ok(out.stderr)
}

/// `kubectl annotate` of session `name` as `user`, with `key=value`.
async fn annotate(user: &User, name: &str, key: &str, value: &str) -> Result<kubectl::Output> {
    user.kubectl(
        &[
            "annotate",
            "-n",
            &user.namespace,
            "debugsessions.debug.shellcar.dev",
            name,
            &format!("{key}={value}"),
        ],
        None,
    )
    .await
}

/// Where no policy selects the namespace, the built-in default refuses SysAdmin at apply
/// time; once a policy granting SysAdmin selects the namespace, the same session is
/// admitted, runs, and names that policy in `status.policy`.
#[tokio::test]
async fn sysadmin_is_refused_without_a_policy_and_runs_where_a_policy_grants_it() -> Result<()> {
    let (f, _) = Fixture::with_deployment("pol-sysadmin", WEB, 1).await?;
    let manifest = request("root", Profile::SysAdmin, None)?;

    assert_apply_refused(
        &f,
        "profile SysAdmin where no policy grants it",
        &manifest,
        &["SysAdmin"],
    )
    .await?;

    let policy = f
        .policy("sysadmin", json!({"profiles": ["SysAdmin"]}))
        .await?;
    policy.wait_ready("True").await?;
    f.wait_admitted(&manifest).await?;
    f.sessions
        .create_raw(manifest)
        .await
        .context("creating the SysAdmin session under the policy")?;
    let s = f.sessions.wait_active("root").await?;
    assert_eq!(
        admitted_by(&s),
        Some(policy.name.as_str()),
        "status.policy must name the policy that grants SysAdmin: {:#?}",
        s.status
    );
    f.workloads
        .assert_debugged(WEB, &[&naming::container_name("root")])
        .await?;
    Ok(())
}

/// A policy's `images` globs bound the debugger image: an image outside them is refused
/// at apply time, naming the image and the policy; one inside is admitted and runs.
#[tokio::test]
async fn an_image_outside_the_policys_globs_is_refused_and_one_inside_runs() -> Result<()> {
    let (f, _) = Fixture::with_deployment("pol-image", WEB, 1).await?;
    let policy = f
        .policy("images", json!({"images": ["shellcar.local/busybox:*"]}))
        .await?;
    policy.wait_ready("True").await?;

    // nginx exists on the nodes (web runs it): only the policy stands in the way.
    let outside = request("nginx-debugger", Profile::General, Some(NGINX_IMAGE))?;
    let parts = [NGINX_IMAGE, policy.name.as_str()];
    f.wait_refused_at_admission(&outside, &parts).await?;
    assert_apply_refused(
        &f,
        "debugger image outside the policy's images",
        &outside,
        &parts,
    )
    .await?;

    let inside = request("busybox-debugger", Profile::General, Some(BUSYBOX_IMAGE))?;
    let out = kubectl::apply(None, f.ns(), &inside).await?;
    assert!(
        out.status.success(),
        "`{}` of a session with image {BUSYBOX_IMAGE}, inside the policy's globs, failed: {out:#?}",
        out.command
    );
    let s = f.sessions.wait_active("busybox-debugger").await?;
    assert_eq!(
        admitted_by(&s),
        Some(policy.name.as_str()),
        "{:#?}",
        s.status
    );
    assert_eq!(
        f.sessions.names().await?,
        vec!["busybox-debugger".to_owned()],
        "only the session inside the globs may exist"
    );
    Ok(())
}

/// Under a policy that requires approval, a session waits in AwaitingApproval and changes
/// nothing. Neither its requester (even one holding the verb `approve`) nor a user who may
/// annotate but not `approve` can approve it; a user with `approve` can, which starts it.
/// The webhook records who approved in `spec.approval`, removes the annotation, and the
/// ttl counts from the approval. (The users are ServiceAccounts, which approve only where
/// the policy names them: it names intern and lead, so that RBAC's verb decides here.)
#[tokio::test]
async fn a_session_needing_approval_waits_for_someone_else_who_may_approve() -> Result<()> {
    let (f, before) = Fixture::with_deployment("pol-approval", WEB, 1).await?;
    let approvers = ["intern", "lead"].map(|name| service_account_username(f.ns(), name));
    let policy = f
        .policy(
            "approval",
            json!({"approval": {"required": true, "deadline": "1h", "approvers": {"users": approvers}}}),
        )
        .await?;
    policy.wait_ready("True").await?;

    // dev asks, and holds `approve` too: only being the requester stops dev approving.
    let dev = f.user("dev").await?;
    dev.grant(
        "dev-patch-web",
        vec![rule_for::<Deployment>(&["get", "patch"], &[WEB])],
    )
    .await?;
    dev.grant(
        "dev-approve",
        vec![rule_for::<DebugSession>(&["approve"], &[])],
    )
    .await?;
    // intern may annotate sessions, not approve them.
    let intern = User::create(&f.cluster, f.ns(), "intern").await?;
    intern
        .grant(
            "intern-annotate",
            vec![rule_for::<DebugSession>(&["get", "patch"], &[])],
        )
        .await?;
    // lead may approve: exactly what that takes.
    let lead = User::create(&f.cluster, f.ns(), "lead").await?;
    lead.grant(
        "lead-approve",
        vec![rule_for::<DebugSession>(&["get", "patch", "approve"], &[])],
    )
    .await?;
    assert!(
        !intern
            .can("approve", "debug.shellcar.dev", "debugsessions", None)
            .await?,
        "{} must not hold `approve` for this test",
        intern.username
    );
    let untouched = f.workloads.snapshot().await?;

    dev.sessions
        .create_raw(request("incident", Profile::General, None)?)
        .await
        .context("dev creating session incident")?;
    let s = f
        .sessions
        .wait_refused("incident", Phase::AwaitingApproval, "AwaitingApproval")
        .await?;
    assert_eq!(
        admitted_by(&s),
        Some(policy.name.as_str()),
        "{:#?}",
        s.status
    );
    assert_eq!(
        f.workloads.template(WEB).await?,
        before,
        "an unapproved session changed web's template"
    );
    assert_eq!(
        f.workloads.snapshot().await?,
        untouched,
        "an unapproved session changed the namespace's workloads"
    );

    // Every annotation names the session as its author saw it: this one, unchanged.
    let stored = f.sessions.get_json("incident").await?;
    let seen = |reason: &str| {
        json!({
            "uid": stored["metadata"]["uid"],
            "generation": stored["metadata"]["generation"],
            "reason": reason,
        })
        .to_string()
    };

    // The requester may not approve their own session.
    let out = annotate(
        &dev,
        "incident",
        APPROVE_ANNOTATION,
        &seen("my own incident"),
    )
    .await?;
    attack::record(
        "the requester approves their own session (approve annotation)",
        "refused by the webhook, naming the user",
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success() && out.stderr.contains(&dev.username),
    );
    assert!(
        !out.status.success(),
        "the requester {} approved their own session: {out:#?}",
        dev.username
    );
    assert!(
        out.stderr.contains(&dev.username) && out.stderr.contains("approve"),
        "the refusal of self-approval must name the user and approval; stderr: {}",
        out.stderr
    );

    // Nor may a user without the verb `approve`, though they may patch the session.
    let out = annotate(&intern, "incident", APPROVE_ANNOTATION, &seen("looks fine")).await?;
    attack::record(
        "a user who may patch the session but lacks the verb approve approves it",
        "refused by the webhook, naming the verb approve",
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success()
            && out.stderr.contains(&intern.username)
            && out.stderr.contains("approve"),
    );
    assert!(
        !out.status.success(),
        "{}, without the verb approve, approved the session: {out:#?}",
        intern.username
    );
    assert!(
        out.stderr.contains(&intern.username) && out.stderr.contains("approve"),
        "the refusal must name the user and the verb approve; stderr: {}",
        out.stderr
    );

    // Both refusals left the session waiting, unapproved, and the workloads alone.
    let stored = f.sessions.get_json("incident").await?;
    assert!(
        stored["spec"]["approval"].is_null(),
        "a refused annotation recorded an approval: {}",
        pretty(&stored["spec"])
    );
    assert!(
        stored["metadata"]["annotations"][APPROVE_ANNOTATION].is_null(),
        "a refused annotation was stored: {}",
        pretty(&stored["metadata"])
    );
    assert_eq!(
        stored["status"]["phase"],
        "AwaitingApproval",
        "{}",
        pretty(&stored["status"])
    );
    assert_eq!(
        f.workloads.snapshot().await?,
        untouched,
        "the namespace's workloads changed before any approval"
    );

    // lead approves: the session starts.
    let reason = "INC-42: lead checked the request";
    let out = annotate(&lead, "incident", APPROVE_ANNOTATION, &seen(reason)).await?;
    assert!(
        out.status.success(),
        "{}, who may approve, could not: {out:#?}",
        lead.username
    );
    let s = f.sessions.wait_active("incident").await?;
    f.workloads
        .assert_debugged(WEB, &[&naming::container_name("incident")])
        .await?;

    let stored = f.sessions.get_json("incident").await?;
    let approval = &stored["spec"]["approval"];
    assert_eq!(
        approval["approver"].as_str(),
        Some(lead.username.as_str()),
        "spec.approval.approver: {}",
        pretty(approval)
    );
    assert_eq!(
        approval["decision"],
        "Approved",
        "spec.approval: {}",
        pretty(approval)
    );
    assert_eq!(
        approval["reason"].as_str(),
        Some(reason),
        "spec.approval.reason: {}",
        pretty(approval)
    );
    assert!(
        stored["metadata"]["annotations"][APPROVE_ANNOTATION].is_null(),
        "the approve annotation must be removed once recorded: {}",
        pretty(&stored["metadata"])
    );

    // The ttl counts from the approval.
    let approved: Timestamp = approval["time"]
        .as_str()
        .context("spec.approval has no time")?
        .parse()
        .context("spec.approval.time")?;
    let expires = s
        .status
        .as_ref()
        .and_then(|st| st.expires_at.as_ref())
        .context("an Active session has no expiresAt")?
        .0;
    assert_eq!(
        expires.duration_since(approved),
        SignedDuration::from_mins(30),
        "expiresAt ({expires}) must be the approval time ({approved}) + ttl {TTL}"
    );
    Ok(())
}

/// Deleting the policy that admitted a running session ends it: NetAdmin is allowed only
/// by that policy (never by the built-in default), so the session fails with
/// PolicyRevoked and its debugger is torn down, the template restored exactly.
#[tokio::test]
async fn deleting_the_policy_that_admitted_a_session_ends_it_and_restores_the_template()
-> Result<()> {
    let (f, before) = Fixture::with_deployment("pol-revoke", WEB, 1).await?;
    let policy = f
        .policy("netadmin", json!({"profiles": ["NetAdmin"]}))
        .await?;
    policy.wait_ready("True").await?;
    let manifest = request("capture", Profile::NetAdmin, None)?;
    f.wait_admitted(&manifest).await?;
    f.sessions
        .create_raw(manifest)
        .await
        .context("creating the NetAdmin session under the policy")?;
    let s = f.sessions.wait_active("capture").await?;
    assert_eq!(
        admitted_by(&s),
        Some(policy.name.as_str()),
        "{:#?}",
        s.status
    );
    f.workloads
        .assert_debugged(WEB, &[&naming::container_name("capture")])
        .await?;

    policy.delete().await?;

    // Phase Failed, Ready=False and Stalled=True PolicyRevoked, a Warning Event.
    let failed = f.assert_failed("capture", "PolicyRevoked").await?;
    f.workloads.wait_template(WEB, &before).await?;
    attack::record(
        "keep a NetAdmin session running after the policy that granted it is deleted",
        "session Failed (PolicyRevoked), the template restored",
        format!(
            "phase {:?}: {}",
            failed.status.as_ref().and_then(|s| s.phase),
            failed
                .status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .unwrap_or_default()
        ),
        failed.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed),
    );
    f.workloads.assert_restored(WEB, &before, 1).await?;
    Ok(())
}

/// In a namespace labelled `pod-security.kubernetes.io/enforce: baseline`, the webhook
/// refuses at apply time a General debugger (it adds SYS_PTRACE, which baseline forbids)
/// and admits a Baseline one, under the built-in default.
#[tokio::test]
async fn a_namespace_enforcing_baseline_refuses_general_and_admits_baseline() -> Result<()> {
    let (f, _) = Fixture::with_deployment("pol-pss", WEB, 1).await?;
    f.label_namespace(POD_SECURITY_ENFORCE, "baseline").await?;

    let general = request("general", Profile::General, None)?;
    f.wait_refused_at_admission(&general, &["baseline"]).await?;
    let stderr = assert_apply_refused(
        &f,
        "profile General (SYS_PTRACE) in a namespace enforcing Pod Security baseline",
        &general,
        &["baseline"],
    )
    .await?;
    assert!(
        stderr.contains("General") || stderr.contains("SYS_PTRACE"),
        "the refusal must say what breaks baseline (profile General, or SYS_PTRACE); stderr: {stderr}"
    );

    f.sessions
        .create_raw(request("baseline", Profile::Baseline, None)?)
        .await
        .context("creating a Baseline session in a baseline namespace")?;
    let s = f.sessions.wait_active("baseline").await?;
    assert_eq!(
        admitted_by(&s),
        Some(BUILT_IN_POLICY),
        "no policy selects the namespace: {:#?}",
        s.status
    );
    Ok(())
}

/// `status.exposure` tells what the debugger can read: the target's env var filled from
/// a Secret is listed by name with its Secret, and the Secret's value appears nowhere in
/// the session.
#[tokio::test]
async fn status_lists_the_targets_secret_env_by_name_never_its_value() -> Result<()> {
    let f = Fixture::new("pol-exposure").await?;
    let secret_value = format!("pw-of-{}", f.ns());
    f.create_secret("db-credentials", "password", &secret_value)
        .await?;
    let mut web = nginx_deployment(WEB, 1)?;
    web.spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .context("no pod spec")?
        .containers[0]
        .env = Some(vec![serde_json::from_value(json!({
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
    }))?]);
    f.workloads.create_deployment(&web).await?;

    f.debug_deployment("peek", WEB, TTL).await?;
    let stored = f.sessions.get_json("peek").await?;
    let exposure = &stored["status"]["exposure"];
    let nginx = exposure
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["container"] == NGINX_CONTAINER)
        .with_context(|| {
            format!(
                "status.exposure has no entry for container {NGINX_CONTAINER}: {}",
                pretty(exposure)
            )
        })?;
    let listed = nginx["secretEnv"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["name"] == "DB_PASSWORD" && v["secret"] == "db-credentials");
    assert!(
        listed,
        "status.exposure must list env DB_PASSWORD from Secret db-credentials for {NGINX_CONTAINER}: {}",
        pretty(exposure)
    );
    let whole = serde_json::to_string(&stored)?;
    assert!(
        !whole.contains(&secret_value),
        "the Secret's value appears in the session: {}",
        pretty(&stored)
    );
    Ok(())
}

/// Under `maxSessionsPerNamespace: 1`, a second session is refused at apply time while
/// the first is live, naming the policy; once the first is gone, it is admitted.
#[tokio::test]
async fn a_session_beyond_max_sessions_per_namespace_is_refused_at_apply_time() -> Result<()> {
    let (f, _) = Fixture::with_deployment("pol-max", WEB, 1).await?;
    let policy = f
        .policy("one", json!({"maxSessionsPerNamespace": 1}))
        .await?;
    policy.wait_ready("True").await?;

    let first = request("first", Profile::General, None)?;
    f.wait_admitted(&first).await?;
    f.sessions
        .create_raw(first)
        .await
        .context("creating the first session")?;
    let s = f.sessions.wait_active("first").await?;
    assert_eq!(
        admitted_by(&s),
        Some(policy.name.as_str()),
        "{:#?}",
        s.status
    );

    let second = request("second", Profile::General, None)?;
    let parts = [policy.name.as_str()];
    f.wait_refused_at_admission(&second, &parts).await?;
    assert_apply_refused(
        &f,
        "a session beyond the policy's maxSessionsPerNamespace",
        &second,
        &parts,
    )
    .await?;
    assert_eq!(
        f.sessions.names().await?,
        vec!["first".to_owned()],
        "only the first session may exist"
    );

    // Only live sessions count.
    f.sessions.delete_and_wait_gone("first").await?;
    f.wait_admitted(&second).await?;
    Ok(())
}

/// A policy with a malformed glob is not Ready (with a reason, its message naming the
/// glob) and admits nothing in the namespace it selects, not even what the built-in
/// default would.
#[tokio::test]
async fn a_malformed_policy_is_not_ready_and_admits_nothing_in_its_namespace() -> Result<()> {
    let (f, _) = Fixture::with_deployment("pol-malformed", WEB, 1).await?;
    let bad_glob = "reg/[abc";
    let policy = f.policy("bad-glob", json!({"images": [bad_glob]})).await?;
    let ready = policy.wait_ready("False").await?;
    assert!(
        ready["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "Ready=False must give a reason: {}",
        pretty(&ready)
    );
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains(bad_glob)),
        "the Ready condition's message must name the bad glob {bad_glob:?}: {}",
        pretty(&ready)
    );

    // The default debugger, which the built-in default admits elsewhere.
    let manifest = request("plain", Profile::General, None)?;
    let parts = [policy.name.as_str()];
    f.wait_refused_at_admission(&manifest, &parts).await?;
    assert_apply_refused(
        &f,
        "a session in a namespace whose policy is malformed",
        &manifest,
        &parts,
    )
    .await?;
    assert!(
        f.sessions.names().await?.is_empty(),
        "a malformed policy admitted a session"
    );
    Ok(())
}
