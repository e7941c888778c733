//! The admission webhook, one of shellcar's two front doors: who asked, whether they may,
//! what may change, and what the debugger will see.
//!
//! Only what the API server sends is answered: [`gate`] judges each request's path,
//! method, size and subject, and [`limit`] rate-limits each source address, so that the
//! webhook's answers (which run SubjectAccessReviews) are no oracle for anyone else on the
//! pod network.
//!
//! The pure decisions are in [`requester`], [`approval`], [`stamp`], [`immutable`] and
//! [`warnings`], beside the rules the reconciler shares ([`crate::rules`]). [`review`]
//! holds the review logic that combines them, asking through the I/O seam in [`io`]:
//! access checks, the surroundings, and the dry run that the session's own mode sends
//! ([`crate::session::modes::dry_run`]). [`http`] serves the reviews over HTTPS with the
//! certificate from [`tls`]; this file keeps that certificate current, and
//! [`configurations`] keeps the webhook configurations trusting it and leaving the
//! operator's own requests out.

pub mod approval;
pub mod configurations;
pub mod gate;
pub mod http;
pub mod immutable;
pub mod io;
pub mod limit;
pub mod requester;
pub mod review;
pub mod stamp;
pub mod tls;
pub mod warnings;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use kube::Client;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::k8s::capabilities::Capabilities;
use crate::rules::Policy;
use crate::rules::stamp::Key;
use crate::runtime::error_chain;
use crate::runtime::retry;
use crate::runtime::telemetry::{Health, Metrics};

/// Where the webhook listens, and the names of what it keeps up to date.
#[derive(Clone, Debug)]
pub struct Settings {
    pub addr: SocketAddr,
    /// The operator's namespace: the certificate's Secret and the Service live there.
    pub namespace: String,
    pub service: String,
    pub secret: String,
    /// The webhook configurations kept by [`configurations::keep`].
    pub mutating: String,
    pub validating: String,
    /// The certificate is kept by someone else (cert-manager): read the Secret, never
    /// write it, and leave the caBundle to them.
    pub external_certificate: bool,
    /// Requests per second each source address may send, after a burst of `burst`.
    pub rate_limit: NonZeroU32,
    pub burst: NonZeroU32,
    /// Whether clients must present a certificate, and from which CA
    /// (`--webhook-client-ca`, read once at start: [`http::client_verifier`]).
    pub client_auth: http::ClientAuth,
}

/// How often the certificate is checked for renewal (its own), or for a new one in the
/// Secret (an external one).
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);
const EXTERNAL_CHECK: Duration = Duration::from_secs(300);

/// Why the webhook stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the webhook's TLS configuration")]
    Tls(#[from] http::TlsError),
    #[error("serving the admission webhook")]
    Serve(#[from] std::io::Error),
}

/// Serves the admission webhook: keeps its certificate and caBundle, then answers
/// reviews with the same policy the reconciler applies. Readiness waits for the
/// certificate.
pub async fn run(
    client: Client,
    settings: Settings,
    policy: Policy,
    stamp: Key,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<(), Error> {
    let caps: Capabilities = retry("discovering what the cluster serves", || {
        crate::k8s::capabilities::discover(&client)
    })
    .await;
    let s = &settings;
    let cert = if s.external_certificate {
        retry("reading the webhook certificate", || async {
            tls::external(&client, &s.namespace, &s.secret)
                .await?
                .ok_or(tls::Error::NotYet)
        })
        .await
    } else {
        retry("keeping the webhook certificate", || {
            tls::ensure(&client, &s.namespace, &s.secret, &s.service)
        })
        .await
    };
    // The configurations carry our CA (unless cert-manager injects it) and leave our own
    // requests out, before the webhook reports ready, and from then on.
    let exempt = retry("asking who the operator is", || {
        configurations::own_username(&client)
    })
    .await;
    let wanted = configurations::Wanted {
        ca_bundle: (!s.external_certificate).then(|| cert.ca_cert.clone()),
        exempt: exempt.clone(),
    };
    retry("putting the webhook configurations right", || {
        configurations::heal(&client, &s.validating, &s.mutating, &wanted)
    })
    .await;
    let (ca, ca_changes) = watch::channel(wanted.ca_bundle);
    tokio::spawn(configurations::keep(
        client.clone(),
        s.validating.clone(),
        s.mutating.clone(),
        exempt,
        ca_changes,
    ));
    let config = RustlsConfig::from_config(http::rustls_config(&cert, &s.client_auth)?);
    tokio::spawn(renew(
        client.clone(),
        settings.clone(),
        cert,
        config.clone(),
        ca,
    ));
    let server = Arc::new(http::Server {
        webhook: review::Webhook {
            io: io::KubeIo {
                client: client.clone(),
            },
            policy,
            capabilities: caps,
            stamp,
        },
        limit: limit::SourceLimit::new(limit::quota(settings.rate_limit, settings.burst)),
        metrics,
    });
    // Bound before it reports ready: ready means it accepts connections.
    let listener = std::net::TcpListener::bind(settings.addr)?;
    health.set_webhook_ready();
    info!(
        addr = %settings.addr,
        rate_limit = %settings.rate_limit,
        burst = %settings.burst,
        client_certificates = settings.client_auth.is_some(),
        "admission webhook ready"
    );
    http::serve(listener, config, server).await?;
    Ok(())
}

/// Renews the serving certificate before it expires, and serves the new one; a new CA of
/// our own goes to `ca`, for [`configurations::keep`].
async fn renew(
    client: Client,
    s: Settings,
    mut current: tls::ServingCert,
    config: RustlsConfig,
    ca: watch::Sender<Option<String>>,
) {
    loop {
        let cert = if s.external_certificate {
            tokio::time::sleep(EXTERNAL_CHECK).await;
            tls::external(&client, &s.namespace, &s.secret)
                .await
                .and_then(|c| c.ok_or(tls::Error::NotYet))
        } else {
            tokio::time::sleep(RENEWAL_CHECK).await;
            tls::ensure(&client, &s.namespace, &s.secret, &s.service).await
        };
        let cert = match cert {
            Ok(cert) => cert,
            Err(e) => {
                warn!(error = %error_chain(&e), "checking the webhook certificate");
                continue;
            }
        };
        if cert == current {
            continue;
        }
        if !s.external_certificate && cert.ca_cert != current.ca_cert {
            // The configurations trust the new CA before the new certificate is served.
            ca.send_replace(Some(cert.ca_cert.clone()));
            let wanted = configurations::Wanted {
                ca_bundle: Some(cert.ca_cert.clone()),
                exempt: None,
            };
            if let Err(e) = configurations::heal(&client, &s.validating, &s.mutating, &wanted).await
            {
                warn!(error = %error_chain(&e), "patching the webhooks' caBundle");
                continue;
            }
        }
        match http::rustls_config(&cert, &s.client_auth) {
            Ok(tls) => {
                config.reload_from_config(tls);
                info!("serving a renewed webhook certificate");
                current = cert;
            }
            Err(e) => warn!(error = %error_chain(&e), "loading the renewed certificate"),
        }
    }
}
