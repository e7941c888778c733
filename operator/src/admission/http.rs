//! The webhook over HTTPS: the one handler that refuses what is not a review of a
//! DebugSession ([`super::gate`]) or comes too often from one address ([`super::limit`]),
//! reading a review from its body and writing the answer as the API server reads it, and
//! the TLS configuration serving the webhook's certificate, asking clients for theirs
//! when `--webhook-client-ca` is set. The answers themselves come from [`super::review`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use http_body_util::LengthLimitError;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::gate::{self, Endpoint, Refusal};
use super::io::Io;
use super::limit::SourceLimit;
use super::review::{Webhook, mutate, validate};
use super::tls::ServingCert;
use crate::crd::DebugSession;
use crate::runtime::telemetry::Metrics;

/// What to answer a review whose object is not a DebugSession as the operator reads it.
#[derive(Clone, Copy)]
pub(super) enum Unreadable {
    /// Allow it unchanged: the mutating webhook runs before schema validation, which
    /// refuses such an object with the API server's own message.
    Allow,
    /// Refuse it: nothing the operator cannot read gets past validation.
    Deny,
}

/// The review in `body`, or the response to give instead: one that carries the request's
/// uid whenever the body has one, as the API server requires.
pub(super) fn parse(
    body: &[u8],
    unreadable: Unreadable,
) -> Result<AdmissionRequest<DebugSession>, Box<AdmissionResponse>> {
    let generic: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| Box::new(AdmissionResponse::invalid(e.to_string())))?;
    let generic: AdmissionRequest<DynamicObject> = generic
        .try_into()
        .map_err(|e| Box::new(AdmissionResponse::invalid(e)))?;
    let typed = serde_json::from_slice::<AdmissionReview<DebugSession>>(body)
        .map_err(|e| e.to_string())
        .and_then(|review| {
            TryInto::<AdmissionRequest<DebugSession>>::try_into(review).map_err(|e| e.to_string())
        });
    typed.map_err(|e| {
        let response = AdmissionResponse::from(&generic);
        Box::new(match unreadable {
            Unreadable::Allow => response,
            Unreadable::Deny => response.deny(format!("not a valid DebugSession: {e}")),
        })
    })
}

