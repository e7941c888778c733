//! The webhook over HTTPS: the routes, reading a review from its body and writing the
//! answer as the API server reads it, and the TLS configuration serving the webhook's
//! certificate. The answers themselves come from [`super::review`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::io::Io;
use super::review::{Webhook, mutate, validate};
use super::tls::ServingCert;
use crate::crd::DebugSession;

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

fn reply(review: AdmissionReview<DynamicObject>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body(&review))
}

async fn mutate_handler<I: Io>(
    State(webhook): State<Arc<Webhook<I>>>,
    body: Bytes,
) -> impl IntoResponse {
    let response = match parse(&body, Unreadable::Allow) {
        Ok(req) => mutate(&webhook, &req).await,
        Err(invalid) => *invalid,
    };
    reply(response.into_review())
}

async fn validate_handler<I: Io>(
    State(webhook): State<Arc<Webhook<I>>>,
    body: Bytes,
) -> impl IntoResponse {
    let response = match parse(&body, Unreadable::Deny) {
        Ok(req) => validate(&webhook, &req).await,
        Err(invalid) => *invalid,
    };
    reply(response.into_review())
}

/// The webhook's routes: `POST /mutate` and `POST /validate`.
fn router<I: Io>(webhook: Arc<Webhook<I>>) -> Router {
    Router::new()
        .route("/mutate", post(mutate_handler::<I>))
        .route("/validate", post(validate_handler::<I>))
        .with_state(webhook)
}

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the webhook certificate")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("building the TLS configuration")]
    Rustls(#[from] rustls::Error),
}

/// A rustls server configuration serving `cert`, with the ring provider (as kube uses).
pub fn rustls_config(cert: &ServingCert) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain =
        CertificateDer::pem_slice_iter(cert.cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(cert.key.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the webhook on `addr` over HTTPS until the process ends. Renewing the
/// certificate is `tls.reload_from_config(rustls_config(&new)?)` on the same `tls`.
pub async fn serve<I: Io>(
    addr: SocketAddr,
    tls: RustlsConfig,
    webhook: Arc<Webhook<I>>,
) -> std::io::Result<()> {
    tracing::info!(%addr, "serving the admission webhook");
    axum_server::bind_rustls(addr, tls)
        .serve(router(webhook).into_make_service())
        .await
}

#[cfg(test)]
mod tests;
