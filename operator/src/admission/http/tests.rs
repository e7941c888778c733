use super::*;
use crate::admission::limit;
use crate::crd::Requester;
use crate::k8s::access::{self, Check};
use crate::k8s::capabilities::Capabilities;
use crate::rules::Policy;
use crate::rules::govern::Surroundings;
use crate::rules::stamp::{KEY_LEN, Key};
use crate::rules::validate::Plan;
use crate::session::modes::DryRun;
use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt;
use governor::Quota;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Value, json};
use std::num::NonZeroU32;
use tower::ServiceExt;

fn session(spec: &str) -> Value {
    json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugSession",
        "metadata": {"name": "dbg", "namespace": "shop", "uid": "s-1"},
        "spec": serde_yaml::from_str::<Value>(spec).unwrap(),
    })
}

/// The response as the handler sends it.
fn as_json(response: AdmissionResponse) -> Value {
    let sent: Value = serde_json::from_slice(&body(&response.into_review())).unwrap();
    assert_eq!(sent["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(sent["kind"], "AdmissionReview");
    sent["response"].clone()
}

#[test]
fn an_unreadable_review_is_answered_as_invalid() {
    let response = match parse(b"{}", Unreadable::Allow) {
        Ok(_) => panic!("parsed"),
        Err(r) => as_json(*r),
    };
    assert_eq!(response["allowed"], false);
}

#[test]
fn an_object_the_schema_will_refuse_keeps_the_request_uid() {
    let mut cron = session("{target: {kind: Deployment, name: web}}");
    cron["spec"]["target"]["kind"] = json!("CronJob");
    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0f1e", "kind": {"group": "debug.shellcar.dev", "version": "v1alpha1", "kind": "DebugSession"},
            "resource": {"group": "debug.shellcar.dev", "version": "v1alpha1", "resource": "debugsessions"},
            "operation": "CREATE", "userInfo": {"username": "dev"}, "object": cron,
        }
    }))
    .unwrap();
    let allowed = as_json(*parse(&body, Unreadable::Allow).unwrap_err());
    assert_eq!(
        (&allowed["uid"], &allowed["allowed"]),
        (&json!("0f1e"), &json!(true))
    );
    let denied = as_json(*parse(&body, Unreadable::Deny).unwrap_err());
    assert_eq!(
        (&denied["uid"], &denied["allowed"]),
        (&json!("0f1e"), &json!(false))
    );
}

#[test]
fn the_tls_configuration_serves_the_generated_certificate() {
    let cert = super::super::tls::generate(
        &super::super::tls::dns_names("shellcar-webhook", "shellcar-system"),
        std::time::SystemTime::now(),
    )
    .unwrap();
    let config = rustls_config(&cert, &None).unwrap();
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
}

/// An Io the tests' requests never reach: the reviews they send are answered without
/// asking the API server (an UPDATE that changes nothing), or refused before.
struct NoIo;

impl Io for NoIo {
    async fn authorize(&self, _: &Requester, _: &[Vec<Check>]) -> Result<(), access::Error> {
        panic!("the webhook asked for a SubjectAccessReview")
    }

    async fn target_pod_spec(&self, _: &DebugSession) -> Result<Option<PodSpec>, kube::Error> {
        panic!("the webhook read the target")
    }

    async fn surroundings(&self, _: &str) -> Result<Surroundings, kube::Error> {
        panic!("the webhook read the surroundings")
    }

