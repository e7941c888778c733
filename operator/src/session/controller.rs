//! Wiring: the controller, its watches, and the shared context. When it runs, and when it
//! stops, is [`crate::runtime::leader`]'s decision.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::predicates;
use kube::runtime::reflector::store::{Writer, WriterDropped};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::utils::{Backoff, PredicateConfig};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::crd::{DebugPolicy, DebugSession, TargetKind};
use crate::k8s::workload;
use crate::naming;
use crate::rules::Policy;
use crate::rules::stamp::Key;
use crate::runtime::error_chain;
use crate::runtime::telemetry::Metrics;
use crate::session::context::{Caches, Context, Synced, Workloads};
use crate::session::scope::{self, Scope, Scoped, Watch};
use crate::session::{reconcile, sweep};

/// Errors that stop the controller from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the DebugSession CRD is not installed or not readable; install it with `kubectl apply -k config/crd`"
    )]
    CrdMissing(#[source] kube::Error),
}

/// Sessions in the namespace of `obj` that target it as `kind`.
fn sessions_targeting<K: Resource>(
    store: &Store<DebugSession>,
    kind: TargetKind,
    obj: &K,
) -> Vec<ObjectRef<DebugSession>> {
    let (ns, name) = (obj.meta().namespace.as_deref(), obj.meta().name.as_deref());
    store
        .state()
        .iter()
        .filter(|s| {
            s.spec.target.kind == kind
                && Some(s.spec.target.name.as_str()) == name
                && s.namespace().as_deref() == ns
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// True when `session` targets the object named by `meta` as `kind`.
fn targets(session: &DebugSession, kind: TargetKind, meta: &ObjectMeta) -> bool {
    session.spec.target.kind == kind
        && Some(session.spec.target.name.as_str()) == meta.name.as_deref()
        && session.metadata.namespace == meta.namespace
}

/// Watches the workloads of `kind` into a slimmed cache ([`workload::slim`]: whole for
/// the targets of sessions, only their identity for the rest), and wakes the sessions
/// that target one when what they read of it changes ([`workload::fingerprint`]: its
/// spec, the status they report, its deletion), not at each status write of its
/// controller.
fn watch_workloads(
    controller: Controller<DebugSession>,
    client: &Client,
    scope: &Scope,
    sessions: &Store<DebugSession>,
    kind: TargetKind,
) -> (Controller<DebugSession>, Store<DynamicObject>) {
    // Only workload kinds come here; a Pod's resource would only name an empty cache.
    let resource = workload::api_resource(kind).unwrap_or_else(|| ApiResource::erase::<Pod>(&()));
    let writer = Writer::new(resource.clone());
    let cache = writer.as_reader();
    let targeted = sessions.clone();
    let apis = scope.apis_with(client, &resource);
    let events = watch_each(apis, &watch_config(), &cache)
        .modify(move |obj: &mut DynamicObject| {
            let is_target = targeted.find(|s| targets(s, kind, &obj.metadata)).is_some();
            workload::slim(obj, is_target);
        })
        .reflect(writer);
    // Listed once every session is known, so that the targets of sessions that exist
    // already (after a restart, or on a new leader) are cached whole from the start.
    let ready = sessions.clone();
    let events = futures::stream::once(async move {
        let _ = wait_until_ready(&ready).await;
        events
    })
    .flatten();
    let store = sessions.clone();
    let controller = controller.watches_stream_with(
        changed(events, workload::fingerprint),
        move |obj| sessions_targeting(&store, kind, &obj),
        resource,
    );
    (controller, cache)
}

/// The objects of `events` whose `fingerprint` changed, and every deleted one. (kube's
/// predicate filter can swallow a deletion whose object looks unchanged; a session must
/// hear that its target is gone.)
fn changed<K: Resource>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    fingerprint: fn(&K) -> u64,
) -> impl Stream<Item = Result<K, watcher::Error>> {
    let mut seen: HashMap<(Option<String>, Option<String>), u64> = HashMap::new();
    events.filter_map(move |event| {
        let key = |obj: &K| (obj.meta().namespace.clone(), obj.meta().name.clone());
        let passed = match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                let print = fingerprint(&obj);
                (seen.insert(key(&obj), print) != Some(print)).then_some(Ok(obj))
            }
            Ok(watcher::Event::Delete(obj)) => {
                seen.remove(&key(&obj));
                Some(Ok(obj))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        std::future::ready(passed)
    })
}

/// How long the API server keeps one watch open before the watcher opens the next. Short,
/// so that a watch whose connection died silently (an API server killed and restarted)
/// is noticed within about this long, not after the default of almost five minutes.
const WATCH_TIMEOUT_SECONDS: u32 = 30;

/// Every watch of the controller: lists read from etcd (a restarted API server's cache
/// starts empty), watches renewed every [`WATCH_TIMEOUT_SECONDS`].
fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS)
}

