//! The operator's process: every replica serves metrics, health and the admission webhook;
//! the leader also runs the controller. Wires [`crate::runtime`], [`crate::admission`] and
//! [`crate::session`] together from the command line's [`RunArgs`].

use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::admission;
use crate::cli::RunArgs;
use crate::k8s::stamp_key;
use crate::rules::namespaces::Namespaces;
use crate::rules::{Policy, Stopper};
use crate::runtime::leader::{self, Election};
use crate::runtime::telemetry::{self, Health, Metrics};
use crate::runtime::{api_requests, retry, version};
use crate::session;

/// Runs the operator until SIGTERM or Ctrl+C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(args.log_format);
    // Read before anything else: a CA that cannot be read stops the operator at once,
    // rather than serving the webhook without the client check an admin asked for.
    let client_auth = args
        .webhook_client_ca
        .as_deref()
        .map(admission::http::client_verifier)
        .transpose()
        .context("--webhook-client-ca")?;
    let metrics = Arc::new(Metrics::default());
    let client = api_requests::counted_client(&metrics.count_requests())
        .await
        .context("no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let policy = Policy {
        default_image: args.default_image,
        max_ttl: args.max_ttl,
        allowed_images: args.allowed_images,
        start_deadline: args.start_deadline,
        stopper: None,
        namespaces: Namespaces::new(&args.namespace, args.watch_namespaces),
    };
    let stopper_image = args.stopper_image;
    let election = args.leader_elect.then(|| Election {
        namespace: args.namespace.clone(),
        lease: args.lease_name,
        identity: leader::identity(),
    });
    let stamp_secret = (args.namespace.clone(), args.stamp_secret);
    let sweep_interval = args.sweep_interval;
    let webhook = admission::Settings {
        addr: args.webhook_addr,
        namespace: args.namespace,
        service: args.webhook_service,
        secret: args.webhook_secret,
        mutating: args.mutating_webhook,
        validating: args.validating_webhook,
        external_certificate: args.external_certificate,
        rate_limit: args.webhook_rate_limit,
        burst: args.webhook_burst,
        client_auth,
    };
    let health = Arc::new(Health::default());
    let server = telemetry::serve(
        args.metrics_addr,
        args.health_addr,
        metrics.clone(),
        health.clone(),
    );
    let work = async move {
        let mut shutdown = Box::pin(shutdown());
        let supported = tokio::select! {
            supported = version::check(&client, &health) => supported,
            () = &mut shutdown => return Ok(()),
        };
        if !supported {
            // Live, not ready, and idle: see version::check.
            shutdown.await;
            return Ok(());
        }
        // The webhook seals what it records with this key, and the controller checks it.
        let (namespace, secret) = &stamp_secret;
        let stamp = retry("keeping the admission stamp key", || {
            stamp_key::ensure(&client, namespace, secret)
        })
        .await;
        let stopper = match stopper_image {
            Some(image) => Some(Stopper {
                image,
                pull_policy: None,
            }),
            None => own_image(&client, namespace).await,
        };
        let policy = Policy { stopper, ..policy };
        let admission = admission::run(
            client.clone(),
            webhook,
            policy.clone(),
            stamp.clone(),
            health.clone(),
            metrics.clone(),
        );
        let controller = {
            let (client, metrics) = (client.clone(), metrics.clone());
            move |stop| {
                let term = session::run(
                    client.clone(),
                    policy.clone(),
                    stamp.clone(),
                    sweep_interval,
                    metrics.clone(),
                    stop,
                );
                async move { term.await.map_err(leader::TermError::from) }
            }
        };
        // Every replica serves metrics, health and the webhook; the controller runs on the
        // leader only. Shutdown goes through the leader: it stops the controller, releases
        // the Lease, and then the process exits.
        let controller = leader::run(client, election, metrics, health, controller, shutdown);
        tokio::select! {
            result = controller => result.context("running the controller"),
            result = admission => result.context("serving the admission webhook"),
        }
    };
    tokio::select! {
        result = server => result.context("serving metrics and health")?,
        result = work => result?,
    }
    Ok(())
}

/// The image (and pull policy) of this operator's own container, read from its pod; `None`
/// outside a pod or when the pod cannot be read (Ephemeral debuggers are then stopped
/// through exec only).
async fn own_image(client: &kube::Client, namespace: &str) -> Option<Stopper> {
    let name = std::env::var("POD_NAME").ok()?;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let pod = match pods.get(&name).await {
        Ok(pod) => pod,
        Err(e) => {
            warn!(error = %e, "cannot read this operator's pod: Ephemeral debuggers are stopped through exec only");
            return None;
        }
    };
    let container = pod.spec?.containers.into_iter().next()?;
    Some(Stopper {
        image: container.image?,
        pull_policy: container.image_pull_policy,
    })
}

/// Resolves at SIGTERM (the kubelet stopping the pod) or Ctrl+C.
async fn shutdown() {
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot handle SIGTERM; Ctrl+C still shuts down");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => info!("SIGTERM: shutting down"),
        Ok(()) = tokio::signal::ctrl_c() => info!("Ctrl+C: shutting down"),
    }
}
