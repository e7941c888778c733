use super::*;

fn spec(yaml: &str) -> DebugSessionSpec {
    serde_yaml::from_str(yaml).unwrap()
}

const OLD: &str = r#"
target: {kind: Deployment, name: a}
debugger: {image: busybox, env: [{name: A, value: b}]}
requester: {username: dev}
ttl: 1h
"#;

#[test]
fn raising_the_ttl_is_allowed() {
    let new = spec(&OLD.replace("ttl: 1h", "ttl: 3h"));
    assert_eq!(check(&spec(OLD), &new), Ok(()));
}

#[test]
fn a_resync_that_writes_defaults_or_omits_the_requester_changes_nothing() {
    let new = spec(
        r#"
target: {kind: Deployment, name: a}
mode: Auto
pods: One
teardown: {ephemeral: Leave}
debugger: {image: busybox, profile: General, env: [{name: A, value: b}]}
"#,
    );
    assert_eq!(check(&spec(OLD), &new), Ok(()));
}

#[test]
fn pointing_the_session_at_another_target_is_refused() {
    let new = spec(&OLD.replace("name: a", "name: b"));
    let err = check(&spec(OLD), &new).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.target.name is immutable after creation; only spec.ttl may change: create a new DebugSession instead"
    );
}

#[test]
fn every_changed_field_is_named() {
    let new = spec(
        r#"
target: {kind: StatefulSet, name: a}
mode: Copy
debugger: {image: busybox, env: [{name: A, value: c}], profile: SysAdmin}
ttl: 2h
"#,
    );
    let err = check(&spec(OLD), &new).unwrap_err();
    assert_eq!(
        err.fields,
        [
            "spec.debugger.env",
            "spec.debugger.profile",
            "spec.mode",
            "spec.target.kind",
        ]
    );
    assert!(err.to_string().starts_with(
        "spec.debugger.env, spec.debugger.profile, spec.mode, spec.target.kind are immutable"
    ));
}

#[test]
fn adding_or_removing_an_optional_field_is_a_change() {
    let added = spec(&OLD.replace(
        "{kind: Deployment, name: a}",
        "{kind: Deployment, name: a, container: app}",
    ));
    assert_eq!(
        check(&spec(OLD), &added).unwrap_err().fields,
        ["spec.target.container"]
    );
    let removed = spec(&OLD.replace("image: busybox, ", ""));
    assert_eq!(
        check(&spec(OLD), &removed).unwrap_err().fields,
        ["spec.debugger.image"]
    );
}
