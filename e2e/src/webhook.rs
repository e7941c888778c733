//! Taking one test namespace out of shellcar's admission webhook, as in a cluster where the
//! webhook is absent or bypassed, while every other namespace keeps it.
//!
//! Both webhook configurations get a `namespaceSelector` that skips namespaces labelled
//! [`NO_WEBHOOK_LABEL`]; only the test's namespace carries that label, so tests running
//! meanwhile in other namespaces are unaffected. The selector is removed again when the
//! test ends, even when it fails ([`WebhookBypass`] restores it on drop). The selector is
//! shared: tests of one binary that bypass must take turns, or one's restore ends the
//! other's bypass.

use anyhow::{Context as _, Result, anyhow};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use shellcar::crd::DebugSession;

use crate::identity::requester_of;
use crate::wait::{Polled, poll};
use crate::{Fixture, TIMEOUT};

/// Label of a namespace that shellcar's webhooks skip while a [`WebhookBypass`] is in place.
pub const NO_WEBHOOK_LABEL: &str = "shellcar.dev/e2e-no-webhook";
/// The webhook configurations as `config/default` names them.
pub const MUTATING_WEBHOOK: &str = "shellcar-mutating";
pub const VALIDATING_WEBHOOK: &str = "shellcar-validating";
/// The annotation in which shellcar's mutating webhook stamps what it recorded.
pub const STAMP: &str = "debug.shellcar.dev/admitted";

/// The selector requirement that skips labelled namespaces.
fn exclusion() -> Value {
    json!({"key": NO_WEBHOOK_LABEL, "operator": "DoesNotExist"})
}

/// A strategic merge patch of one webhook's (merge key `name`) selector expressions;
/// `None` removes them.
fn selector_patch(webhook: &str, expressions: Option<&[Value]>) -> Value {
    json!({"webhooks": [{"name": webhook, "namespaceSelector": {"matchExpressions": expressions}}]})
}

/// One webhook whose selector was changed, and its expressions before.
struct Patched {
    resource: ApiResource,
    configuration: String,
    webhook: String,
    original: Vec<Value>,
}

/// While it lives, shellcar's webhooks skip the test's namespace: a DebugSession created
/// there gets no requester, no admission stamp and no admission check (the
/// ValidatingAdmissionPolicy still applies). Dropping it (or [`WebhookBypass::remove`])
/// puts the webhook configurations back as they were.
pub struct WebhookBypass {
    client: Client,
    patched: Vec<Patched>,
}