/// The review as the API server reads it. kube serializes `response.patch` (bytes) as a
/// JSON array of numbers (kube-rs issue #1781); the API documents a base64 string, which is
/// what Go's `[]byte` decoding expects, so the patch is re-encoded as one.
pub(super) fn body(review: &AdmissionReview<DynamicObject>) -> Vec<u8> {
    let mut value = match serde_json::to_value(review) {
        Ok(value) => value,
        Err(_) => return Vec::new(),
    };
    if let Some(patch) = value.pointer_mut("/response/patch")
        && let Ok(bytes) = serde_json::from_value::<Vec<u8>>(patch.clone())
        && let Ok(encoded) = serde_json::to_value(k8s_openapi::ByteString(bytes))
    {
        *patch = encoded;
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

fn reply(review: AdmissionReview<DynamicObject>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body(&review)).into_response()
}

/// A refusal as plain text, with `Retry-After` or `Allow` where they apply.
fn refused(refusal: &Refusal) -> Response {
    let mut response = (
        refusal.status(),
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", refusal.message()),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(secs) = refusal.retry_after_secs() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if *refusal == Refusal::MethodNotAllowed {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// What serves the reviews: the webhook, the rate limit of its sources, and the metrics
/// that count what it refuses.
pub struct Server<I> {
    pub webhook: Webhook<I>,
    pub limit: SourceLimit,
    pub metrics: Arc<Metrics>,
}

/// The review to answer `request` from `source` with, or why there is none: the rate limit
/// first (the cheapest), then the method, path and headers, the body's size and arrival,
/// and what the review is about ([`gate`]).
async fn answer<I: Io>(
    server: &Server<I>,
    source: IpAddr,
    request: Request,
) -> Result<AdmissionReview<DynamicObject>, Refusal> {
    server
        .limit
        .check(source)
        .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
    let (parts, body) = request.into_parts();
    let endpoint = gate::endpoint(&parts.method, parts.uri.path(), &parts.headers)?;
    // Also bounds a body sent without a Content-Length (chunked), and one sent slowly.
    let body = tokio::time::timeout(
        gate::BODY_TIMEOUT,
        axum::body::to_bytes(body, gate::MAX_BODY),
    )
    .await
    .map_err(|_| Refusal::Timeout)?
    .map_err(|e| {
        if e.into_inner().is::<LengthLimitError>() {
            Refusal::TooLarge
        } else {
            // The client went away, or sent a broken chunked body.
            Refusal::Malformed
        }
    })?;
    gate::envelope(&body)?;
    let response = match endpoint {
        Endpoint::Mutate => match parse(&body, Unreadable::Allow) {
            Ok(req) => mutate(&server.webhook, &req).await,
            Err(invalid) => *invalid,
        },
        Endpoint::Validate => match parse(&body, Unreadable::Deny) {
            Ok(req) => validate(&server.webhook, &req).await,
            Err(invalid) => *invalid,
        },
    };
    Ok(response.into_review())
}

async fn handle<I: Io>(
    State(server): State<Arc<Server<I>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    match answer(&server, peer.ip(), request).await {
        Ok(review) => reply(review),
        Err(refusal) => {
            server.metrics.webhook_refused(refusal.reason());
            // Debug only: a flood must not flood the log too; the counter shows it.
            tracing::debug!(%peer, reason = refusal.reason(), "refused a webhook request");
            refused(&refusal)
        }
    }
}

/// The webhook's routes. Every request goes to one handler, which answers `POST /mutate`
/// and `POST /validate` ([`gate::endpoint`]) and refuses the rest; it needs the peer's
/// address ([`ConnectInfo`]), which [`serve`] provides.
pub(super) fn router<I: Io>(server: Arc<Server<I>>) -> Router {
    Router::new().fallback(handle::<I>).with_state(server)
}

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the webhook certificate")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("building the TLS configuration")]
    Rustls(#[from] rustls::Error),
    #[error("reading the webhook's client CA {path}")]
    ClientCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the webhook's client CA {path}")]
    ClientCaPem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the webhook's client CA {path} holds no certificate")]
    NoClientCa { path: PathBuf },
    #[error("building the verifier of the webhook's client certificates")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Whom the webhook's TLS server asks for a certificate: `None`, nobody (anyone may
/// connect); `Some`, every client must present one that chains to that CA
/// (`--webhook-client-ca`).
pub type ClientAuth = Option<Arc<dyn ClientCertVerifier>>;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The verifier of client certificates issued by the CAs in the PEM file at `path`. Read
/// once, when the operator starts: a new CA takes a restart (`kubectl rollout restart`).
pub fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ClientCaFile {
        path: path.to_owned(),
        source,
    })?;
    let cas = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::ClientCaPem {
            path: path.to_owned(),
            source,
        })?;
    if cas.is_empty() {
        return Err(TlsError::NoClientCa {
            path: path.to_owned(),
        });
    }
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca)?;
    }
    Ok(WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?)
}

/// A rustls server configuration serving `cert`, with the ring provider (as kube uses),
/// asking clients for a certificate as `client_auth` says.
pub fn rustls_config(
    cert: &ServingCert,
    client_auth: &ClientAuth,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain =
        CertificateDer::pem_slice_iter(cert.cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(cert.key.as_bytes())?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How often the rate limit forgets sources whose budget is full again.
const FORGET_IDLE_SOURCES: Duration = Duration::from_secs(60);

/// Serves the webhook on `listener` over HTTPS until the process ends. Renewing the
/// certificate is `tls.reload_from_config(rustls_config(&new, ..)?)` on the same `tls`.
pub async fn serve<I: Io>(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    server: Arc<Server<I>>,
) -> std::io::Result<()> {
    let forget = {
        let server = server.clone();
        async move {
            let mut every = tokio::time::interval(FORGET_IDLE_SOURCES);
            loop {
                every.tick().await;
                server.limit.forget_idle();
                tracing::debug!(sources = server.limit.sources(), "webhook rate limit");
            }
        }
    };
    // The peer's address for the rate limit comes from the TCP connection itself.
    let app = router(server).into_make_service_with_connect_info::<SocketAddr>();
    let serving = axum_server::from_tcp_rustls(listener, tls)?.serve(app);
    tokio::select! {
        result = serving => result,
        () = forget => Ok(()),
    }
}

#[cfg(test)]
mod tests;
