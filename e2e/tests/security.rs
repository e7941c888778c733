//! Nobody gets through shellcar what RBAC denies them. Each test acts as a real
//! ServiceAccount of its namespace that holds only the Roles the test binds to it, and
//! checks what the admission webhook and the operator let that user do: refused at apply
//! time with the missing permission named, the requester recorded and named, the spec
//! immutable but for its ttl, a revoked permission ending the session, the API server's
//! own refusals and exposure warnings at apply time. Sessions written while the webhook is
//! absent are in `admission_policy.rs`.

use std::time::Duration;

use anyhow::{Context as _, Result};
use kube::ResourceExt as _;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use shellcar::crd::{DebugSession, Phase, TargetKind};
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::attack;
use shellcar_e2e::identity::{User, may_patch};
use shellcar_e2e::kubectl;
use shellcar_e2e::session::{condition, phase, refusal, session, sidecar};
use shellcar_e2e::workload::{nginx_deployment, pod_containers, pretty};

/// The Deployment every test debugs.
const WEB: &str = "web";

/// Bound on noticing a revoked permission: the operator re-checks authorization
/// periodically (about every minute) and caches answers briefly. Not a timing assertion.
const REVOCATION_BOUND: Duration = Duration::from_secs(180);

/// A namespace with Deployment `web` (rolled out; returned with its template before any
/// session) and user `dev`, who may use DebugSessions and nothing else.
async fn setup(topic: &str) -> Result<(Fixture, Value, User)> {
    let (f, before) = Fixture::with_deployment(topic, WEB, 1).await?;
    let dev = f.user("dev").await?;
    Ok((f, before, dev))
}

