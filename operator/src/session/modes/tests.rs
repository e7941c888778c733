use super::*;

fn managed(yaml: &str) -> Vec<ManagedFieldsEntry> {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn owns_fields_sees_only_the_managers_apply_entries() {
    let entries = managed(
        r#"
- manager: shellcar.dev/a
  operation: Apply
  fieldsV1: {"f:spec": {}}
- manager: shellcar.dev/b
  operation: Apply
  fieldsV1: {}
- manager: kubectl-client-side-apply
  operation: Update
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:shareProcessNamespace": {}}}}}
"#,
    );
    assert!(owns_fields(&entries, "shellcar.dev/a"));
    assert!(!owns_fields(&entries, "shellcar.dev/b"));
    assert!(!owns_fields(&entries, "shellcar.dev/c"));
    assert!(!owns_fields(&entries, "kubectl-client-side-apply"));
}

fn pod(name: &str, phase: &str, session: Option<&str>) -> Pod {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "status": {"phase": phase},
    }))
    .unwrap();
    if let Some(session) = session {
        pod.annotations_mut()
            .insert(naming::session_annotation("c"), session.to_owned());
    }
    pod
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(ResourceExt::name_any).collect()
}

#[test]
fn selection_keeps_the_sessions_pods_then_running_ones_by_name() {
    let pods = vec![
        pod("c", "Running", None),
        pod("b", "Pending", None),
        pod("z", "Pending", Some("s")),
        pod("a", "Running", None),
    ];
    assert_eq!(
        names(&select(pods.clone(), PodSelection::One, "s", "c")),
        ["z"]
    );
    assert_eq!(
        names(&select(pods.clone(), PodSelection::All, "s", "c")),
        ["z", "a", "c"]
    );
    assert_eq!(
        names(&select(pods, PodSelection::One, "other", "c")),
        ["a"],
        "another session's mark does not count"
    );
}

#[test]
fn a_target_seen_before_is_reported_as_deleted() {
    let target: Target = serde_yaml::from_str("{kind: Deployment, name: web}").unwrap();
    let Outcome::Missing { message } = missing(&target, "shop", None) else {
        panic!("not missing");
    };
    assert_eq!(message, "Deployment web not found in namespace shop");
    let seen = resolved(TargetKind::Deployment, "web", Some("u".to_owned()));
    let Outcome::Missing { message } = missing(&target, "shop", Some(&seen)) else {
        panic!("not missing");
    };
    assert_eq!(
        message,
        "Deployment web was deleted; the session waits for it to be created again"
    );
}