impl WebhookBypass {
    /// Labels the fixture's namespace [`NO_WEBHOOK_LABEL`]`=true`, adds the exclusion to
    /// the first (only) webhook of [`MUTATING_WEBHOOK`] and [`VALIDATING_WEBHOOK`], and
    /// waits until the API server applies it: a dry-run create in the namespace is
    /// admitted without a requester.
    pub async fn install(f: &Fixture) -> Result<WebhookBypass> {
        let client = &f.cluster.client;
        let ns = f.ns();
        let label = json!({"metadata": {"labels": {NO_WEBHOOK_LABEL: "true"}}});
        Api::<Namespace>::all(client.clone())
            .patch(ns, &PatchParams::default(), &Patch::Merge(&label))
            .await
            .with_context(|| format!("labelling namespace {ns} {NO_WEBHOOK_LABEL}"))?;

        let mut bypass = WebhookBypass {
            client: client.clone(),
            patched: Vec::new(),
        };
        let configurations = [
            (
                ApiResource::erase::<MutatingWebhookConfiguration>(&()),
                MUTATING_WEBHOOK,
            ),
            (
                ApiResource::erase::<ValidatingWebhookConfiguration>(&()),
                VALIDATING_WEBHOOK,
            ),
        ];
        for (resource, configuration) in configurations {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let current = api.get(configuration).await.with_context(|| {
                format!(
                    "reading {} {configuration}: is shellcar deployed?",
                    resource.kind
                )
            })?;
            let webhook = &current.data["webhooks"][0];
            let name = webhook["name"]
                .as_str()
                .with_context(|| format!("{configuration} has no webhook"))?
                .to_owned();
            // A run killed before restoring may have left the exclusion: never keep it.
            let original: Vec<Value> = webhook["namespaceSelector"]["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| **e != exclusion())
                .cloned()
                .collect();
            let mut expressions = original.clone();
            expressions.push(exclusion());
            api.patch(
                configuration,
                &PatchParams::default(),
                &Patch::Strategic(selector_patch(&name, Some(&expressions))),
            )
            .await
            .with_context(|| format!("excluding {ns} from {configuration}"))?;
            bypass.patched.push(Patched {
                resource,
                configuration: configuration.to_owned(),
                webhook: name,
                original,
            });
        }
        wait_bypassed(client, ns).await?;
        Ok(bypass)
    }

    /// Puts the webhook configurations back as they were.
    pub async fn remove(mut self) -> Result<()> {
        let patched = std::mem::take(&mut self.patched);
        restore(&self.client, &patched).await
    }
}

impl Drop for WebhookBypass {
    fn drop(&mut self) {
        if self.patched.is_empty() {
            return;
        }
        // As TestNamespace's drop: a runtime and a client of its own, on another thread.
        let patched = std::mem::take(&mut self.patched);
        let restored = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move { restore(&Client::try_default().await?, &patched).await })
        })
        .join();
        match restored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "could not restore the webhook configurations: {e:#}; remove the \
                 {NO_WEBHOOK_LABEL} selector from {MUTATING_WEBHOOK} and {VALIDATING_WEBHOOK} by hand"
            ),
            Err(_) => eprintln!("could not restore the webhook configurations: thread panicked"),
        }
    }
}

/// Gives every patched webhook its original selector expressions back; tries them all
/// before reporting the first failure.
async fn restore(client: &Client, patched: &[Patched]) -> Result<()> {
    let mut failed = Vec::new();
    for p in patched {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &p.resource);
        let original = (!p.original.is_empty()).then_some(p.original.as_slice());
        let patch = Patch::Strategic(selector_patch(&p.webhook, original));
        if let Err(e) = api
            .patch(&p.configuration, &PatchParams::default(), &patch)
            .await
        {
            failed.push(format!("{}: {e}", p.configuration));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("restoring {failed:?}"))
    }
}

/// Waits until both webhooks skip namespace `ns`: a dry-run create of a session there is
/// admitted (the validating webhook would refuse it: its target does not exist) and comes
/// back without the admission stamp (the mutating webhook would add one). The probe names
/// the admin as its requester, as the ValidatingAdmissionPolicy, which no bypass skips,
/// requires. The API server picks configuration changes up asynchronously.
async fn wait_bypassed(client: &Client, ns: &str) -> Result<()> {
    let resource = ApiResource::erase::<DebugSession>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let probe: DynamicObject = serde_json::from_value(json!({
        "apiVersion": DebugSession::api_version(&()),
        "kind": DebugSession::kind(&()),
        "metadata": {"name": "webhook-bypass-probe"},
        "spec": {
            "target": {"kind": "Deployment", "name": "webhook-bypass-probe"},
            "ttl": "1m",
            "requester": requester_of(client).await?,
        },
    }))?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    poll(
        &format!("shellcar's webhooks to skip namespace {ns}"),
        TIMEOUT,
        || async {
            Ok(match api.create(&dry_run, &probe).await {
                Ok(created) if created.annotations().get(STAMP).is_none() => Polled::Done(()),
                Ok(_) => Polled::NotYet("the mutating webhook still stamps the session".to_owned()),
                Err(kube::Error::Api(e)) => {
                    Polled::NotYet(format!("the dry run is refused: {}", e.message))
                }
                Err(e) => return Err(e).context("dry-run create of a probe session"),
            })
        },
    )
    .await
}
