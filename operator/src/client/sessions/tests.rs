use super::*;

fn session(yaml: &str) -> DebugSession {
    serde_yaml::from_str(yaml).unwrap()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn extend_adds_to_the_current_ttl() {
    let min = |m: u64| Duration::from_secs(m * 60);
    assert_eq!(extended("30m", min(30)).unwrap(), "1h");
    assert_eq!(extended("1h", min(15)).unwrap(), "1h15m");
    assert_eq!(extended("1h30m", min(90)).unwrap(), "3h");
    assert_eq!(extended("45s", Duration::from_secs(30)).unwrap(), "1m15s");
    assert_eq!(extended("23h", min(120)).unwrap(), "25h");
    assert!(matches!(
        extended("forever", min(1)),
        Err(TtlError::Malformed { .. })
    ));
}

#[test]
fn expiry_reads_relative_to_now() {
    let now = at("2026-11-24T10:00:00Z");
    assert_eq!(relative(now, at("2026-11-24T10:29:00Z")), "in 29m");
    assert_eq!(relative(now, at("2026-11-24T10:00:45Z")), "in 45s");
    assert_eq!(relative(now, at("2026-11-24T12:05:30Z")), "in 2h5m");
    assert_eq!(relative(now, at("2026-11-24T11:00:00Z")), "in 1h");
    assert_eq!(relative(now, at("2026-11-26T13:00:00Z")), "in 2d3h");
    assert_eq!(relative(now, at("2026-11-24T09:57:00Z")), "3m ago");
}

#[test]
fn the_table_has_a_row_per_session_and_namespaces_on_request() {
    let now = at("2026-11-24T10:00:00Z");
    let sessions = [
        session(
            r#"
metadata: {name: web-debug-x2k9p, namespace: shop}
spec:
  target: {kind: Deployment, name: web}
  requester: {username: "system:serviceaccount:shop:dev"}
status: {phase: Active, mode: Sidecar, expiresAt: "2026-11-24T10:29:00Z"}
"#,
        ),
        session(
            r#"
metadata: {name: db, namespace: data}
spec: {target: {kind: StatefulSet, name: db-main}, mode: Copy}
"#,
        ),
    ];
    let text = table(&sessions, false, now);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "NAME              TARGET        MODE      PHASE    REQUESTER                        EXPIRES",
            "web-debug-x2k9p   deploy/web    Sidecar   Active   system:serviceaccount:shop:dev   in 29m",
            "db                sts/db-main   Copy      -        -                                -",
        ],
        "{text}"
    );
    let all = table(&sessions, true, now);
    let lines: Vec<&str> = all.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE   NAME "), "{all}");
    assert!(
        lines[1].starts_with("shop        web-debug-x2k9p "),
        "{all}"
    );
    assert!(lines[2].starts_with("data        db "), "{all}");
}

#[test]
fn ended_names_the_target_and_what_was_left() {
    let s = session(
        r#"
metadata: {name: p-debug, namespace: shop}
spec: {target: {kind: Pod, name: p}}
status: {phase: Ended, leftovers: ["stopped ephemeral container shellcar-p-debug-1 in pod p"]}
"#,
    );
    assert_eq!(
        ended(&s),
        "DebugSession p-debug ended: its debugger is removed from pod/p\n  left behind: \
             stopped ephemeral container shellcar-p-debug-1 in pod p"
    );
}
