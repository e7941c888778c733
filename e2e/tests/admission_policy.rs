//! Nothing forged while the webhook is absent. Each test takes its namespace out of
//! shellcar's webhooks ([`WebhookBypass`]), as a missing configuration would, and acts as
//! a real ServiceAccount of the namespace: the ValidatingAdmissionPolicy shipped beside the
//! CRDs (evaluated by the real API server) refuses a forged requester, a hand-written
//! approval and a removed finalizer, and the operator refuses what the policy cannot see,
//! a requester or approval that shellcar's webhook did not stamp.

use anyhow::{Context as _, Result};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use shellcar::crd::{Phase, TargetKind};
use shellcar::naming;
use shellcar_e2e::Fixture;
use shellcar_e2e::attack;
use shellcar_e2e::identity::{User, may_patch, requester_of};
use shellcar_e2e::session::{condition, phase, refusal, session, sidecar};
use shellcar_e2e::webhook::{STAMP, WebhookBypass};
use shellcar_e2e::workload::pretty;
use tokio::sync::Mutex;

/// The Deployment every test debugs.
const WEB: &str = "web";

/// One bypass at a time: the webhooks' namespace selector is shared, and a test that
/// restores it would end another test's bypass.
static BYPASS: Mutex<()> = Mutex::const_new(());

/// A Sidecar session on `web` as JSON, with `requester` written in by its author.
fn claiming(name: &str, requester: Value) -> Result<Value> {
    let mut object = sidecar(name, WEB, "30m")?;
    object["spec"]["requester"] = requester;
    Ok(object)
}

