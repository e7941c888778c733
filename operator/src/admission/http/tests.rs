use super::*;
use serde_json::{Value, json};

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
    let config = rustls_config(&cert).unwrap();
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
}
