//! Which requests the webhook answers at all. Anyone on the pod network can reach its
//! port, and its answers run SubjectAccessReviews and read policies: so it answers only
//! what the API server sends it, an `admission.k8s.io/v1` AdmissionReview of a
//! DebugSession posted to `/mutate` or `/validate`, and refuses anything else with an HTTP
//! status and a short plain-text reason, never with a review. The judgments are pure;
//! [`super::http`] applies them in order: [`super::limit`], [`endpoint`], reading at most
//! [`MAX_BODY`], [`envelope`].

use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, header};
use kube::Resource;
use serde::Deserialize;

use crate::crd::DebugSession;

/// The largest body the webhook reads. The API server sends the object and the old object
/// of one DebugSession (at most a few KiB each); etcd stores nothing over 1.5 MiB, so even
/// the largest object it could hold fits twice, with room for the envelope. Anything
/// larger is not a review the API server sends, and reading it only costs memory.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// How long the webhook waits for a request's body. The API server waits at most a
/// webhook's `timeoutSeconds` (10 s here, 30 s at most) for the whole answer, so a body
/// still arriving after that is no review it is waiting for, only a held connection.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's two reviews.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

/// Why a request gets no review: each is an HTTP status, a fixed reason and a metrics
/// label, none of which depends on anything but the request itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The source sent more than its share ([`super::limit`]); try again after this long.
    RateLimited {
        retry_after: Duration,
    },
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType,
    TooLarge,
    /// The body did not arrive within [`BODY_TIMEOUT`].
    Timeout,
    /// Not JSON, or not an `admission.k8s.io/v1` AdmissionReview with a request.
    Malformed,
    /// A review of something other than DebugSessions (or of a subresource of them),
    /// which the webhook configurations never send here.
    NotDebugSession,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Malformed | Refusal::NotDebugSession => StatusCode::BAD_REQUEST,
        }
    }

    /// The stable short category: the label of `shellcar_webhook_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "RateLimited",
            Refusal::NotFound => "NotFound",
            Refusal::MethodNotAllowed => "MethodNotAllowed",
            Refusal::UnsupportedMediaType => "UnsupportedMediaType",
            Refusal::TooLarge => "TooLarge",
            Refusal::Timeout => "Timeout",
            Refusal::Malformed => "Malformed",
            Refusal::NotDebugSession => "NotDebugSession",
        }
    }

    /// The plain-text body: what was wrong with the request, nothing about the cluster.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::RateLimited { .. } => "too many requests from this address",
            Refusal::NotFound => "not found: the webhook serves /mutate and /validate",
            Refusal::MethodNotAllowed => "method not allowed: POST an AdmissionReview",
            Refusal::UnsupportedMediaType => "unsupported media type: send application/json",
            Refusal::TooLarge => "request body too large",
            Refusal::Timeout => "request body not received in time",
            Refusal::Malformed => "not an admission.k8s.io/v1 AdmissionReview with a request",
            Refusal::NotDebugSession => {
                "not a review of debugsessions.debug.shellcar.dev: nothing else is served here"
            }
        }
    }

    /// Seconds for the `Retry-After` header: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(secs.max(1))
            }
            _ => None,
        }
    }
}

/// The endpoint a request is for, judged from its method, path (without the query: the API
/// server adds `?timeout=`) and headers, before its body is read.
pub fn endpoint(method: &Method, path: &str, headers: &HeaderMap) -> Result<Endpoint, Refusal> {
    let endpoint = match path {
        "/mutate" => Endpoint::Mutate,
        "/validate" => Endpoint::Validate,
        _ => return Err(Refusal::NotFound),
    };
    if method != Method::POST {
        return Err(Refusal::MethodNotAllowed);
    }
    if !headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json)
    {
        return Err(Refusal::UnsupportedMediaType);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(Refusal::TooLarge);
    }
    Ok(endpoint)
}

/// `application/json`, with or without parameters (`; charset=utf-8`), in any case.
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The parts of an AdmissionReview that say what it is about. Unknown fields are ignored,
/// and the object is not read here: a review of a DebugSession whose object the operator
/// cannot read is answered by [`super::http::parse`] as before.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: String,
    kind: String,
    request: Option<EnvelopeRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeRequest {
    kind: ReviewedKind,
    resource: ReviewedResource,
    #[serde(default)]
    sub_resource: Option<String>,
}

#[derive(Deserialize)]
struct ReviewedKind {
    #[serde(default)]
    group: String,
    version: String,
    kind: String,
}

#[derive(Deserialize)]
struct ReviewedResource {
    #[serde(default)]
    group: String,
    version: String,
    resource: String,
}

/// Whether `body` is a review the webhook configurations send: an `admission.k8s.io/v1`
/// AdmissionReview whose request is about the DebugSession resource itself, in the group
/// and version the CRD serves (a second served version would be added here and to the
/// webhook rules together).
pub fn envelope(body: &[u8]) -> Result<(), Refusal> {
    let review: Envelope = serde_json::from_slice(body).map_err(|_| Refusal::Malformed)?;
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return Err(Refusal::Malformed);
    }
    let request = review.request.ok_or(Refusal::Malformed)?;
    let group = DebugSession::group(&());
    let version = DebugSession::version(&());
    let ours = request.resource.group == group
        && request.resource.version == version
        && request.resource.resource == DebugSession::plural(&())
        && request.kind.group == group
        && request.kind.version == version
        && request.kind.kind == DebugSession::kind(&())
        && request
            .sub_resource
            .as_deref()
            .unwrap_or_default()
            .is_empty();
    if ours {
        Ok(())
    } else {
        Err(Refusal::NotDebugSession)
    }
}

#[cfg(test)]
mod tests;
