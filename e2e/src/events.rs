//! Events about an object, as `kubectl describe` shows them.
//!
//! The operator publishes `events.k8s.io/v1` Events (kube-runtime's Recorder). The API
//! server stores one kind of Event and serves it under both groups, `regarding` appearing
//! as `involvedObject` in `core/v1`, which is what `kubectl describe` and most dashboards
//! read. Tests read `core/v1` with a field selector, as those tools do.

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};

use crate::TIMEOUT;
use crate::wait::{Polled, poll};

/// The parts of an Event a person reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSummary {
    /// Normal or Warning.
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// The Events of one namespace.
pub struct Events {
    namespace: String,
    api: Api<Event>,
}

impl Events {
    pub fn new(client: &Client, namespace: &str) -> Events {
        Events {
            namespace: namespace.to_owned(),
            api: Api::namespaced(client.clone(), namespace),
        }
    }

    /// Events whose involved object is the `kind` named `name`, oldest first.
    pub async fn for_object(&self, kind: &str, name: &str) -> Result<Vec<EventSummary>> {
        let selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
        let mut events = self
            .api
            .list(&ListParams::default().fields(&selector))
            .await
            .with_context(|| format!("listing Events in {} for {kind} {name}", self.namespace))?
            .items;
        events.sort_by_key(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0)
                .or(e.last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        Ok(events
            .into_iter()
            .map(|e| EventSummary {
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
            })
            .collect())
    }

    /// Waits for an Event of type `type_` ("Normal" or "Warning") and reason `reason` on
    /// the object, and returns it.
    pub async fn wait_for(
        &self,
        kind: &str,
        name: &str,
        type_: &str,
        reason: &str,
    ) -> Result<EventSummary> {
        poll(
            &format!(
                "a {type_} Event {reason} on {kind} {}/{name}",
                self.namespace
            ),
            TIMEOUT,
            || async {
                let events = self.for_object(kind, name).await?;
                Ok(
                    match events
                        .iter()
                        .find(|e| e.type_ == type_ && e.reason == reason)
                    {
                        Some(e) => Polled::Done(e.clone()),
                        None => Polled::NotYet(format!("{events:?}")),
                    },
                )
            },
        )
        .await
    }

    /// Waits for an Event on the object whose message contains `text`, and returns it.
    pub async fn wait_mentioning(
        &self,
        kind: &str,
        name: &str,
        text: &str,
    ) -> Result<EventSummary> {
        poll(
            &format!(
                "an Event on {kind} {}/{name} mentioning {text:?}",
                self.namespace
            ),
            TIMEOUT,
            || async {
                let events = self.for_object(kind, name).await?;
                Ok(match events.iter().find(|e| e.message.contains(text)) {
                    Some(e) => Polled::Done(e.clone()),
                    None => Polled::NotYet(format!("{events:#?}")),
                })
            },
        )
        .await
    }
}
