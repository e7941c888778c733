//! What every reconciliation shares: the client, the Event recorder, the operator's policy,
//! metrics, the backoff state, the watch caches, and what the cluster can do (discovered
//! once); and publishing Events.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::DynamicObject;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::crd::{DebugPolicy, DebugSession, TargetKind};
use crate::k8s::Capabilities;
use crate::k8s::access::AccessCache;
use crate::k8s::workload;
use crate::rules::Policy;
use crate::rules::stamp::Key;
use crate::runtime::telemetry::Metrics;
use crate::session::error::Error;

/// How long an answer about what a requester may do is reused. RBAC revoked mid-session
/// ends the session within this time plus [`crate::session::reconcile`]'s recheck period.
const ACCESS_CACHE_TTL: Duration = Duration::from_secs(30);

/// A watch cache and whether it holds a full list yet.
#[derive(Clone)]
pub struct Synced<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    synced: Arc<AtomicBool>,
}

impl<K: Resource + Clone + 'static> Synced<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// `store`, not synced yet: see [`Synced::flag`].
    pub fn new(store: Store<K>) -> Self {
        Synced {
            store,
            synced: Arc::default(),
        }
    }

    /// The flag to set once the store holds a full list.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.synced.clone()
    }

    /// The store, once it holds a full list.
    pub fn get(&self) -> Option<&Store<K>> {
        self.synced.load(Ordering::Relaxed).then_some(&self.store)
    }
}

/// The watch caches of the workloads sessions target, slimmed by [`workload::slim`].
#[derive(Clone)]
pub struct Workloads {
    pub deployments: Store<DynamicObject>,
    pub stateful_sets: Store<DynamicObject>,
    pub daemon_sets: Store<DynamicObject>,
    pub replica_sets: Store<DynamicObject>,
}

impl Workloads {
    /// The cache of workloads of `kind`; `None` for Pods.
    pub fn of(&self, kind: TargetKind) -> Option<&Store<DynamicObject>> {
        match kind {
            TargetKind::Deployment => Some(&self.deployments),
            TargetKind::StatefulSet => Some(&self.stateful_sets),
            TargetKind::DaemonSet => Some(&self.daemon_sets),
            TargetKind::ReplicaSet => Some(&self.replica_sets),
            TargetKind::Pod => None,
        }
    }

    /// The workload `kind`/`name` in `ns` if its cache holds it in full.
    pub fn cached(&self, ns: &str, kind: TargetKind, name: &str) -> Option<workload::Workload> {
        workload::cached(self.of(kind)?, ns, kind, name)
    }

    /// The workload `kind`/`name` in `ns`, from its cache where that holds it in full,
    /// else from the API server ([`workload::read`]).
    pub async fn read(
        &self,
        client: &Client,
        ns: &str,
        kind: TargetKind,
        name: &str,
    ) -> Result<Option<workload::Workload>, workload::Error> {
        match self.of(kind) {
            Some(cached) => workload::read(cached, client, ns, kind, name).await,
            None => workload::fetch(client, ns, kind, name).await,
        }
    }
}

/// What the reconciler reads from watch caches instead of asking the API server.
#[derive(Clone)]
pub struct Caches {
    /// Every DebugSession (of the watched namespaces): the policy's limit counts the live
    /// ones created earlier.
    pub sessions: Store<DebugSession>,
    /// Every DebugPolicy.
    pub policies: Store<DebugPolicy>,
    /// Every Namespace, or each watched one: its labels select policies and name its Pod
    /// Security level.
    pub namespaces: Store<Namespace>,
    /// Every Deployment, StatefulSet, DaemonSet and ReplicaSet (of the watched
    /// namespaces), slimmed.
    pub workloads: Workloads,
    /// The pods that carry a debugger (labelled [`crate::naming::DEBUGGED_LABEL`]).
    pub debugged_pods: Synced<Pod>,
}

impl Caches {
    /// The labels of namespace `ns`.
    pub fn namespace_labels(&self, ns: &str) -> Result<BTreeMap<String, String>, Error> {
        self.namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.labels().clone())
            .ok_or_else(|| Error::NamespaceUnknown {
                namespace: ns.to_owned(),
            })
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub policy: Policy,
    pub caches: Caches,
    pub metrics: Arc<Metrics>,
    /// The key that checks each session's admission stamp ([`crate::rules::stamp`]).
    pub stamp: Key,
    /// Recent answers of SubjectAccessReviews, reused for [`ACCESS_CACHE_TTL`]: a settled
    /// session's recheck (about once a minute) asks again only past that.
    pub access: AccessCache,
    /// Consecutive failures per session, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<DebugSession>, u32>>,
    /// What the cluster serves, discovered on first use.
    capabilities: OnceCell<Capabilities>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        policy: Policy,
        caches: Caches,
        metrics: Arc<Metrics>,
        stamp: Key,
    ) -> Self {
        Context {
            client,
            recorder,
            policy,
            caches,
            metrics,
            stamp,
            access: AccessCache::new(ACCESS_CACHE_TTL),
            failures: Mutex::default(),
            capabilities: OnceCell::new(),
        }
    }

    /// What the cluster serves; discovered once, retried until discovery succeeds.
    pub async fn capabilities(&self) -> Result<Capabilities, Error> {
        self.capabilities
            .get_or_try_init(|| async {
                crate::k8s::capabilities::discover(&self.client)
                    .await
                    .map_err(Error::Discovery)
            })
            .await
            .copied()
    }

    /// Records one more consecutive failure of `session`; returns how long to wait before
    /// trying again: 2 s doubling to 5 min.
    pub fn backoff(&self, session: ObjectRef<DebugSession>) -> Duration {
        let attempts = self.failures.lock().map_or(1, |mut failures| {
            let n = failures.entry(session).or_insert(0);
            *n = n.saturating_add(1);
            *n
        });
        Duration::from_secs(2u64.saturating_pow(attempts.min(9))).min(Duration::from_secs(300))
    }

    /// Forgets the failures of `session` after it reconciled cleanly.
    pub fn succeeded(&self, session: &ObjectRef<DebugSession>) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(session);
        }
    }

    /// Publishes an Event on `session`; a failure to do so is logged, not fatal.
    pub async fn publish(
        &self,
        session: &DebugSession,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &session.object_ref(&()))
            .await
        {
            warn!(error = %e, reason, "could not publish an event");
        }
    }
}