/// The watches of `apis` (one per namespace, as [`Scope::apis`] gives them) with
/// `config`, each retried with [`WatchBackoff`], as one watch for the reflector of `store`.
fn watch_each<K>(apis: Vec<Scoped<Api<K>>>, config: &watcher::Config, store: &Store<K>) -> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let watches = apis
        .into_iter()
        .map(|(ns, api)| {
            let watch = watcher(api, config.clone()).backoff(WatchBackoff::default());
            (ns, watch.boxed())
        })
        .collect();
    scope::merge(watches, store.clone(), |meta| meta.namespace.as_deref())
}

/// Retries of a failed watch: from half a second, doubling, to at most five seconds. The
/// default grows to 30 s during an API server outage, so watches came back up to a minute
/// after the API server did; a session deleted meanwhile waited that long.
#[derive(Clone, Debug)]
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Sessions named by the annotations of a debugged pod.
fn sessions_of_pod(pod: &Pod) -> Vec<ObjectRef<DebugSession>> {
    let ns = pod.namespace().unwrap_or_default();
    pod.annotations()
        .iter()
        .filter(|(k, _)| k.starts_with(naming::SESSION_ANNOTATION_PREFIX))
        .map(|(_, session)| ObjectRef::new(session).within(&ns))
        .collect()
}

/// Runs the controller until `stop` resolves, then lets the reconciliations under way
/// finish (the caller bounds how long it waits for them). Every call starts afresh: new
/// watches, caches and [`Context`].
pub async fn run(
    client: Client,
    policy: Policy,
    stamp: Key,
    sweep_interval: Duration,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let scope = Scope::of(&policy.namespaces);
    let sessions = scope.apis::<DebugSession>(&client);
    for (_, api) in &sessions {
        api.list(&ListParams::default().limit(1))
            .await
            .map_err(Error::CrdMissing)?;
    }
    let lookups = Lookups::watch(&client, &scope);
    let (controller, store) = watch_sessions(sessions);
    let (controller, debugged_pods) = watch_debugged_pods(controller, &client, &scope);
    let (controller, workloads) = watch_all_workloads(controller, &client, &scope, &store);
    let caches = Caches {
        sessions: store.clone(),
        policies: lookups.policies.clone(),
        namespaces: lookups.namespaces.clone(),
        workloads,
        debugged_pods,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        recorder(&client),
        policy,
        caches,
        metrics.clone(),
        stamp,
    ));
    run_controllers(controller, lookups, &client, ctx, sweep_interval, stop).await;
    // Only the leader counts sessions; a replica that stood down reports none.
    metrics.forget_sessions();
    info!("controller stopped");
    Ok(())
}

/// The Recorder of the controller's Events, named after this pod.
fn recorder(client: &Client) -> Recorder {
    let reporter = Reporter {
        controller: "shellcar".to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Recorder::new(client.clone(), reporter)
}

/// Policies and namespaces come from watch caches: a reconcile reads them without a
/// request, and a changed policy wakes every session to judge it again.
struct Lookups {
    policies: Store<DebugPolicy>,
    namespaces: Store<Namespace>,
    /// One message whenever a policy changes.
    policy_changes: futures::channel::mpsc::Receiver<()>,
    /// Feeds both caches; ends only if a watch does.
    feed: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Lookups {
    /// Starts the watches of policies (every one: they are cluster-scoped) and of the
    /// namespaces of `scope` (once `feed` is polled).
    fn watch(client: &Client, scope: &Scope) -> Lookups {
        let (policies, policy_writer) = reflector::store::<DebugPolicy>();
        let (namespaces, namespace_writer) = reflector::store::<Namespace>();
        let (policy_changed, policy_changes) = futures::channel::mpsc::channel::<()>(1);
        let policy_watch = reflector(
            policy_writer,
            watcher(Api::<DebugPolicy>::all(client.clone()), watch_config()),
        )
        .backoff(WatchBackoff::default())
        .touched_objects()
        .for_each(move |_| {
            // A full channel already holds a wake-up for every session.
            let _ = policy_changed.clone().try_send(());
            std::future::ready(())
        });
        let namespace_watches = scope
            .namespace_watches(client, &watch_config())
            .into_iter()
            .map(|(ns, (api, config))| {
                let watch = watcher(api, config).backoff(WatchBackoff::default());
                (ns, watch.boxed())
            })
            .collect();
        // A Namespace belongs to the watch of its own name.
        let events = scope::merge(namespace_watches, namespaces.clone(), |meta| {
            meta.name.as_deref()
        });
        let namespace_watch =
            reflector(namespace_writer, events).for_each(|_| std::future::ready(()));
        let feed = Box::pin(async move {
            tokio::select! {
                () = policy_watch => warn!("the DebugPolicy watch ended"),
                () = namespace_watch => warn!("the Namespace watch ended"),
            }
        });
        Lookups {
            policies,
            namespaces,
            policy_changes,
            feed,
        }
    }
}

/// The session controller and its cache. Sessions wake on changes to their spec (ttl,
/// approval) and their deletion; not on the status the operator writes itself.
fn watch_sessions(
    sessions: Vec<Scoped<Api<DebugSession>>>,
) -> (Controller<DebugSession>, Store<DebugSession>) {
    let (store, session_writer) = reflector::store::<DebugSession>();
    let session_events = watch_each(sessions, &watch_config(), &store)
        .reflect(session_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
    let controller = Controller::for_stream(session_events, store.clone());
    let ready_store = store.clone();
    tokio::spawn(async move {
        // Only logged: readiness is the webhook's (see telemetry::Health).
        match wait_until_ready(&ready_store).await {
            Ok(()) => info!("watches synced"),
            Err(e) => debug!(error = %e, "the controller stopped before its watches synced"),
        }
    });
    (controller, store)
}

/// Debugged pods wake their sessions at every change: readiness, restarts and pull errors
/// are all in their status. Cached without managedFields, which no reader of the cache
/// needs.
fn watch_debugged_pods(
    controller: Controller<DebugSession>,
    client: &Client,
    scope: &Scope,
) -> (Controller<DebugSession>, Synced<Pod>) {
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let config = watch_config().labels(naming::DEBUGGED_LABEL);
    let pod_events = watch_each(scope.apis::<Pod>(client), &config, &pod_store);
    let debugged_pods = Synced::new(pod_store);
    let pods_synced = debugged_pods.flag();
    let pod_events = pod_events
        .modify(|pod: &mut Pod| pod.metadata.managed_fields = None)
        .reflect(pod_writer)
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                pods_synced.store(true, Ordering::Relaxed);
            }
        })
        .touched_objects();
    let controller = controller.watches_stream(pod_events, |pod| sessions_of_pod(&pod));
    (controller, debugged_pods)
}

