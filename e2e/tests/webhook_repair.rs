//! The webhook configurations heal themselves, and teardown never waits for the webhook.
//!
//! Both tests change what every namespace goes through (the cluster's webhook
//! configurations, the webhook's Service), so they live in a test binary of their own, which
//! cargo runs alone, and take turns ([`ALONE`]).
//!
//! - A configuration re-created from the rendered manifests (as a restore or an admin
//!   would), or stripped of its caBundle (as `kubectl apply`'s three-way merge does), is put
//!   right by the operator: creates work again within 10 s.
//! - With the webhook unreachable, deleting a session still completes: the operator's own
//!   requests (removing its finalizer) are left out of its webhooks by a match condition.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::serde::Deserialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};
use shellcar::crd::TargetKind;
use shellcar_e2e::attack;
use shellcar_e2e::session::session;
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::webhook::{MUTATING_WEBHOOK, VALIDATING_WEBHOOK};
use shellcar_e2e::{Fixture, kubectl};
use tokio::sync::Mutex;

/// One test at a time: each breaks the webhook for every namespace for a while.
static ALONE: Mutex<()> = Mutex::const_new(());

/// The Deployment both tests debug.
const WEB: &str = "web";

/// The bound on healing: creates work again within this long.
const HEALED_WITHIN: Duration = Duration::from_secs(10);

/// The operator's namespace and its webhook's Service, as `config/default` names them.
const OPERATOR_NAMESPACE: &str = "shellcar-system";
const WEBHOOK_SERVICE: &str = "shellcar-webhook";

/// `config/default` rendered as `kubectl apply -k` would send it.
async fn rendered() -> Result<Vec<Value>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/default");
    let dir = dir.to_string_lossy().into_owned();
    let out = kubectl::kubectl(None, &["kustomize", &dir], None).await?;
    if !out.status.success() {
        bail!("`{}` failed: {}", out.command, out.stderr);
    }
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&out.stdout) {
        docs.push(serde_yaml::from_value::<Value>(
            serde_yaml::Value::deserialize(doc)?,
        )?);
    }
    Ok(docs)
}

/// The rendered object of kind `K`, typed.
fn rendered_one<K: Resource<DynamicType = ()> + DeserializeOwned>(docs: &[Value]) -> Result<K> {
    let kind = K::kind(&());
    let doc = docs
        .iter()
        .find(|d| d["kind"] == *kind)
        .with_context(|| format!("config/default renders no {kind}"))?;
    Ok(serde_json::from_value(doc.clone())?)
}

/// A dry-run create of a valid session in the fixture's namespace, which goes through both
/// webhooks: Ok once they answer and admit it, else what the API server said.
async fn dry_run_create(f: &Fixture) -> Result<Result<(), String>> {
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe = session("probe", TargetKind::Deployment, WEB, "5m")?;
    Ok(match f.sessions.api.create(&params, &probe).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.message),
        Err(e) => return Err(e).context("dry-run create"),
    })
}

/// Waits at most `within` until a create works again, after `what`.
async fn creates_work_within(f: &Fixture, what: &str, within: Duration) -> Result<()> {
    poll(
        &format!("a create to work again after {what}"),
        within,
        || async {
            Ok(match dry_run_create(f).await? {
                Ok(()) => Polled::Done(()),
                Err(message) => Polled::NotYet(message),
            })
        },
    )
    .await
}

