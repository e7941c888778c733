use super::*;

fn target(s: &str) -> Result<TargetRef, TargetError> {
    s.parse()
}

#[test]
fn targets_read_as_kubectl_writes_them() {
    let cases = [
        ("deploy/web", TargetKind::Deployment, "web"),
        ("deployment/web", TargetKind::Deployment, "web"),
        ("deployments/web", TargetKind::Deployment, "web"),
        ("deployment.apps/web", TargetKind::Deployment, "web"),
        ("Deployment/web", TargetKind::Deployment, "web"),
        ("sts/db", TargetKind::StatefulSet, "db"),
        ("statefulset.apps/db", TargetKind::StatefulSet, "db"),
        ("ds/agent", TargetKind::DaemonSet, "agent"),
        ("daemonsets/agent", TargetKind::DaemonSet, "agent"),
        ("rs/x", TargetKind::ReplicaSet, "x"),
        ("replicaset/x", TargetKind::ReplicaSet, "x"),
        ("pod/x", TargetKind::Pod, "x"),
        ("po/x", TargetKind::Pod, "x"),
        ("pods/x", TargetKind::Pod, "x"),
        ("web-7d4b9c-abcde", TargetKind::Pod, "web-7d4b9c-abcde"),
    ];
    for (input, kind, name) in cases {
        assert_eq!(
            target(input),
            Ok(TargetRef {
                kind,
                name: name.to_owned()
            }),
            "{input}"
        );
    }
}

#[test]
fn unknown_kinds_and_missing_names_are_refused_with_the_accepted_kinds() {
    let err = target("svc/web").unwrap_err();
    assert_eq!(
        err,
        TargetError::UnknownKind {
            kind: "svc".to_owned()
        }
    );
    let text = err.to_string();
    for kind in ["deploy", "sts", "ds", "rs", "pod"] {
        assert!(text.contains(kind), "{text}");
    }
    // A workload kind under the wrong group, and a pod under a group, are not theirs.
    assert!(target("deployment.batch/web").is_err());
    assert!(target("pod.apps/x").is_err());
    assert!(target("cronjob/nightly").is_err());
    for bad in ["", "deploy/", "deploy/a/b"] {
        assert!(
            matches!(target(bad), Err(TargetError::NoName(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn targets_print_in_the_short_form() {
    assert_eq!(
        target("deployment.apps/web").unwrap().to_string(),
        "deploy/web"
    );
    assert_eq!(target("statefulsets/db").unwrap().to_string(), "sts/db");
    assert_eq!(target("x").unwrap().to_string(), "pod/x");
}
