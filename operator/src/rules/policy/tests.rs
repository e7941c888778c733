use super::*;

fn defaults() -> Defaults {
    Defaults {
        default_image: "busybox".to_owned(),
        max_ttl: Duration::from_secs(24 * 3600),
        allowed_images: vec![],
        stopper: None,
        start_deadline: Duration::from_secs(300),
        namespaces: crate::rules::namespaces::Namespaces::new("shellcar-system", Vec::new()),
    }
}

fn policy(name: &str, yaml: &str) -> DebugPolicy {
    let mut p = DebugPolicy::new(name, serde_yaml::from_str(yaml).unwrap());
    p.metadata.name = Some(name.to_owned());
    p
}

fn ask(profile: Profile, image: &str) -> Ask {
    Ask {
        profile,
        mode: Resolved::Sidecar,
        image: image.to_owned(),
        ttl: Duration::from_secs(1800),
        secret_env: false,
        live_sessions: Some(0),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn admit_in(policies: &[DebugPolicy], ns: &[(&str, &str)], ask: &Ask) -> Result<Admitted, String> {
    let policies: Vec<Arc<DebugPolicy>> = policies.iter().cloned().map(Arc::new).collect();
    admit(&policies, "shop", &labels(ns), ask, &defaults()).map_err(|r| r.to_string())
}

#[test]
fn the_built_in_default_allows_the_ordinary_profiles_only() {
    for profile in DEFAULT_PROFILES {
        let admitted = admit_in(&[], &[], &ask(profile, "busybox")).unwrap();
        assert_eq!(admitted.policy, BUILT_IN_POLICY);
        assert_eq!(admitted.approval, None);
    }
    let refused = admit_in(&[], &[], &ask(Profile::SysAdmin, "busybox")).unwrap_err();
    assert!(
        refused.starts_with(
            "profile SysAdmin is not allowed by the built-in default policy (no DebugPolicy selects namespace shop"
        ),
        "{refused}"
    );
    assert!(admit_in(&[], &[], &ask(Profile::NetAdmin, "busybox")).is_err());
}

#[test]
fn a_selected_namespace_is_judged_by_its_policies_not_the_default() {
    let ops = policy(
        "ops",
        "{namespaceSelector: {matchLabels: {team: ops}}, profiles: [SysAdmin]}",
    );
    let admitted = admit_in(
        std::slice::from_ref(&ops),
        &[("team", "ops")],
        &ask(Profile::SysAdmin, "busybox"),
    )
    .unwrap();
    assert_eq!(admitted.policy, "ops");
    // General is not in its list, and the default no longer applies there.
    let refused = admit_in(
        std::slice::from_ref(&ops),
        &[("team", "ops")],
        &ask(Profile::General, "busybox"),
    )
    .unwrap_err();
    assert!(
        refused.starts_with("profile General is not allowed by policies [ops]"),
        "{refused}"
    );
    // Elsewhere the default judges.
    assert!(
        admit_in(
            &[ops],
            &[("team", "web")],
            &ask(Profile::SysAdmin, "busybox")
        )
        .is_err()
    );
}

#[test]
fn policies_add_up_and_refusals_group_policies_by_rule() {
    let prod = policy(
        "prod",
        "{namespaceSelector: {matchLabels: {env: prod}}, images: ['reg.example/tools/*']}",
    );
    let default = policy("default", "{images: ['busybox:*']}");
    let both = [prod.clone(), default.clone()];
    let env = [("env", "prod")];
    assert_eq!(
        admit_in(&both, &env, &ask(Profile::General, "busybox:1.36"))
            .unwrap()
            .policy,
        "default"
    );
    assert_eq!(
        admit_in(&both, &env, &ask(Profile::General, "reg.example/tools/sh"))
            .unwrap()
            .policy,
        "prod"
    );
    let refused = admit_in(&both, &env, &ask(Profile::SysAdmin, "evil/sh")).unwrap_err();
    assert!(
        refused.starts_with(
            "profile SysAdmin is not allowed by policies [default, prod]; image \"evil/sh\" is not allowed by policies [default, prod]"
        ),
        "{refused}"
    );
}

#[test]
fn globs_match_on_slash_boundaries() {
    let p = policy(
        "p",
        "{images: ['reg.example/tools/*', 'reg.example/team/**', 'busybox:1.3?']}",
    );
    let rules = Rules::compile(&p, &defaults()).unwrap();
    for (image, allowed) in [
        ("reg.example/tools/busybox:1.36", true),
        ("reg.example/tools/x/busybox", false),
        ("reg.example/toolsx/busybox", false),
        ("reg.example/team/a/b/c:1", true),
        ("reg.example/team", false),
        ("busybox:1.36", true),
        ("busybox:1.360", false),
        ("evil.io/reg.example/tools/x", false),
    ] {
        assert_eq!(rules.images.allows(image), allowed, "{image}");
    }
}

#[test]
fn a_bad_glob_is_malformed_and_fails_closed() {
    let bad = policy(
        "bad",
        "{namespaceSelector: {matchLabels: {env: prod}}, images: ['ok/*', 'reg/[abc']}",
    );
    let fault = Rules::compile(&bad, &defaults()).unwrap_err();
    assert_eq!(fault.reason(), "InvalidGlob");
    assert!(
        fault
            .to_string()
            .starts_with("images[1] \"reg/[abc\" is not a glob")
    );
    let refused = admit_in(
        std::slice::from_ref(&bad),
        &[("env", "prod")],
        &ask(Profile::General, "busybox"),
    )
    .unwrap_err();
    assert!(refused.contains("the policy is malformed"), "{refused}");
    assert!(refused.contains("by policies [bad]"), "{refused}");
    // Where its selector does not match, it changes nothing.
    assert!(admit_in(&[bad], &[], &ask(Profile::General, "busybox")).is_ok());
}

#[test]
fn digests_are_sha256_with_64_hex_digits() {
    let hex = "a".repeat(64);
    assert!(pinned(&format!("busybox@sha256:{hex}")));
    assert!(pinned(&format!("reg:5000/busybox:1.36@sha256:{hex}")));
    assert!(!pinned("busybox:1.36"));
    assert!(!pinned(&format!("busybox@sha256:{}", "a".repeat(63))));
    assert!(!pinned(&format!("busybox@sha256:{}", "g".repeat(64))));
    assert!(!pinned(&format!("@sha256:{hex}")));
    let p = policy("p", "{requireDigest: true}");
    let refused = admit_in(
        std::slice::from_ref(&p),
        &[],
        &ask(Profile::General, "busybox"),
    )
    .unwrap_err();
    assert!(refused.contains("is not pinned by digest"), "{refused}");
    assert!(
        admit_in(
            &[p],
            &[],
            &ask(Profile::General, &format!("busybox@sha256:{hex}"))
        )
        .is_ok()
    );
}

#[test]
fn modes_ttl_secret_env_and_session_limits() {
    let p = policy(
        "p",
        "{modes: [Ephemeral], maxTTL: 30m, maxSessionsPerNamespace: 2}",
    );
    let rules = Rules::compile(&p, &defaults()).unwrap();
    let mut a = ask(Profile::General, "busybox");
    assert_eq!(rules.violations(&a), [Violation::Mode(Mode::Sidecar)]);
    a.mode = Resolved::Ephemeral;
    assert!(rules.violations(&a).is_empty());
    a.ttl = Duration::from_secs(3600);
    a.secret_env = true;
    a.live_sessions = Some(2);
    assert_eq!(
        rules
            .violations(&a)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "ttl 1h is longer than the maxTTL 30m",
            "debugger env from Secrets is not allowed",
            "the namespace already has 2 live sessions, the maxSessionsPerNamespace",
        ]
    );
    // A running session is not counted against the limit.
    a.live_sessions = None;
    a.ttl = Duration::from_secs(60);
    a.secret_env = false;
    assert!(rules.violations(&a).is_empty());
}

#[test]
fn the_operator_flags_cap_and_fill_in_for_policies() {
    let mut d = defaults();
    d.max_ttl = Duration::from_secs(3600);
    d.allowed_images = vec!["reg.example".to_owned()];
    let p = policy("p", "{maxTTL: 10h}");
    let rules = Rules::compile(&p, &d).unwrap();
    assert_eq!(rules.max_ttl, Duration::from_secs(3600));
    assert!(rules.images.allows("reg.example/busybox"));
    assert!(!rules.images.allows("reg.example.evil.io/busybox"));
    let built_in = Rules::built_in(&d);
    assert!(!built_in.images.allows("busybox"));
}

#[test]
fn policies_without_approval_are_preferred() {
    let strict = policy("a-strict", "{approval: {required: true, deadline: 15m}}");
    let open = policy("b-open", "{}");
    let admitted = admit_in(
        &[strict.clone(), open],
        &[],
        &ask(Profile::General, "busybox"),
    )
    .unwrap();
    assert_eq!(admitted.policy, "b-open");
    assert_eq!(admitted.approval, None);
    let admitted = admit_in(&[strict], &[], &ask(Profile::General, "busybox")).unwrap();
    assert_eq!(admitted.approval, Some(Duration::from_secs(900)));
    let default_deadline = policy("c", "{approval: {required: true}}");
    let admitted = admit_in(&[default_deadline], &[], &ask(Profile::General, "busybox")).unwrap();
    assert_eq!(admitted.approval, Some(DEFAULT_APPROVAL_DEADLINE));
}

#[test]
fn match_expressions_select_namespaces() {
    let p = policy(
        "p",
        "{namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod, stage]}]}, profiles: [NetAdmin]}",
    );
    let a = ask(Profile::NetAdmin, "busybox");
    assert!(admit_in(std::slice::from_ref(&p), &[("env", "stage")], &a).is_ok());
    assert!(admit_in(&[p], &[("env", "dev")], &a).is_err());
}

#[test]
fn the_admitting_policy_names_the_access_model_and_the_default_lends_nothing() {
    let general = ask(Profile::General, "busybox");
    let built_in = admit_in(&[], &[], &general).unwrap();
    assert_eq!(built_in.access, Access::Direct);
    let unset = policy("plain", "{}");
    assert_eq!(
        admit_in(&[unset], &[], &general).unwrap().access,
        Access::Direct
    );
    let delegated = policy("prod", "{access: Delegated, approval: {required: true}}");
    let admitted = admit_in(&[delegated], &[], &general).unwrap();
    assert_eq!(admitted.access, Access::Delegated);
    assert!(admitted.approval.is_some());
    let either = policy("dev", "{access: Either}");
    assert_eq!(
        admit_in(&[either], &[], &general).unwrap().access,
        Access::Either
    );
}

fn approvers_in(
    policies: &[DebugPolicy],
    name: Option<&str>,
    ns: &[(&str, &str)],
) -> Result<Option<Approvers>, Unknown> {
    let policies: Vec<Arc<DebugPolicy>> = policies.iter().cloned().map(Arc::new).collect();
    approvers(&policies, name, "shop", &labels(ns), &defaults())
}

#[test]
fn the_approvers_are_those_of_the_policy_that_holds_the_session_now() {
    let prod = policy(
        "prod",
        "{namespaceSelector: {matchLabels: {env: prod}}, approval: {required: true, approvers: {users: [ana], groups: [oncall]}}}",
    );
    let open = policy("open", "{approval: {required: true}}");
    let both = [prod.clone(), open];
    let prod_ns = [("env", "prod")];
    assert_eq!(
        approvers_in(&both, Some("prod"), &prod_ns).unwrap(),
        Some(Approvers {
            users: vec!["ana".to_owned()],
            groups: vec!["oncall".to_owned()],
        })
    );
    assert_eq!(approvers_in(&both, Some("open"), &prod_ns).unwrap(), None);
    assert_eq!(
        approvers_in(&both, Some(BUILT_IN_POLICY), &[]).unwrap(),
        None
    );
    assert_eq!(approvers_in(&both, None, &prod_ns), Err(Unknown::Unjudged));
    assert_eq!(
        approvers_in(&both, Some("gone"), &prod_ns),
        Err(Unknown::Gone("gone".to_owned()))
    );
    let relabelled = approvers_in(&both, Some("prod"), &[("env", "dev")]).unwrap_err();
    assert_eq!(
        relabelled.to_string(),
        "DebugPolicy prod, which holds the session for approval (status.policy), no longer selects namespace shop: wait until the operator has judged the session again"
    );
}

#[test]
fn approvers_that_name_nobody_make_the_policy_malformed() {
    for empty in ["{}", "{users: []}", "{users: [], groups: []}"] {
        let p = policy(
            "prod",
            &format!("{{approval: {{required: true, approvers: {empty}}}}}"),
        );
        let fault = Rules::compile(&p, &defaults()).unwrap_err();
        assert_eq!(fault.reason(), "InvalidApprovers", "{empty}");
        assert!(matches!(
            approvers_in(std::slice::from_ref(&p), Some("prod"), &[]),
            Err(Unknown::Malformed { .. })
        ));
        // And, like any malformed policy, it admits nothing where it selects.
        assert!(
            admit_in(&[p], &[], &ask(Profile::General, "busybox"))
                .unwrap_err()
                .contains("approval.approvers names no user and no group"),
        );
    }
}
