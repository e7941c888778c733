use super::*;

fn found(namespace: &str, name: &str, session: &str) -> Found {
    Found {
        namespace: namespace.to_owned(),
        kind: TargetKind::Deployment,
        name: name.to_owned(),
        uid: Some(format!("uid-{name}")),
        manager: naming::field_manager(session),
    }
}

fn session(namespace: &str, name: &str) -> DebugSession {
    let mut s = DebugSession::new(
        name,
        serde_json::from_value(
            serde_json::json!({"target": {"kind": "Deployment", "name": "web"}}),
        )
        .unwrap(),
    );
    s.metadata.namespace = Some(namespace.to_owned());
    s
}

#[test]
fn a_manager_without_its_session_in_that_namespace_is_an_orphan() {
    let long = "s".repeat(200);
    let sessions = [session("shop", "live"), session("shop", &long)];
    let all = vec![
        found("shop", "web", "live"),
        found("shop", "api", "gone"),
        // A session of that name elsewhere does not count.
        found("staging", "web", "live"),
        // Long names are hashed into their manager, and still match.
        found("shop", "db", &long),
    ];
    assert_eq!(
        orphans(all, sessions.iter()),
        vec![
            found("shop", "api", "gone"),
            found("staging", "web", "live")
        ]
    );
}

fn debugged_pod(namespace: &str, name: &str, marks: &[(&str, &str)], ephemeral: &[&str]) -> Pod {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [{"name": "nginx"}],
            "ephemeralContainers": ephemeral.iter().map(|c| serde_json::json!({"name": c})).collect::<Vec<_>>(),
        },
    }))
    .unwrap();
    pod.metadata.annotations = Some(
        marks
            .iter()
            .map(|(container, session)| {
                (naming::session_annotation(container), (*session).to_owned())
            })
            .collect(),
    );
    pod
}

#[test]
fn an_ephemeral_debugger_without_its_session_is_an_orphan() {
    let (live, gone) = (
        naming::container_name("live"),
        naming::container_name("gone"),
    );
    let sessions = [session("shop", "live")];
    let pods = [
        // Both marked and present: only the one whose session is gone.
        debugged_pod(
            "shop",
            "a",
            &[(&live, "live"), (&gone, "gone")],
            &[&live, &gone],
        ),
        // A Sidecar pod: the debugger is a regular container, swept with the template.
        debugged_pod("shop", "b", &[(&gone, "gone")], &[]),
        // A mark that does not name that session's debugger is nobody's.
        debugged_pod("shop", "c", &[("nginx", "gone")], &["nginx"]),
        // The same session name in another namespace is another session.
        debugged_pod("staging", "d", &[(&live, "live")], &[&live]),
    ];
    let marked = |namespace: &str, pod: &str, session: &str, container: &str| Marked {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        session: session.to_owned(),
        container: container.to_owned(),
    };
    assert_eq!(
        ephemeral_orphans(pods.iter(), sessions.iter()),
        vec![
            marked("shop", "a", "gone", &gone),
            marked("staging", "d", "live", &live)
        ]
    );
}
