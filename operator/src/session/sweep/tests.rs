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
