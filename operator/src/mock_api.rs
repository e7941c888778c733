//! What every mock API server of the tests shares: a [`Client`] whose requests a test
//! receives through a [`Handle`], and the plumbing to read a request and answer it as an
//! API server would (a JSON body, a status code, a `Status` on failure). Each test module
//! decides for itself what to answer: in a fixed order ([`crate::session`]'s fixtures and
//! [`crate::runtime::version`]'s tests) or from a state it keeps (the Lease server of
//! [`crate::runtime::leader`]'s tests).

use std::time::Duration;

use http::{Request, Response, header};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

/// The test's end of a mock API server: each request the client sends, with the means
/// to answer it.
pub(crate) type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose every request comes out of the returned handle.
pub(crate) fn client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// The next request the client sends, with its answer to come; fails the test if none
/// comes within `patience` (`waiting_for` says which) or the client is gone.
pub(crate) async fn next_request(
    handle: &mut ApiHandle,
    patience: Duration,
    waiting_for: &str,
) -> (Request<Body>, SendResponse<Response<Body>>) {
    let Ok(next) = tokio::time::timeout(patience, handle.next_request()).await else {
        panic!("expected {waiting_for}, but no request came within {patience:?}");
    };
    next.expect("the client is gone")
}

/// A request body as JSON: `null` when empty. A body that is not JSON fails the test:
/// the client sends nothing else.
pub(crate) async fn json_body(body: Body) -> Value {
    let bytes = body.collect_bytes().await.unwrap();
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// Answers a request with status `code` and the JSON `body`.
pub(crate) fn reply(send: SendResponse<Response<Body>>, code: u16, body: &Value) {
    let response = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    send.send_response(response);
}

/// A `Status` body, as the API server sends with a failure.
pub(crate) fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
}
