use super::*;
use axum::http::HeaderValue;
use serde_json::{Value, json};

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

fn json_headers() -> HeaderMap {
    headers(&[(header::CONTENT_TYPE, "application/json")])
}

/// A review as the API server sends it for a DebugSession; tests change one part.
fn review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0f1e",
            "kind": {"group": "debug.shellcar.dev", "version": "v1alpha1", "kind": "DebugSession"},
            "resource": {"group": "debug.shellcar.dev", "version": "v1alpha1", "resource": "debugsessions"},
            "requestKind": {"group": "debug.shellcar.dev", "version": "v1alpha1", "kind": "DebugSession"},
            "operation": "CREATE",
            "userInfo": {"username": "dev"},
            "object": {"apiVersion": "debug.shellcar.dev/v1alpha1", "kind": "DebugSession"},
        }
    })
}

fn judged(review: &Value) -> Result<(), Refusal> {
    envelope(&serde_json::to_vec(review).unwrap())
}

#[test]
fn the_two_reviews_are_posted_as_json() {
    assert_eq!(
        endpoint(&Method::POST, "/mutate", &json_headers()),
        Ok(Endpoint::Mutate)
    );
    let with_charset = headers(&[(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")]);
    assert_eq!(
        endpoint(&Method::POST, "/validate", &with_charset),
        Ok(Endpoint::Validate)
    );
}

#[test]
fn other_paths_methods_media_types_and_declared_sizes_are_refused() {
    let refused = |method: Method, path: &str, headers: &HeaderMap| {
        endpoint(&method, path, headers).map(|_| ()).unwrap_err()
    };
    assert_eq!(
        refused(Method::POST, "/", &json_headers()),
        Refusal::NotFound
    );
    assert_eq!(
        refused(Method::POST, "/validate/", &json_headers()),
        Refusal::NotFound
    );
    assert_eq!(
        refused(Method::GET, "/validate", &json_headers()),
        Refusal::MethodNotAllowed
    );
    assert_eq!(
        refused(Method::PUT, "/mutate", &json_headers()),
        Refusal::MethodNotAllowed
    );
    assert_eq!(
        refused(Method::POST, "/validate", &HeaderMap::new()),
        Refusal::UnsupportedMediaType
    );
    for media in [
        "text/plain",
        "application/jsonp",
        "application/x-www-form-urlencoded",
    ] {
        let h = headers(&[(header::CONTENT_TYPE, media)]);
        assert_eq!(
            refused(Method::POST, "/validate", &h),
            Refusal::UnsupportedMediaType,
            "{media}"
        );
    }
    let big = headers(&[
        (header::CONTENT_TYPE, "application/json"),
        (header::CONTENT_LENGTH, &(MAX_BODY + 1).to_string()),
    ]);
    assert_eq!(refused(Method::POST, "/validate", &big), Refusal::TooLarge);
    let at_the_limit = headers(&[
        (header::CONTENT_TYPE, "application/json"),
        (header::CONTENT_LENGTH, &MAX_BODY.to_string()),
    ]);
    assert_eq!(
        endpoint(&Method::POST, "/validate", &at_the_limit),
        Ok(Endpoint::Validate)
    );
}

#[test]
fn a_review_of_a_debug_session_passes_whatever_its_object() {
    assert_eq!(judged(&review()), Ok(()));
    // The object is for parse() to judge (Unreadable), not for the gate.
    let mut odd = review();
    odd["request"]["object"] = json!({"spec": {"target": 7}});
    assert_eq!(judged(&odd), Ok(()));
}

#[test]
fn what_is_not_an_admission_review_v1_is_malformed() {
    for body in [&b""[..], b"garbage", b"[]", b"{}", b"null"] {
        assert_eq!(envelope(body), Err(Refusal::Malformed), "{body:?}");
    }
    let mut v1beta1 = review();
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    assert_eq!(judged(&v1beta1), Err(Refusal::Malformed));
    let mut response = review();
    response["kind"] = json!("AdmissionResponse");
    assert_eq!(judged(&response), Err(Refusal::Malformed));
    let mut no_request = review();
    no_request["request"] = Value::Null;
    assert_eq!(judged(&no_request), Err(Refusal::Malformed));
    let mut no_resource = review();
    no_resource["request"]
        .as_object_mut()
        .unwrap()
        .remove("resource");
    assert_eq!(judged(&no_resource), Err(Refusal::Malformed));
}

#[test]
fn a_review_of_anything_else_is_not_answered() {
    let mut pod = review();
    pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    pod["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
    assert_eq!(judged(&pod), Err(Refusal::NotDebugSession));

    let mut policies = review();
    policies["request"]["resource"]["resource"] = json!("debugpolicies");
    policies["request"]["kind"]["kind"] = json!("DebugPolicy");
    assert_eq!(judged(&policies), Err(Refusal::NotDebugSession));

    let mut other_version = review();
    other_version["request"]["resource"]["version"] = json!("v1");
    assert_eq!(judged(&other_version), Err(Refusal::NotDebugSession));

    let mut other_group = review();
    other_group["request"]["resource"]["group"] = json!("debug.example.com");
    assert_eq!(judged(&other_group), Err(Refusal::NotDebugSession));

    let mut kind_mismatch = review();
    kind_mismatch["request"]["kind"]["kind"] = json!("Pod");
    assert_eq!(judged(&kind_mismatch), Err(Refusal::NotDebugSession));

    let mut status = review();
    status["request"]["subResource"] = json!("status");
    assert_eq!(judged(&status), Err(Refusal::NotDebugSession));
}

#[test]
fn every_refusal_is_a_client_error_with_a_reason() {
    let all = [
        Refusal::RateLimited {
            retry_after: Duration::from_millis(1),
        },
        Refusal::NotFound,
        Refusal::MethodNotAllowed,
        Refusal::UnsupportedMediaType,
        Refusal::TooLarge,
        Refusal::Timeout,
        Refusal::Malformed,
        Refusal::NotDebugSession,
    ];
    let statuses: Vec<u16> = all.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [429, 404, 405, 415, 413, 408, 400, 400]);
    let mut reasons: Vec<&str> = all.iter().map(Refusal::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len(), "one label per refusal");
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    let after = |d| Refusal::RateLimited { retry_after: d }.retry_after_secs();
    assert_eq!(after(Duration::ZERO), Some(1));
    assert_eq!(after(Duration::from_millis(20)), Some(1));
    assert_eq!(after(Duration::from_secs(2)), Some(2));
    assert_eq!(after(Duration::from_millis(2001)), Some(3));
    assert_eq!(Refusal::NotFound.retry_after_secs(), None);
}