    async fn try_change(
        &self,
        _: &DebugSession,
        _: &Plan,
    ) -> Result<DryRun, crate::session::Error> {
        panic!("the webhook sent a dry run")
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn server(quota: Quota) -> Arc<Server<NoIo>> {
    Arc::new(Server {
        webhook: Webhook {
            io: NoIo,
            policy: Policy {
                default_image: "busybox".to_owned(),
                max_ttl: std::time::Duration::from_secs(24 * 3600),
                allowed_images: vec![],
                start_deadline: std::time::Duration::from_secs(300),
                stopper: None,
                namespaces: crate::rules::namespaces::Namespaces::new(
                    "shellcar-system",
                    Vec::new(),
                ),
            },
            capabilities: Capabilities {
                ephemeral_containers: true,
            },
            stamp: Key::from_bytes(&[9; KEY_LEN]).unwrap(),
        },
        limit: limit::SourceLimit::new(quota),
        metrics: Arc::new(Metrics::default()),
    })
}

/// More than any test sends.
fn generous() -> Quota {
    limit::quota(nz(1000), nz(1000))
}

/// An UPDATE review of a session that changes nothing: allowed without asking anyone.
fn unchanged_update(kind: &str, resource: &str) -> Vec<u8> {
    let object = session("{target: {kind: Deployment, name: web}}");
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-7",
            "kind": {"group": "debug.shellcar.dev", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "debug.shellcar.dev", "version": "v1alpha1", "resource": resource},
            "name": "dbg", "namespace": "shop",
            "operation": "UPDATE", "userInfo": {"username": "dev"},
            "object": object, "oldObject": object,
        }
    }))
    .unwrap()
}

fn ours() -> Vec<u8> {
    unchanged_update("DebugSession", "debugsessions")
}

/// What came back: status, the headers that matter, and the body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: String,
    retry_after: Option<String>,
    allow: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(response: &Response, name: header::HeaderName) -> Option<String> {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The review's response, asserting that the answer is one.
    fn review(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.content_type, "application/json");
        let sent: Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(sent["kind"], "AdmissionReview");
        sent["response"].clone()
    }

    /// Asserts a refusal: `status`, plain text, and nothing that reads as a review.
    fn assert_refused(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(self.content_type.starts_with("text/plain"), "{self:?}");
        let text = String::from_utf8(self.body.clone()).unwrap();
        assert!(!text.contains("AdmissionReview\""), "{text}");
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "a JSON body: {text}"
        );
    }
}

/// Sends one request to the router as if from `source`.
async fn send(
    server: &Arc<Server<NoIo>>,
    source: [u8; 4],
    request: axum::http::request::Builder,
    body: Vec<u8>,
) -> Answer {
    let mut request = request.body(Body::from(body)).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((source, 40000))));
    let response = router(server.clone()).oneshot(request).await.unwrap();
    Answer {
        status: response.status(),
        content_type: Answer::header(&response, header::CONTENT_TYPE).unwrap_or_default(),
        retry_after: Answer::header(&response, header::RETRY_AFTER),
        allow: Answer::header(&response, header::ALLOW),
        body: response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    }
}

fn post(path: &str) -> axum::http::request::Builder {
    axum::http::Request::post(path).header(header::CONTENT_TYPE, "application/json")
}

const FROM: [u8; 4] = [10, 88, 0, 1];

#[tokio::test]
async fn a_review_of_a_debug_session_is_answered() {
    let s = server(generous());
    let answer = send(&s, FROM, post("/validate?timeout=10s"), ours()).await;
    let response = answer.review();
    assert_eq!(
        (&response["uid"], &response["allowed"]),
        (&json!("u-7"), &json!(true))
    );
    let answer = send(&s, FROM, post("/mutate"), ours()).await;
    assert_eq!(answer.review()["uid"], "u-7");
}

#[tokio::test]
async fn an_unreadable_debug_session_is_still_answered_with_its_uid() {
    let s = server(generous());
    let mut review: Value = serde_json::from_slice(&ours()).unwrap();
    review["request"]["operation"] = json!("CREATE");
    review["request"]["object"]["spec"]["target"]["kind"] = json!("CronJob");
    let body = serde_json::to_vec(&review).unwrap();
    let denied = send(&s, FROM, post("/validate"), body.clone())
        .await
        .review();
    assert_eq!(
        (&denied["uid"], &denied["allowed"]),
        (&json!("u-7"), &json!(false))
    );
    let allowed = send(&s, FROM, post("/mutate"), body).await.review();
    assert_eq!(
        (&allowed["uid"], &allowed["allowed"]),
        (&json!("u-7"), &json!(true))
    );
}

