use super::*;

fn session(yaml: &str) -> DebugSession {
    serde_yaml::from_str(yaml).unwrap()
}

const BASE: &str = "metadata: {name: s, namespace: shop}\nspec: {target: {kind: Pod, name: p}}\n";

#[test]
fn waiting_ends_on_ready_failure_or_the_end() {
    assert!(verdict("s", &session(BASE)).is_none());
    let awaiting = format!("{BASE}status: {{phase: AwaitingApproval, message: waiting}}\n");
    assert!(verdict("s", &session(&awaiting)).is_none());

    let ready = format!(
        "{BASE}status:\n  phase: Active\n  conditions:\n  - {{type: Ready, status: \"True\", \
             reason: Running, message: m, lastTransitionTime: \"2026-11-24T10:00:00Z\"}}\n"
    );
    assert!(matches!(verdict("s", &session(&ready)), Some(Ok(()))));

    let failed = format!(
        "{BASE}status:\n  phase: Failed\n  message: image not allowed\n  conditions:\n  - \
             {{type: Ready, status: \"False\", reason: ImageNotAllowed, message: m, \
             lastTransitionTime: \"2026-11-24T10:00:00Z\"}}\n"
    );
    let err = verdict("s", &session(&failed)).unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "DebugSession s failed (ImageNotAllowed): image not allowed"
    );

    let expired = format!("{BASE}status: {{phase: Expired, message: ttl ran out}}\n");
    let err = verdict("s", &session(&expired)).unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "DebugSession s is over (phase Expired): ttl ran out"
    );
}

#[test]
fn the_running_pod_is_chosen() {
    let two = format!(
        "{BASE}status:\n  pods:\n  - {{name: a, container: c, ready: false, attach: x}}\n  - \
             {{name: b, container: c, ready: true, attach: kubectl attach -it -n shop b -c c}}\n"
    );
    assert_eq!(running_pod(&session(&two)).unwrap().name, "b");
    assert!(matches!(
        running_pod(&session(BASE)),
        Err(Error::NoPod { .. })
    ));
}