#[tokio::test]
async fn without_the_webhook_nobody_creates_a_session_in_someone_elses_name() -> Result<()> {
    let (f, _) = Fixture::with_deployment("vap-requester", WEB, 1).await?;
    let dev = f.user("dev").await?;
    let before = f.workloads.snapshot().await?;
    let _alone = BYPASS.lock().await;
    let _bypass = WebhookBypass::install(&f).await?;

    let admin = json!({"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]});
    let mut elevated = requester_of(&dev.client).await?;
    elevated["groups"]
        .as_array_mut()
        .context("the user has groups")?
        .push(json!("system:masters"));
    for (what, requester) in [
        ("the cluster admin", admin),
        ("themselves with system:masters", elevated),
        ("nobody", Value::Null),
    ] {
        let mut object = claiming("forged", requester)?;
        if object["spec"]["requester"].is_null()
            && let Some(spec) = object["spec"].as_object_mut()
        {
            spec.remove("requester");
        }
        let refused = refusal(
            &format!("dev creating a session in the name of {what}"),
            dev.sessions.create_raw(object).await,
        )?;
        attack::record(
            &format!("requester forged on create as {what} (webhook configurations absent)"),
            "refused by the ValidatingAdmissionPolicy",
            &refused.message,
            refused
                .message
                .contains("spec.requester must be the user who creates the session"),
        );
        assert!(
            refused
                .message
                .contains("spec.requester must be the user who creates the session"),
            "naming {what}: {}",
            refused.message
        );
    }

    // Created approved, in their own name: refused too.
    let mut approved = claiming("preapproved", requester_of(&dev.client).await?)?;
    approved["spec"]["approval"] = json!({
        "decision": "Approved", "approver": "ops-lead", "time": "2026-12-01T00:00:00Z",
    });
    let refused = refusal(
        "dev creating an approved session",
        dev.sessions.create_raw(approved).await,
    )?;
    attack::record(
        "session created already approved (webhook configurations absent)",
        "refused by the ValidatingAdmissionPolicy",
        &refused.message,
        refused.message.contains("cannot be created approved"),
    );
    assert!(
        refused.message.contains("cannot be created approved"),
        "{}",
        refused.message
    );
    f.assert_nothing_changed(&before).await?;
    Ok(())
}

#[tokio::test]
async fn without_the_webhook_an_honest_requester_is_still_not_admitted() -> Result<()> {
    let (f, _) = Fixture::with_deployment("vap-unstamped", WEB, 1).await?;
    let dev = f.user("dev").await?;
    // dev could even make the change by hand: what is missing is the webhook's record.
    dev.grant("patch-web", vec![may_patch(&[WEB])]).await?;
    let before = f.workloads.snapshot().await?;
    let _alone = BYPASS.lock().await;
    let bypass = WebhookBypass::install(&f).await?;

    dev.sessions
        .create_raw(claiming("unstamped", requester_of(&dev.client).await?)?)
        .await
        .context("the policy admits a session in its creator's own name")?;
    let stored = f.sessions.get_json("unstamped").await?;
    assert!(
        stored["metadata"]["annotations"][STAMP].is_null(),
        "a stamp without the webhook: {}",
        pretty(&stored["metadata"])
    );
    let failed = f.assert_failed("unstamped", "NotAdmitted").await?;
    let seen_phase = phase(&failed);
    let message = failed.status.and_then(|s| s.message).unwrap_or_default();
    let unchanged = f.workloads.snapshot().await? == before;
    attack::record(
        "session in the creator's own name, never seen by the webhook (no stamp)",
        "refused by the operator: NotAdmitted, nothing changed",
        format!("phase {seen_phase:?}: {message}; workloads unchanged: {unchanged}"),
        message.contains("admission webhook") && unchanged,
    );
    assert!(message.contains("admission webhook"), "{message}");
    assert_eq!(
        f.workloads.snapshot().await?,
        before,
        "the operator changed the namespace's workloads for a session it did not stamp"
    );
    bypass.remove().await?;
    Ok(())
}

#[tokio::test]
async fn without_the_webhook_nobody_approves_by_hand() -> Result<()> {
    let (f, _) = Fixture::with_deployment("vap-approval", WEB, 1).await?;
    let dev = f.user("dev").await?;
    dev.grant("patch-web", vec![may_patch(&[WEB])]).await?;
    let lead = f.user("lead").await?;
    // Created through the webhook: stamped, and running.
    dev.sessions
        .create(&session("fix", TargetKind::Deployment, WEB, "30m")?)
        .await?;
    f.sessions.wait_active("fix").await?;
    let _alone = BYPASS.lock().await;
    let bypass = WebhookBypass::install(&f).await?;

    let approval = |approver: &str| {
        json!({"spec": {"approval": {
            "decision": "Approved", "approver": approver, "reason": "by hand",
            "time": "2026-12-01T00:00:00Z",
        }}})
    };
    let merge = |user: &User, patch: Value| {
        let api = user.sessions.api.clone();
        async move {
            api.patch("fix", &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    };
    // The requester approving their own session, or someone naming another approver.
    for (user, approver) in [(&dev, dev.username.as_str()), (&lead, "ops-lead")] {
        let refused = refusal(
            &format!("{} writing an approval by {approver}", user.name),
            merge(user, approval(approver)).await,
        )?;
        attack::record(
            &format!(
                "approval written by hand by {} naming {approver} (webhook configurations absent)",
                user.name
            ),
            "refused by the ValidatingAdmissionPolicy",
            &refused.message,
            refused.message.contains("spec.approval is recorded once"),
        );
        assert!(
            refused.message.contains("spec.approval is recorded once"),
            "{}",
            refused.message
        );
    }
    // In their own name, the policy cannot tell it from the webhook's record; the stamp can.
    merge(&lead, approval(&lead.username))
        .await
        .context("lead writing an approval in their own name")?;
    let failed = f.assert_failed("fix", "NotAdmitted").await?;
    let stalled = condition(&failed, "Stalled").map(|c| c.reason.clone());
    attack::record(
        "approval written by hand in the approver's own name (webhook configurations absent)",
        "admitted by the policy, refused by the operator: NotAdmitted",
        format!(
            "phase {:?}, Stalled {stalled:?}: {}",
            phase(&failed),
            failed
                .status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .unwrap_or_default()
        ),
        phase(&failed) == Some(Phase::Failed) && stalled.as_deref() == Some("NotAdmitted"),
    );
    bypass.remove().await?;
    Ok(())
}

#[tokio::test]
async fn a_namespace_admin_cannot_strand_a_debugger_by_removing_the_finalizer() -> Result<()> {
    let (f, before) = Fixture::with_deployment("vap-finalizer", WEB, 1).await?;
    let owner = f.user("owner").await?;
    owner.bind_cluster_role("admin").await?;
    f.debug_deployment("held", WEB, "30m").await?;

    let api = owner.sessions.api.clone();
    let attempts = [
        Patch::Json::<Value>(serde_json::from_value(json!([
            {"op": "remove", "path": "/metadata/finalizers"}
        ]))?),
        Patch::Merge(json!({"metadata": {"finalizers": []}})),
    ];
    for attempt in attempts {
        let refused = refusal(
            "the namespace admin removing the teardown finalizer",
            api.patch("held", &PatchParams::default(), &attempt).await,
        )?;
        let expected = format!(
            "only shellcar's operator removes the finalizer {}",
            naming::FINALIZER
        );
        attack::record(
            &format!(
                "namespace admin strips the teardown finalizer ({} patch)",
                if matches!(attempt, Patch::Json(_)) {
                    "JSON"
                } else {
                    "merge"
                }
            ),
            "refused by the ValidatingAdmissionPolicy (verb finalize)",
            &refused.message,
            refused.message.contains(&expected),
        );
        assert!(
            refused.message.contains(&format!(
                "only shellcar's operator removes the finalizer {}",
                naming::FINALIZER
            )),
            "{}",
            refused.message
        );
    }
    // Deleting is theirs to do, and the operator tears down before it lets go.
    owner.sessions.delete_and_wait_gone("held").await?;
    assert_eq!(
        f.workloads.template(WEB).await?,
        before,
        "the template was not restored"
    );
    Ok(())
}

#[tokio::test]
async fn only_the_requester_or_a_manager_ends_or_extends_a_session() -> Result<()> {
    let (f, before) = Fixture::with_deployment("vap-manage", WEB, 1).await?;
    let dev = f.user("dev").await?;
    dev.grant("patch-web", vec![may_patch(&[WEB])]).await?;
    let peer = f.user("peer").await?;
    let owner = f.user("owner").await?;
    owner.bind_cluster_role("admin").await?;
    dev.sessions
        .create(&session("mine", TargetKind::Deployment, WEB, "30m")?)
        .await?;
    f.sessions.wait_active("mine").await?;

    // Another user who may delete and update DebugSessions, but not manage them.
    let longer = Patch::Merge(json!({"spec": {"ttl": "45m"}}));
    let refused = refusal(
        "peer extending dev's session",
        peer.sessions
            .api
            .patch("mine", &PatchParams::default(), &longer)
            .await,
    )?;
    let expected = format!(
        "{} may not change the ttl of a session requested by {}",
        peer.username, dev.username
    );
    attack::record(
        "another user extends someone else's session",
        "refused by the ValidatingAdmissionPolicy (verb manage)",
        &refused.message,
        refused.message.contains(&expected),
    );
    assert!(refused.message.contains(&expected), "{}", refused.message);
    let refused = refusal(
        "peer deleting dev's session",
        peer.sessions.api.delete("mine", &Default::default()).await,
    )?;
    let expected = format!(
        "{} may not delete a session requested by {}",
        peer.username, dev.username
    );
    attack::record(
        "another user deletes someone else's session",
        "refused by the ValidatingAdmissionPolicy (verb manage)",
        &refused.message,
        refused.message.contains(&expected),
    );
    assert!(refused.message.contains(&expected), "{}", refused.message);

    // The requester extends their own; the namespace admin (shellcar-manager is aggregated
    // into admin) ends it.
    dev.sessions
        .api
        .patch("mine", &PatchParams::default(), &longer)
        .await
        .context("dev extending their own session")?;
    owner.sessions.delete_and_wait_gone("mine").await?;
    assert_eq!(f.workloads.template(WEB).await?, before);
    Ok(())
}