#[tokio::test]
async fn what_is_not_a_review_of_a_debug_session_gets_a_client_error_and_no_review() {
    let s = server(generous());
    let pod = {
        let mut review: Value = serde_json::from_slice(&ours()).unwrap();
        review["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
        review["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
        serde_json::to_vec(&review).unwrap()
    };
    let cases: Vec<(&str, axum::http::request::Builder, Vec<u8>, StatusCode)> = vec![
        (
            "garbage",
            post("/validate"),
            b"garbage".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "an empty object",
            post("/mutate"),
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a review of a Pod",
            post("/validate"),
            pod,
            StatusCode::BAD_REQUEST,
        ),
        (
            "a review of a DebugPolicy",
            post("/validate"),
            unchanged_update("DebugPolicy", "debugpolicies"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "text/plain",
            axum::http::Request::post("/validate").header(header::CONTENT_TYPE, "text/plain"),
            ours(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no content type",
            axum::http::Request::post("/validate"),
            ours(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "GET",
            axum::http::Request::get("/validate"),
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        ("another path", post("/"), ours(), StatusCode::NOT_FOUND),
        (
            "/metrics",
            axum::http::Request::get("/metrics"),
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            "a declared size over the limit",
            post("/validate").header(header::CONTENT_LENGTH, gate::MAX_BODY + 1),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            // No Content-Length: the limit applies while reading.
            "a body over the limit",
            post("/validate"),
            vec![b' '; gate::MAX_BODY + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, request, body, status) in cases {
        let answer = send(&s, FROM, request, body).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        answer.assert_refused(status);
    }
    let get = send(&s, FROM, axum::http::Request::get("/mutate"), vec![]).await;
    assert_eq!(get.allow.as_deref(), Some("POST"));
    let metrics = s.metrics.encode();
    for line in [
        r#"shellcar_webhook_refused_total{reason="Malformed"} 2"#,
        r#"shellcar_webhook_refused_total{reason="NotDebugSession"} 2"#,
        r#"shellcar_webhook_refused_total{reason="UnsupportedMediaType"} 2"#,
        r#"shellcar_webhook_refused_total{reason="MethodNotAllowed"} 2"#,
        r#"shellcar_webhook_refused_total{reason="NotFound"} 2"#,
        r#"shellcar_webhook_refused_total{reason="TooLarge"} 2"#,
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_is_refused() {
    let s = server(generous());
    // One chunk, then nothing: a client that holds the connection open.
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(
        b"{",
    ))])
    .chain(futures::stream::pending());
    let mut request = post("/validate").body(Body::from_stream(chunks)).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((FROM, 40000))));
    let response = router(s.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(
        s.metrics
            .encode()
            .contains(r#"shellcar_webhook_refused_total{reason="Timeout"} 1"#)
    );
}

#[tokio::test]
async fn a_source_over_its_limit_gets_429_while_another_is_still_answered() {
    // Three at once, then one an hour: the fourth request comes far too soon.
    let s = server(Quota::per_hour(nz(1)).allow_burst(nz(3)));
    let flooder = [10, 88, 0, 66];
    for n in 1..=3 {
        let answer = send(&s, flooder, post("/validate"), ours()).await;
        assert_eq!(answer.status, StatusCode::OK, "request {n}: {answer:?}");
    }
    let over = send(&s, flooder, post("/validate"), ours()).await;
    over.assert_refused(StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = over.retry_after.as_deref().unwrap().parse().unwrap();
    assert!(
        (3000..=3600).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    // Refused before anything else is judged: garbage costs the same.
    let garbage = send(&s, flooder, post("/validate"), b"garbage".to_vec()).await;
    garbage.assert_refused(StatusCode::TOO_MANY_REQUESTS);

    let api_server = send(&s, FROM, post("/validate"), ours()).await;
    assert_eq!(api_server.review()["allowed"], true);
    assert!(
        s.metrics
            .encode()
            .contains(r#"shellcar_webhook_refused_total{reason="RateLimited"} 2"#)
    );
}

// The HTTPS server itself, with and without client certificates.
mod https;
