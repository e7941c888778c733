//! Bad input is refused by the schema, or gets a condition and a Warning
//! Event; either way nothing in the namespace changes.

use anyhow::{Result, bail};
use kube::Resource;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use shellcar::crd::{DebugSession, Phase, TargetKind};
use shellcar_e2e::Fixture;
use shellcar_e2e::session::session;
use shellcar_e2e::workload::Snapshot;

/// A namespace with the Deployment `web`, and its snapshot.
async fn setup(topic: &str) -> Result<(Fixture, Snapshot)> {
    let (f, _) = Fixture::with_deployment(topic, "web", 1).await?;
    let snapshot = f.workloads.snapshot().await?;
    Ok((f, snapshot))
}

fn raw_session(name: &str, target: Value, ttl: &str) -> Value {
    json!({
        "apiVersion": DebugSession::api_version(&()),
        "kind": DebugSession::kind(&()),
        "metadata": {"name": name},
        "spec": {"target": target, "ttl": ttl},
    })
}

/// Creates `object` and checks that the API server refuses it as invalid (422), with a
/// message naming `field`, and that no session exists afterwards.
async fn assert_schema_refuses(f: &Fixture, object: Value, field: &str) -> Result<()> {
    match f.sessions.create_raw(object.clone()).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "expected Invalid for {object}, got {e:?}");
            assert!(
                e.message.contains(field),
                "the refusal of {object} does not name {field}: {}",
                e.message
            );
        }
        Err(e) => bail!("creating {object}: unexpected error {e}"),
        Ok(_) => bail!("the API server accepted {object}"),
    }
    let sessions = f.sessions.api.list(&ListParams::default()).await?;
    assert!(
        sessions.items.is_empty(),
        "a session exists after a refusal"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_kind_is_refused_by_the_schema() -> Result<()> {
    let (f, before) = setup("badkind").await?;
    let target = json!({"kind": "CronJob", "name": "web"});
    assert_schema_refuses(&f, raw_session("cron", target, "30m"), "spec.target.kind").await?;
    assert_eq!(f.workloads.snapshot().await?, before);
    Ok(())
}

#[tokio::test]
async fn malformed_ttl_and_missing_name_are_refused_by_the_schema() -> Result<()> {
    let (f, before) = setup("badttl").await?;
    let target = json!({"kind": "Deployment", "name": "web"});
    for ttl in ["20 minutes", "1d", "5", "-5m"] {
        assert_schema_refuses(&f, raw_session("bad-ttl", target.clone(), ttl), "spec.ttl").await?;
    }
    let nameless = json!({"kind": "Deployment"});
    assert_schema_refuses(
        &f,
        raw_session("nameless", nameless, "30m"),
        "spec.target.name",
    )
    .await?;
    assert_eq!(f.workloads.snapshot().await?, before);
    Ok(())
}

#[tokio::test]
async fn missing_target_is_pending_with_a_warning() -> Result<()> {
    let (f, before) = setup("notarget").await?;
    f.sessions
        .create(&session("lost", TargetKind::Deployment, "absent", "30m")?)
        .await?;
    let s = f
        .sessions
        .wait_refused("lost", Phase::Pending, "TargetNotFound")
        .await?;
    let message = s
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("absent"),
        "the message does not name the target: {message}"
    );
    f.events
        .wait_for("DebugSession", "lost", "Warning", "TargetNotFound")
        .await?;
    assert_eq!(f.workloads.snapshot().await?, before);
    Ok(())
}

/// A ttl over the operator's maximum is refused at apply time by the admission webhook;
/// raised over it later (only ttl may change), the operator ends the session with a
/// warning and restores the template.
#[tokio::test]
async fn too_long_ttl_is_refused_at_apply_and_fails_when_raised() -> Result<()> {
    let (f, before) = setup("longttl").await?;
    let forever = session("forever", TargetKind::Deployment, "web", "48h")?;
    match f.sessions.api.create(&Default::default(), &forever).await {
        Err(kube::Error::Api(e)) => assert!(
            e.code == 400 && e.message.contains("ttl \"48h\" is longer than the maximum"),
            "the refusal must name the ttl: {e:?}"
        ),
        other => bail!("a 48h session was not refused at apply time: {other:?}"),
    }
    assert!(
        f.sessions
            .api
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );
    assert_eq!(f.workloads.snapshot().await?, before);

    let template = f.workloads.template("web").await?;
    f.sessions
        .create(&session("raised", TargetKind::Deployment, "web", "30m")?)
        .await?;
    f.sessions.wait_active("raised").await?;
    let raise = serde_json::json!({"spec": {"ttl": "48h"}});
    f.sessions
        .api
        .patch("raised", &PatchParams::default(), &Patch::Merge(&raise))
        .await?;
    f.assert_failed("raised", "TTLTooLong").await?;
    f.workloads.wait_template("web", &template).await?;
    Ok(())
}

#[tokio::test]
async fn unknown_container_fails_with_a_warning() -> Result<()> {
    let (f, before) = setup("nocontainer").await?;
    let mut request = session("php", TargetKind::Deployment, "web", "30m")?;
    request.spec.target.container = Some("php".to_owned());
    f.sessions.create(&request).await?;
    f.assert_failed("php", "ContainerNotFound").await?;
    assert_eq!(f.workloads.snapshot().await?, before);
    Ok(())
}