/// The denial a Sidecar session on `deployment` gets for `user`, word for word.
fn sidecar_denial(user: &User, deployment: &str) -> String {
    format!(
        "{} (needed by mode Sidecar)",
        user.denial("patch", &format!(r#"deployments.apps "{deployment}""#))
    )
}

#[tokio::test]
async fn a_user_who_may_not_patch_the_deployment_is_refused_and_nothing_changes() -> Result<()> {
    let (f, _, dev) = setup("sec-refused").await?;
    assert!(
        !dev.can("patch", "apps", "deployments", Some(WEB)).await?,
        "{} must not be allowed to patch Deployment {WEB} for this test",
        dev.username
    );
    let before = f.workloads.snapshot().await?;
    let expected = sidecar_denial(&dev, WEB);

    // Through the API, as a client library would.
    let refused = refusal(
        "dev creating a Sidecar session on web",
        dev.sessions
            .create_raw(sidecar("sneaky", WEB, "30m")?)
            .await,
    )?;
    attack::record(
        "Sidecar session on a Deployment the requester may not patch (Direct)",
        "refused at apply time, naming the missing patch",
        &refused.message,
        refused.message.contains(&expected),
    );
    assert!(
        refused.message.contains(&expected),
        "the refusal must name the missing permission:\n  expected: {expected}\n  got: {}",
        refused.message
    );
    f.assert_nothing_changed(&before).await?;

    // Through `kubectl apply`, as the user would.
    let out = kubectl::apply(
        Some(dev.kubeconfig()),
        f.ns(),
        &sidecar("sneaky", WEB, "30m")?,
    )
    .await?;
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

#[tokio::test]
async fn a_user_who_may_patch_the_deployment_is_named_by_session_events_and_pods() -> Result<()> {
    let (f, before, dev) = setup("sec-allowed").await?;
    dev.grant("dev-patch-web", vec![may_patch(&[WEB])]).await?;

    // The author claims to be someone mightier: the webhook replaces that.
    let mut request = sidecar("mine", WEB, "30m")?;
    request["spec"]["requester"] =
        json!({"username": "system:admin", "groups": ["system:masters"]});
    dev.sessions
        .create_raw(request)
        .await
        .context("dev creating session mine")?;
    let s = f.sessions.wait_active("mine").await?;

    // The requester is who created the session, as the API server authenticated them.
    let stored = f.sessions.get_json("mine").await?;
    let requester = &stored["spec"]["requester"];
    attack::record(
        "spec.requester forged as system:admin in system:masters on create",
        "the webhook stamps the real caller",
        format!("stored requester: {requester}"),
        requester["username"].as_str() == Some(dev.username.as_str())
            && requester["uid"].as_str() == Some(dev.uid.as_str())
            && !requester["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|g| g == "system:masters"),
    );
    assert_eq!(
        requester["username"].as_str(),
        Some(dev.username.as_str()),
        "spec.requester: {}",
        pretty(requester)
    );
    assert_eq!(
        requester["uid"].as_str(),
        Some(dev.uid.as_str()),
        "spec.requester.uid must be the ServiceAccount's UID: {}",
        pretty(requester)
    );
    let groups: Vec<&str> = requester["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let own_group = format!("system:serviceaccounts:{}", f.ns());
    assert!(
        groups.contains(&own_group.as_str()) && !groups.contains(&"system:masters"),
        "spec.requester.groups must be the user's real groups: {groups:?}"
    );

    // Status and Events name the requester.
    let message = s
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    let requested_by = format!("requested by {}", dev.username);
    assert!(
        message.contains(&requested_by),
        "status.message must say {requested_by:?}: {message:?}"
    );
    f.events
        .wait_mentioning("DebugSession", "mine", &dev.username)
        .await?;

    // Every debugged pod names the requester.
    let container = naming::container_name("mine");
    let annotation = naming::requester_annotation(&container);
    let pods = f
        .workloads
        .wait_pods(&format!("app={WEB}"), 1, "carrying the debugger", |p| {
            pod_containers(p).contains(&container)
        })
        .await?;
    for pod in &pods {
        assert_eq!(
            pod.annotations().get(&annotation),
            Some(&dev.username),
            "pod {} must carry annotation {annotation}: {:?}",
            pod.name_any(),
            pod.annotations()
        );
    }

    // The user ends the session; the Deployment is as before.
    dev.sessions.delete_and_wait_gone("mine").await?;
    f.workloads.assert_restored(WEB, &before, 1).await?;
    Ok(())
}

#[tokio::test]
async fn env_from_a_secret_the_user_may_not_read_is_refused() -> Result<()> {
    let (f, _, dev) = setup("sec-secret").await?;
    dev.grant("dev-patch-web", vec![may_patch(&[WEB])]).await?;
    f.create_secret("db", "pw", "hunter2").await?;
    assert!(
        !dev.can("get", "", "secrets", Some("db")).await?,
        "{} must not be allowed to read Secret db for this test",
        dev.username
    );
    let before = f.workloads.snapshot().await?;

    let mut request = sidecar("pw", WEB, "30m")?;
    request["spec"]["debugger"]["env"] =
        json!([{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]);
    let refused = refusal(
        "dev creating a session with env from Secret db",
        dev.sessions.create_raw(request).await,
    )?;
    let expected = format!(r#"user "{}" may not get secrets "db""#, dev.username);
    attack::record(
        "debugger env from a Secret the requester may not read",
        "refused at apply time, naming the Secret",
        &refused.message,
        refused.message.contains(&expected),
    );
    assert!(
        refused.message.contains(&expected),
        "the refusal must name the Secret:\n  expected: {expected}\n  got: {}",
        refused.message
    );
    f.assert_nothing_changed(&before).await?;
    Ok(())
}

#[tokio::test]
async fn only_the_ttl_of_a_session_may_change() -> Result<()> {
    let (f, _, dev) = setup("sec-immutable").await?;
    f.workloads
        .create_deployment(&nginx_deployment("other", 1)?)
        .await?;
    let other_before = f.workloads.template("other").await?;
    // dev may patch both, so that only immutability can stop the move.
    dev.grant("dev-patch-deployments", vec![may_patch(&[WEB, "other"])])
        .await?;
    dev.sessions
        .create_raw(sidecar("fixed", WEB, "30m")?)
        .await
        .context("dev creating session fixed")?;
    let s = f.sessions.wait_active("fixed").await?;
    let created = s
        .metadata
        .creation_timestamp
        .as_ref()
        .context("no creationTimestamp")?
        .0;
    let expires = expires_at(&s).context("an Active session has no expiresAt")?;

    // Pointing the session at another Deployment is refused.
    let retarget = json!({"spec": {"target": {"name": "other"}}});
    let refused = refusal(
        "dev patching spec.target.name",
        dev.sessions
            .api
            .patch("fixed", &PatchParams::default(), &Patch::Merge(&retarget))
            .await,
    )?;
    attack::record(
        "running session re-targeted at another Deployment",
        "refused: only spec.ttl may change",
        &refused.message,
        refused.message.contains("only spec.ttl may change"),
    );
    assert!(
        refused.message.contains("only spec.ttl may change"),
        "the refusal must say what may change: {}",
        refused.message
    );
    let kept = f.sessions.api.get("fixed").await?;
    assert_eq!(kept.spec.target.name, WEB);
    assert_eq!(f.workloads.template("other").await?, other_before);

    // Raising the ttl is accepted, and moves the expiry.
    let extend = json!({"spec": {"ttl": "45m"}});
    dev.sessions
        .api
        .patch("fixed", &PatchParams::default(), &Patch::Merge(&extend))
        .await
        .context("dev raising the ttl from 30m to 45m")?;
    let s = f
        .sessions
        .wait("fixed", &format!("expiresAt later than {expires}"), |s| {
            expires_at(s).is_some_and(|t| t > expires)
        })
        .await?;
    let extended = expires_at(&s).context("no expiresAt")?;
    assert_eq!(
        extended.duration_since(created),
        jiff::SignedDuration::from_mins(45),
        "expiresAt must be creation + the new ttl"
    );
    assert_eq!(phase(&s), Some(Phase::Active));

    // A re-sync that omits the requester (as GitOps tools write what is in git) changes
    // nothing: the stored requester stays.
    let resync = json!({"spec": {"requester": null}});
    dev.sessions
        .api
        .patch("fixed", &PatchParams::default(), &Patch::Merge(&resync))
        .await
        .context("dev updating the session without spec.requester")?;
    let stored = f.sessions.get_json("fixed").await?;
    attack::record(
        "spec.requester erased by an update (a re-sync that omits it)",
        "the webhook restores the stored requester",
        format!("stored requester: {}", stored["spec"]["requester"]),
        stored["spec"]["requester"]["username"].as_str() == Some(dev.username.as_str()),
    );
    assert_eq!(
        stored["spec"]["requester"]["username"].as_str(),
        Some(dev.username.as_str()),
        "the requester must survive updates: {}",
        pretty(&stored["spec"])
    );
    Ok(())
}

fn expires_at(s: &DebugSession) -> Option<jiff::Timestamp> {
    s.status.as_ref()?.expires_at.as_ref().map(|t| t.0)
}

#[tokio::test]
async fn revoking_the_users_rolebinding_ends_the_session_and_restores_the_template() -> Result<()> {
    let (f, before, dev) = setup("sec-revoke").await?;
    dev.grant("dev-patch-web", vec![may_patch(&[WEB])]).await?;
    dev.sessions
        .create_raw(sidecar("revoked", WEB, "30m")?)
        .await
        .context("dev creating session revoked")?;
    f.sessions.wait_active("revoked").await?;
    let container = naming::container_name("revoked");
    f.workloads.assert_debugged(WEB, &[&container]).await?;

    dev.revoke("dev-patch-web").await?;

    let s = f
        .sessions
        .wait_within(
            "revoked",
            "phase Failed with Ready=False reason Forbidden, after the RoleBinding was deleted",
            REVOCATION_BOUND,
            |s| {
                phase(s) == Some(Phase::Failed)
                    && condition(s, "Ready")
                        .is_some_and(|c| c.status == "False" && c.reason == "Forbidden")
            },
        )
        .await?;
    let ready = condition(&s, "Ready").context("no Ready condition")?;
    let missing = format!(r#"may not patch deployments.apps "{WEB}""#);
    attack::record(
        "keep debugging after the requester's RoleBinding is revoked",
        "session Failed (Forbidden) and the template restored",
        format!("phase {:?}, Ready: {}", phase(&s), ready.message),
        ready.message.contains(&missing),
    );
    assert!(
        ready.message.contains(&missing),
        "the condition must say which permission is gone ({missing}): {}",
        ready.message
    );
    // Stalled=True Forbidden and a Warning Event, as for every refusal.
    f.assert_failed("revoked", "Forbidden").await?;

    f.workloads.wait_template(WEB, &before).await?;
    f.workloads.assert_restored(WEB, &before, 1).await?;
    Ok(())
}

#[tokio::test]
async fn a_bad_env_name_and_a_bad_quantity_are_refused_at_apply_time() -> Result<()> {
    let (f, _) = Fixture::with_deployment("sec-dryrun", WEB, 1).await?;
    let before = f.workloads.snapshot().await?;
    // As JSON, so that no client-side type refuses them first.
    let cases = [
        (
            "bad-env",
            "env",
            // `=` is the one character that 1.34's relaxed env var names still refuse.
            json!([{"name": "BAD=NAME", "value": "x"}]),
            "BAD=NAME",
        ),
        (
            "bad-quantity",
            "resources",
            json!({"limits": {"memory": "lots"}}),
            "lots",
        ),
    ];
    for (name, field, value, bad) in cases {
        let mut request = serde_json::to_value(session(name, TargetKind::Deployment, WEB, "30m")?)?;
        request["spec"]["debugger"][field] = value;
        let refused = refusal(
            &format!("creating session {name} with debugger.{field} {bad:?}"),
            f.sessions.create_raw(request).await,
        )?;
        assert!(
            refused.message.contains(bad),
            "the refusal of debugger.{field} must name {bad:?}: {}",
            refused.message
        );
    }
    f.assert_nothing_changed(&before).await?;
    Ok(())
}

#[tokio::test]
async fn applying_a_session_warns_of_the_secrets_the_debugger_can_read() -> Result<()> {
    let f = Fixture::new("sec-warn").await?;
    let secret_value = format!("pw-of-{}", f.ns());
    f.create_secret("db-credentials", "password", &secret_value)
        .await?;
    let mut web = nginx_deployment(WEB, 1)?;
    let pod = web
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .context("no pod spec")?;
    pod.containers[0].env = Some(vec![serde_json::from_value(json!({
        "name": "DB_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
    }))?]);
    f.workloads.create_deployment(&web).await?;

    let mut manifest = serde_json::to_value(session("peek", TargetKind::Deployment, WEB, "30m")?)?;
    manifest["metadata"]["namespace"] = json!(f.ns());
    let out = kubectl::apply(None, f.ns(), &manifest).await?;
    assert!(out.status.success(), "`{}` failed: {out:#?}", out.command);
    let warnings = out.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("DB_PASSWORD") && w.contains("db-credentials")),
        "kubectl must warn that the debugger can read env DB_PASSWORD from Secret \
         db-credentials; warnings: {warnings:#?}\nstderr: {}",
        out.stderr
    );
    assert!(
        !out.stdout.contains(&secret_value) && !out.stderr.contains(&secret_value),
        "the Secret's value was printed: {out:#?}"
    );
    Ok(())
}
