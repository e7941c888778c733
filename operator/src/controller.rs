//! Wiring: the controller, its watches, and the shared context. When it runs, and when it
//! stops, is [`crate::leader`]'s decision.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::context::{Context, Policy, error_chain};
use crate::crd::{DebugSession, TargetKind};
use crate::naming;
use crate::reconcile;
use crate::telemetry::Metrics;

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

/// Wakes the sessions that target a workload of type `K` (as `kind`) when it changes,
/// appears or goes.
fn watch_targets<K>(
    controller: Controller<DebugSession>,
    client: &Client,
    store: &Store<DebugSession>,
    kind: TargetKind,
) -> Controller<DebugSession>
where
    K: Clone + Resource<DynamicType = ()> + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let store = store.clone();
    controller.watches(
        Api::<K>::all(client.clone()),
        watcher::Config::default(),
        move |obj| sessions_targeting(&store, kind, &obj),
    )
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
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let sessions = Api::<DebugSession>::all(client.clone());
    sessions
        .list(&ListParams::default().limit(1))
        .await
        .map_err(Error::CrdMissing)?;

    let reporter = Reporter {
        controller: "shellcar".to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(client.clone(), recorder, policy, metrics));

    let controller = Controller::new(sessions, watcher::Config::default());
    let store = controller.store();
    let ready_store = store.clone();
    tokio::spawn(async move {
        // The store's readiness signal wakes only one waiter (a oneshot inside kube-runtime),
        // and the controller itself waits on it too: ask again each second.
        let ready = loop {
            let wait = ready_store.wait_until_ready();
            if let Ok(result) = tokio::time::timeout(Duration::from_secs(1), wait).await {
                break result;
            }
        };
        // Only logged: readiness is the webhook's (see telemetry::Health).
        match ready {
            Ok(()) => info!("watches synced"),
            Err(e) => debug!(error = %e, "the controller stopped before its watches synced"),
        }
    });

    let controller = controller.watches(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(naming::DEBUGGED_LABEL),
        |pod| sessions_of_pod(&pod),
    );
    let controller =
        watch_targets::<Deployment>(controller, &client, &store, TargetKind::Deployment);
    let controller =
        watch_targets::<StatefulSet>(controller, &client, &store, TargetKind::StatefulSet);
    let controller = watch_targets::<DaemonSet>(controller, &client, &store, TargetKind::DaemonSet);
    let controller =
        watch_targets::<ReplicaSet>(controller, &client, &store, TargetKind::ReplicaSet);

    info!("controller started");
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
    info!("controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_map_to_the_sessions_their_annotations_name() {
        let pod: Pod = serde_yaml::from_str(
            r#"
metadata:
  name: web-1
  namespace: shop
  annotations:
    debug.shellcar.dev/shellcar-a-1: a
    debug.shellcar.dev/shellcar-b-2: b
    kubectl.kubernetes.io/restartedAt: "now"
"#,
        )
        .unwrap();
        let mut refs: Vec<(String, Option<String>)> = sessions_of_pod(&pod)
            .into_iter()
            .map(|r| (r.name, r.namespace))
            .collect();
        refs.sort();
        let shop = Some("shop".to_owned());
        assert_eq!(
            refs,
            [("a".to_owned(), shop.clone()), ("b".to_owned(), shop)]
        );
    }
}