/// Asserts that every webhook of both configurations carries a caBundle and the exemption.
async fn assert_healed(client: &Client) -> Result<()> {
    let v = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(VALIDATING_WEBHOOK)
        .await?;
    let m = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(MUTATING_WEBHOOK)
        .await?;
    let webhooks = v
        .webhooks
        .iter()
        .flatten()
        .map(|w| (&w.client_config, &w.match_conditions))
        .chain(
            m.webhooks
                .iter()
                .flatten()
                .map(|w| (&w.client_config, &w.match_conditions)),
        );
    for (client_config, conditions) in webhooks {
        assert!(client_config.ca_bundle.is_some(), "no caBundle");
        assert!(
            conditions
                .iter()
                .flatten()
                .any(|c| c.name == "not-the-operator"),
            "no exemption: {conditions:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn webhook_configurations_re_created_or_stripped_heal_within_seconds() -> Result<()> {
    let _alone = ALONE.lock().await;
    let (f, _) = Fixture::with_deployment("heal", WEB, 1).await?;
    let client = f.cluster.client.clone();
    let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone());
    creates_work_within(&f, "setting up", HEALED_WITHIN).await?;

    // A `kubectl apply` whose three-way merge drops the caBundle the manifests never held.
    let strip = |n: usize| -> Result<Patch<Value>> {
        let ops: Vec<Value> = (0..n)
            .map(
                |i| json!({"op": "remove", "path": format!("/webhooks/{i}/clientConfig/caBundle")}),
            )
            .collect();
        Ok(Patch::Json(serde_json::from_value(Value::Array(ops))?))
    };
    let v_count = validating
        .get(VALIDATING_WEBHOOK)
        .await?
        .webhooks
        .map_or(0, |w| w.len());
    let m_count = mutating
        .get(MUTATING_WEBHOOK)
        .await?
        .webhooks
        .map_or(0, |w| w.len());
    validating
        .patch(
            VALIDATING_WEBHOOK,
            &PatchParams::default(),
            &strip(v_count)?,
        )
        .await
        .context("stripping the validating caBundle")?;
    let stripped = Instant::now();
    mutating
        .patch(MUTATING_WEBHOOK, &PatchParams::default(), &strip(m_count)?)
        .await
        .context("stripping the mutating caBundle")?;
    creates_work_within(&f, "the caBundles were stripped", HEALED_WITHIN).await?;
    let took = stripped.elapsed();
    assert_healed(&client).await?;
    attack::record(
        "webhook configurations stripped of their caBundle (kubectl apply's merge)",
        &format!("healed: creates work again within {HEALED_WITHIN:?}"),
        format!("creates worked again after {took:.1?}; caBundle and not-the-operator back"),
        took <= HEALED_WITHIN,
    );

    // Deleted and created again from the manifests, as a restore would.
    let docs = rendered().await?;
    let v_manifest: ValidatingWebhookConfiguration = rendered_one(&docs)?;
    let m_manifest: MutatingWebhookConfiguration = rendered_one(&docs)?;
    assert!(
        v_manifest
            .webhooks
            .iter()
            .flatten()
            .all(|w| w.client_config.ca_bundle.is_none()),
        "the manifests hold no caBundle"
    );
    validating
        .delete(VALIDATING_WEBHOOK, &DeleteParams::default())
        .await?;
    mutating
        .delete(MUTATING_WEBHOOK, &DeleteParams::default())
        .await?;
    validating
        .create(&PostParams::default(), &v_manifest)
        .await
        .context("re-creating the ValidatingWebhookConfiguration")?;
    mutating
        .create(&PostParams::default(), &m_manifest)
        .await
        .context("re-creating the MutatingWebhookConfiguration")?;
    let recreated = Instant::now();
    creates_work_within(&f, "the configurations were re-created", HEALED_WITHIN).await?;
    let took = recreated.elapsed();
    assert_healed(&client).await?;

    // And what works is the webhook, not its absence: a create now carries the stamp.
    let created = f
        .sessions
        .create(&session("after", TargetKind::Deployment, WEB, "5m")?)
        .await?;
    let stamped = created
        .metadata
        .annotations
        .iter()
        .flatten()
        .any(|(k, _)| k == "debug.shellcar.dev/admitted");
    attack::record(
        "webhook configurations deleted and re-created without caBundle (a restore)",
        &format!("healed within {HEALED_WITHIN:?}: sessions stamped by the webhook again"),
        format!("creates worked again after {took:.1?}; the next session stamped: {stamped}"),
        took <= HEALED_WITHIN && stamped,
    );
    assert!(
        created
            .metadata
            .annotations
            .iter()
            .flatten()
            .any(|(k, _)| k == "debug.shellcar.dev/admitted"),
        "the mutating webhook did not stamp the session: {:?}",
        created.metadata
    );
    Ok(())
}

/// Points the webhook's Service at no pod, and back.
async fn set_webhook_selector(client: &Client, selector: Value) -> Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let patch: Patch<Value> = Patch::Json(serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/selector", "value": selector}
    ]))?);
    services
        .patch(WEBHOOK_SERVICE, &PatchParams::default(), &patch)
        .await
        .with_context(|| format!("setting the selector of Service {WEBHOOK_SERVICE}"))?;
    Ok(())
}

#[tokio::test]
async fn with_the_webhook_unreachable_a_session_is_still_deleted() -> Result<()> {
    let _alone = ALONE.lock().await;
    let (f, before) = Fixture::with_deployment("unreachable", WEB, 1).await?;
    let client = f.cluster.client.clone();
    f.debug_deployment("held", WEB, "30m").await?;

    let services: Api<Service> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let original = services
        .get(WEBHOOK_SERVICE)
        .await?
        .spec
        .and_then(|s| s.selector)
        .context("the webhook's Service has no selector")?;
    set_webhook_selector(&client, json!({"shellcar.dev/e2e": "nobody"})).await?;
    let outcome = async {
        poll(
            "the webhook to be unreachable",
            shellcar_e2e::TIMEOUT,
            || async {
                Ok(match dry_run_create(&f).await? {
                    Err(message) if message.contains("failed calling webhook") => Polled::Done(()),
                    Err(message) => Polled::NotYet(message),
                    Ok(()) => Polled::NotYet("the webhook still answers".to_owned()),
                })
            },
        )
        .await?;
        f.sessions.delete_and_wait_gone("held").await?;
        assert_eq!(
            f.workloads.template(WEB).await?,
            before,
            "the template was not restored"
        );
        // Creates still need the webhook: it fails closed.
        let create = dry_run_create(&f).await?;
        attack::record(
            "a session created while the webhook is unreachable",
            "refused: the webhooks fail closed (failurePolicy Fail)",
            match &create {
                Ok(()) => "admitted",
                Err(message) => message.as_str(),
            },
            matches!(&create, Err(message) if message.contains("failed calling webhook")),
        );
        match create {
            Err(message) if message.contains("failed calling webhook") => Ok(()),
            other => bail!("a create got past the unreachable webhook: {other:?}"),
        }
    }
    .await;
    set_webhook_selector(&client, serde_json::to_value(original)?).await?;
    creates_work_within(&f, "the Service was restored", shellcar_e2e::TIMEOUT).await?;
    outcome
}
