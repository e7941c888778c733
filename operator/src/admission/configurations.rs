//! The two webhook configurations, kept right by every replica: each webhook carries the
//! CA of the serving certificate as its `caBundle`, and a match condition that leaves the
//! operator's own requests out.
//!
//! Both can go missing without the operator noticing at start: a configuration re-created
//! from a backup or by an admin, or a `kubectl apply` whose three-way merge removes a
//! caBundle the manifests never held. Without the caBundle every create fails on an unknown
//! certificate authority, and the operator, whose own finalizer removal is an UPDATE, could
//! no longer let sessions go. So the configurations are watched and put right within
//! seconds, as cert-manager's CA injector does, and the operator's own requests never
//! depend on its webhook being reachable.
//!
//! What to change is decided by the pure [`repair`]; [`keep`] watches and patches.

use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::runtime::error_chain;

/// Name of the match condition that leaves the operator's requests out of its webhooks.
pub const EXEMPTION: &str = "not-the-operator";

/// How often the configurations are checked even when no watch event came.
const RECHECK: Duration = Duration::from_secs(60);

/// Why a configuration could not be read or put right.
#[derive(Debug, thiserror::Error)]
#[error("keeping {kind} {name}")]
pub struct Error {
    kind: &'static str,
    name: String,
    #[source]
    source: kube::Error,
}

/// What every webhook of both configurations must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The CA of the serving certificate; none while the certificate is someone else's
    /// (cert-manager injects it then).
    pub ca_bundle: Option<String>,
    /// The operator's own user name, left out by [`EXEMPTION`]; none when the operator is
    /// no ServiceAccount (run from a workstation, say), whose requests must then go through.
    pub exempt: Option<String>,
}

/// One webhook of a configuration, as far as [`repair`] looks at it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub name: String,
    pub ca_bundle: Option<Vec<u8>>,
    pub match_conditions: Vec<MatchCondition>,
}

/// The CEL expression of the exemption for `username`.
pub fn exemption(username: &str) -> String {
    // A ServiceAccount's user name holds no quote: system:serviceaccount:<ns>:<name>.
    format!("request.userInfo.username != '{username}'")
}

/// The strategic merge patch (webhooks and match conditions merge by name) that gives each
/// of `webhooks` what `wanted` asks and it lacks; none when nothing is missing.
pub fn repair(webhooks: &[Seen], wanted: &Wanted) -> Option<Value> {
    let fixes: Vec<Value> = webhooks
        .iter()
        .filter_map(|webhook| {
            let mut fix = json!({"name": webhook.name});
            if let Some(ca) = &wanted.ca_bundle
                && webhook.ca_bundle.as_deref() != Some(ca.as_bytes())
            {
                fix["clientConfig"] = json!({"caBundle": ByteString(ca.as_bytes().to_vec())});
            }
            if let Some(username) = &wanted.exempt {
                let expression = exemption(username);
                let present = webhook
                    .match_conditions
                    .iter()
                    .any(|c| c.name == EXEMPTION && c.expression == expression);
                if !present {
                    fix["matchConditions"] = json!([{"name": EXEMPTION, "expression": expression}]);
                }
            }
            (fix.as_object().map_or(0, serde_json::Map::len) > 1).then_some(fix)
        })
        .collect();
    (!fixes.is_empty()).then(|| json!({ "webhooks": fixes }))
}

/// The operator's own user name, if it runs as a ServiceAccount (a SelfSubjectReview).
pub async fn own_username(client: &Client) -> Result<Option<String>, kube::Error> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let username = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username);
    Ok(username.filter(|u| crate::rules::approval::is_service_account(u)))
}

/// A webhook configuration kind as [`heal`] reads it.
trait Configuration:
    Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    fn seen(&self) -> Vec<Seen>;
}

impl Configuration for ValidatingWebhookConfiguration {
    const KIND: &'static str = "ValidatingWebhookConfiguration";
    fn seen(&self) -> Vec<Seen> {
        let webhooks = self.webhooks.iter().flatten();
        webhooks
            .map(|w| Seen::of(&w.name, &w.client_config, w.match_conditions.as_deref()))
            .collect()
    }
}

impl Configuration for MutatingWebhookConfiguration {
    const KIND: &'static str = "MutatingWebhookConfiguration";
    fn seen(&self) -> Vec<Seen> {
        let webhooks = self.webhooks.iter().flatten();
        webhooks
            .map(|w| Seen::of(&w.name, &w.client_config, w.match_conditions.as_deref()))
            .collect()
    }
}

impl Seen {
    /// What [`repair`] looks at in a webhook of either kind.
    fn of(
        name: &str,
        client_config: &WebhookClientConfig,
        match_conditions: Option<&[MatchCondition]>,
    ) -> Seen {
        Seen {
            name: name.to_owned(),
            ca_bundle: client_config.ca_bundle.as_ref().map(|b| b.0.clone()),
            match_conditions: match_conditions.unwrap_or_default().to_vec(),
        }
    }
}

/// Puts configuration `name` of kind `K` right, if it exists and needs it. Returns whether
/// it patched.
async fn heal_one<K: Configuration>(
    client: &Client,
    name: &str,
    wanted: &Wanted,
) -> Result<bool, Error> {
    let api: Api<K> = Api::all(client.clone());
    let err = |source| Error {
        kind: K::KIND,
        name: name.to_owned(),
        source,
    };
    // Missing: nothing to heal until someone creates it (the watch says when).
    let Some(current) = api.get_opt(name).await.map_err(err)? else {
        return Ok(false);
    };
    let Some(patch) = repair(&current.seen(), wanted) else {
        return Ok(false);
    };
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map_err(err)?;
    info!(kind = K::KIND, name, "put the webhook configuration right");
    Ok(true)
}

/// Puts both configurations right once.
pub async fn heal(
    client: &Client,
    validating: &str,
    mutating: &str,
    wanted: &Wanted,
) -> Result<(), Error> {
    heal_one::<ValidatingWebhookConfiguration>(client, validating, wanted).await?;
    heal_one::<MutatingWebhookConfiguration>(client, mutating, wanted).await?;
    Ok(())
}

/// Every change of configuration `name` of kind `K`, as a stream of nothing.
fn changes<K: Configuration>(client: &Client, name: &str) -> stream::BoxStream<'static, ()> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .touched_objects()
        .map(|_| ())
        .boxed()
}

/// Keeps both configurations right for as long as the operator runs: whenever one changes
/// (or is created again), whenever the CA in `ca` changes, and every [`RECHECK`].
pub async fn keep(
    client: Client,
    validating: String,
    mutating: String,
    exempt: Option<String>,
    mut ca: watch::Receiver<Option<String>>,
) {
    let mut changes = stream::select(
        changes::<ValidatingWebhookConfiguration>(&client, &validating),
        changes::<MutatingWebhookConfiguration>(&client, &mutating),
    );
    let mut tick = tokio::time::interval(RECHECK);
    loop {
        let wanted = Wanted {
            ca_bundle: ca.borrow_and_update().clone(),
            exempt: exempt.clone(),
        };
        if let Err(e) = heal(&client, &validating, &mutating, &wanted).await {
            warn!(error = %error_chain(&e), "keeping the webhook configurations");
        }
        tokio::select! {
            _ = changes.next() => {}
            // Once the sender is gone (never, while the operator runs), the CA stays.
            Ok(()) = ca.changed() => {}
            _ = tick.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests;
