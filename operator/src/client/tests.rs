use super::*;

#[test]
fn kubectl_gets_the_same_kubeconfig_and_context() {
    let args = ConnectArgs {
        namespace: Some("shop".to_owned()),
        context: Some("prod".to_owned()),
        kubeconfig: Some("/tmp/kc".into()),
    };
    assert_eq!(
        kubectl_flags(&args),
        ["--kubeconfig=/tmp/kc", "--context=prod"]
    );
    assert!(kubectl_flags(&ConnectArgs::default()).is_empty());
}

fn api(code: u16, message: &str) -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure(message, "Reason").with_code(code),
    ))
}

#[test]
fn the_api_servers_message_is_the_refusal() {
    // Judged and refused, or in conflict: the message says why.
    for code in [400, 403, 409, 422] {
        assert_eq!(
            refusal(&api(code, "denied: why")).as_deref(),
            Some("denied: why"),
            "{code}"
        );
    }
    // Any other answer with a message says more than its code: a webhook that failed.
    for code in [404, 429, 500] {
        assert_eq!(
            refusal(&api(code, "webhook failed")).as_deref(),
            Some("webhook failed"),
            "{code}"
        );
    }
    // No message, or no answer at all: nothing to show.
    assert_eq!(refusal(&api(403, "")), None);
    assert_eq!(refusal(&api(500, "")), None);
    let transport = kube::Error::Service("connection refused".into());
    assert_eq!(refusal(&transport), None);
}