/// [`watch_workloads`] for each workload kind.
fn watch_all_workloads(
    controller: Controller<DebugSession>,
    client: &Client,
    scope: &Scope,
    sessions: &Store<DebugSession>,
) -> (Controller<DebugSession>, Workloads) {
    let watch = |controller, kind| watch_workloads(controller, client, scope, sessions, kind);
    let (controller, deployments) = watch(controller, TargetKind::Deployment);
    let (controller, stateful_sets) = watch(controller, TargetKind::StatefulSet);
    let (controller, daemon_sets) = watch(controller, TargetKind::DaemonSet);
    let (controller, replica_sets) = watch(controller, TargetKind::ReplicaSet);
    let workloads = Workloads {
        deployments,
        stateful_sets,
        daemon_sets,
        replica_sets,
    };
    (controller, workloads)
}

/// Runs the session controller until `stop`, beside the controller of policies' status
/// and the watches of `lookups`; returns when the session controller has stopped, or
/// when any of the others ends.
async fn run_controllers(
    controller: Controller<DebugSession>,
    lookups: Lookups,
    client: &Client,
    ctx: Arc<Context>,
    sweep_interval: Duration,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let Lookups {
        policies,
        namespaces,
        policy_changes,
        feed,
    } = lookups;
    let controller = controller.reconcile_all_on(policy_changes);
    let policy_status = Controller::new(Api::<DebugPolicy>::all(client.clone()), watch_config())
        .trigger_backoff(WatchBackoff::default())
        .run(
            crate::session::policy_status::reconcile,
            crate::session::policy_status::error_policy,
            ctx.clone(),
        )
        .for_each(|_| std::future::ready(()));
    let sweeping = {
        let ctx = ctx.clone();
        async move {
            // Every session must be known before anything is taken for an orphan.
            let _ = wait_until_ready(&ctx.caches.sessions).await;
            sweep::run(ctx, sweep_interval).await;
        }
    };
    let sessions = async move {
        // No session is judged before every policy and namespace is known: an empty
        // cache would read as "no policy", and revoke what a policy allows.
        let _ = wait_until_ready(&policies).await;
        let _ = wait_until_ready(&namespaces).await;
        info!("controller started");
        run_sessions(controller, stop, ctx).await;
    };
    // The watches feed the caches as long as the session controller runs.
    tokio::select! {
        () = sessions => {}
        () = sweeping => {}
        () = feed => {}
        () = policy_status => warn!("the DebugPolicy status controller ended"),
    }
}

/// Waits until `store` holds a full list, or its writer is gone. The readiness signal
/// wakes only one waiter (a oneshot inside kube-runtime), and the controller itself waits
/// on it too: ask again each second.
async fn wait_until_ready<K>(store: &Store<K>) -> Result<(), WriterDropped>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) =
            tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await
        {
            return result;
        }
    }
}

/// Runs the session controller until `stop`, then lets the reconciliations under way end.
async fn run_sessions(
    controller: Controller<DebugSession>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
    ctx: Arc<Context>,
) {
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(session = %obj, "reconciled"),
                // Reconcile errors are logged by the error policy; these are the rest
                // (watch failures, missing objects), which must not vanish silently.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                // A session deleted between its trigger and its turn: nothing to do.
                Err(e @ kube::runtime::controller::Error::ObjectNotFound(..)) => {
                    debug!(error = %e, "controller");
                }
                Err(e) => warn!(error = %error_chain(&e), "controller"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
