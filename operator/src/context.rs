//! What every reconciliation shares: the client, the Event recorder, the operator's policy,
//! metrics, the backoff state, and what the cluster can do (discovered once). Also the
//! reconcile [`Error`], its stable categories, and publishing Events.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::DynamicObject;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::OnceCell;
use tracing::warn;

use crate::access::{self, AccessCache};
use crate::crd::{DebugPolicy, DebugSession, TargetKind};
use crate::telemetry::Metrics;
use crate::workload;

/// What the operator allows, from its command line.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Image used when a session names none.
    pub default_image: String,
    /// Longest ttl a session may ask for.
    pub max_ttl: Duration,
    /// How long a session may go without a running debugger before it fails with
    /// StartTimeout and is torn down.
    pub start_deadline: Duration,
    /// Images a debugger may use, as prefixes that end on a `/` or `:` boundary, where no
    /// DebugPolicy names its own; empty allows every image.
    pub allowed_images: Vec<String>,
}

/// What the cluster can do, found out once by discovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The `pods/ephemeralcontainers` subresource is served. Every Kubernetes API server
    /// of a supported version ([`crate::version::OLDEST_SUPPORTED`]) serves it, with no
    /// feature gate to turn it off since 1.27; a Kubernetes-like server that leaves it out
    /// gets Copy mode for Pods (and a clear refusal of mode Ephemeral) instead of 404s.
    pub ephemeral_containers: bool,
}

impl Capabilities {
    /// The capabilities of an API server that serves `core` (its `v1` resources).
    pub fn from_discovery(core: &APIResourceList) -> Self {
        Capabilities {
            ephemeral_containers: core
                .resources
                .iter()
                .any(|r| r.name == "pods/ephemeralcontainers"),
        }
    }
}

/// Finds out what the cluster serves: whether it has ephemeral containers.
pub async fn discover(client: &Client) -> Result<Capabilities, Error> {
    let core = client
        .list_core_api_resources("v1")
        .await
        .map_err(Error::Discovery)?;
    Ok(Capabilities::from_discovery(&core))
}

/// Errors of one reconciliation. All of them are transient: the session is retried with
/// backoff. Problems with the spec are not errors but refusals, written to status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the DebugSession has no namespace")]
    NoNamespace,
    #[error("the DebugSession has no uid yet, so nothing can be owned by it")]
    NoUid,
    #[error("reading the target")]
    Workload(#[from] workload::Error),
    #[error("applying the debugger to {kind} {name}")]
    Apply {
        kind: TargetKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("removing the debugger from {kind} {name}")]
    Teardown {
        kind: TargetKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the debugged pods")]
    Pods(#[source] kube::Error),
    #[error("writing the status")]
    Status(#[source] kube::Error),
    #[error("{action} pod {pod}")]
    Pod {
        action: &'static str,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("running a command in the debugger of pod {pod}: {message}")]
    Exec { pod: String, message: String },
    #[error("discovering what the cluster serves")]
    Discovery(#[source] kube::Error),
    #[error("asking the API server what the requester may do")]
    Access(#[source] access::Error),
    #[error("namespace {namespace} is not in the watch cache yet")]
    NamespaceUnknown { namespace: String },
    #[error("managing the finalizer")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// The API server's refusal of a change the session makes, when retrying cannot help:
    /// a 4xx other than 404 (gone), 409 (conflict) and 429 (throttled).
    pub fn rejection(&self) -> Option<String> {
        let source = match self {
            Error::Apply { source, .. } | Error::Pod { source, .. } => source,
            _ => return None,
        };
        match source {
            kube::Error::Api(status)
                if (400..500).contains(&status.code) && ![404, 409, 429].contains(&status.code) =>
            {
                Some(format!("{}: {}", self, status.message))
            }
            _ => None,
        }
    }

    /// A short, stable category: the metrics label and log field.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NoNamespace => "NoNamespace",
            Error::NoUid => "NoUid",
            Error::Workload(_) => "TargetReadFailed",
            Error::Apply { .. } => "ApplyFailed",
            Error::Teardown { .. } => "TeardownFailed",
            Error::Pods(_) => "PodListFailed",
            Error::Status(_) => "StatusWriteFailed",
            Error::Pod { .. } => "PodOperationFailed",
            Error::Exec { .. } => "ExecFailed",
            Error::Discovery(_) => "DiscoveryFailed",
            Error::Access(_) => "AccessReviewFailed",
            Error::NamespaceUnknown { .. } => "NamespaceNotCached",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }

    /// The [`Error::Pod`] maker for `action` on `pod`, for `map_err`.
    pub fn pod(action: &'static str, pod: &str) -> impl FnOnce(kube::Error) -> Error {
        let pod = pod.to_owned();
        move |source| Error::Pod {
            action,
            pod,
            source,
        }
    }
}

/// `error` and its sources, joined with ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Retries `attempt` every few seconds until it succeeds, logging each failure as `what`:
/// at start the API server, RBAC or a Secret may not be there yet.
pub(crate) async fn retry<T, E, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let mut delay = Duration::from_secs(1);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) => warn!(error = %error_chain(&e), retry_in = ?delay, "{what}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// How long an answer about what a requester may do is reused. RBAC revoked mid-session
/// ends the session within this time plus [`crate::reconcile`]'s recheck period.
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
    /// Every DebugPolicy.
    pub policies: Store<DebugPolicy>,
    /// Every Namespace: its labels select policies and name its Pod Security level.
    pub namespaces: Store<Namespace>,
    /// Every Deployment, StatefulSet, DaemonSet and ReplicaSet, slimmed.
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
    /// Recent answers of SubjectAccessReviews, so that a settled session costs none.
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
    ) -> Self {
        Context {
            client,
            recorder,
            policy,
            caches,
            metrics,
            access: AccessCache::new(ACCESS_CACHE_TTL),
            failures: Mutex::default(),
            capabilities: OnceCell::new(),
        }
    }

    /// What the cluster serves; discovered once, retried until discovery succeeds.
    pub async fn capabilities(&self) -> Result<Capabilities, Error> {
        self.capabilities
            .get_or_try_init(|| discover(&self.client))
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

#[cfg(test)]
mod tests;
