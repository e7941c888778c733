//! `config/` must render with kustomize into what the operator needs to run.
#![allow(clippy::unwrap_used)] // a test crate: a failed unwrap is a failed test

use std::process::Command;

/// Names the kubectl that renders `config/`: the one the project builds from source,
/// so that every machine renders with the same kustomize. Never one found on PATH.
const KUBECTL_ENV: &str = "SHELLCAR_KUBECTL";

fn kustomize(dir: &str) -> String {
    let kubectl = std::env::var(KUBECTL_ENV).unwrap_or_else(|_| {
        panic!(
            "{KUBECTL_ENV} is not set: run these tests through `make unit`, which builds kubectl \
             and sets it, or set {KUBECTL_ENV} to a kubectl binary"
        )
    });
    let path = format!("{}/../{dir}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&kubectl)
        .args(["kustomize", &path])
        .output()
        .unwrap_or_else(|e| panic!("running `{kubectl} kustomize` ({KUBECTL_ENV}): {e}"));
    assert!(
        out.status.success(),
        "`kubectl kustomize {dir}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// The operator's own ClusterRole (the others are for users and approvers).
fn controller_role(docs: &[serde_yaml::Value]) -> &serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "shellcar-controller")
        .unwrap_or_else(|| panic!("no ClusterRole shellcar-controller rendered"))
}

#[test]
fn default_renders_crd_rbac_and_a_hardened_controller() {
    let docs = documents(&kustomize("config/default"));
    let mut crds: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    crds.sort();
    assert_eq!(
        crds,
        [
            "debugpolicies.debug.shellcar.dev",
            "debugsessions.debug.shellcar.dev"
        ]
    );

    let deploy = find(&docs, "Deployment");
    assert_eq!(deploy["metadata"]["namespace"], "shellcar-system");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "shellcar-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let manager = &pod["containers"][0];
    assert_eq!(manager["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(manager["livenessProbe"]["httpGet"]["port"], "health");
    assert_eq!(manager["readinessProbe"]["httpGet"]["path"], "/readyz");

    let binding = find(&docs, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "shellcar-controller");
    assert_eq!(binding["subjects"][0]["namespace"], "shellcar-system");
    let role = controller_role(&docs);
    let rules = role["rules"].as_sequence().unwrap();
    assert!(
        rules.iter().all(|r| r["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .all(|v| v != "*" && v != "deletecollection" && v != "escalate" && v != "bind")),
        "the ClusterRole must stay least-privilege: {rules:?}"
    );
}

#[test]
fn the_webhook_fails_closed_for_sessions_only_and_its_rbac_names_it() {
    let docs = documents(&kustomize("config/default"));
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("the webhook's Service");
    let mut names = Vec::new();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = find(&docs, kind);
        names.push(config["metadata"]["name"].as_str().unwrap().to_owned());
        for hook in config["webhooks"].as_sequence().unwrap() {
            assert_eq!(hook["failurePolicy"], "Fail", "{kind}");
            assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 10, "{kind}");
            assert_eq!(
                hook["clientConfig"]["service"]["name"],
                service["metadata"]["name"]
            );
            assert_eq!(
                hook["clientConfig"]["service"]["namespace"],
                "shellcar-system"
            );
            let rules = hook["rules"].as_sequence().unwrap();
            assert_eq!(rules.len(), 1);
            assert_eq!(
                rules[0]["resources"],
                serde_yaml::to_value(["debugsessions"]).unwrap()
            );
            assert_eq!(
                rules[0]["operations"],
                serde_yaml::to_value(["CREATE", "UPDATE"]).unwrap()
            );
            // The operator's own requests never wait for its webhook.
            let account = find(&docs, "ServiceAccount");
            let operator = format!(
                "system:serviceaccount:{}:{}",
                account["metadata"]["namespace"].as_str().unwrap(),
                account["metadata"]["name"].as_str().unwrap()
            );
            assert_eq!(
                hook["matchConditions"],
                serde_yaml::to_value([serde_json::json!({
                    "name": "not-the-operator",
                    "expression": format!("request.userInfo.username != '{operator}'"),
                })])
                .unwrap(),
                "{kind}"
            );
        }
    }
    // The operator may patch exactly these two configurations, by name.
    let role = controller_role(&docs);
    let rule = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["apiGroups"][0] == "admissionregistration.k8s.io")
        .expect("a rule for the webhook configurations");
    let allowed: Vec<&str> = rule["resourceNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(allowed, names);
    // Secrets only through a Role in the operator's own namespace.
    assert!(role["rules"].as_sequence().unwrap().iter().all(|r| {
        r["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .all(|res| res != "secrets")
    }));
    let secrets = find(&docs, "Role");
    assert_eq!(secrets["metadata"]["namespace"], "shellcar-system");
}

#[test]
fn samples_render_a_deployment_and_its_session() {
    let docs = documents(&kustomize("config/samples"));
    let session = find(&docs, "DebugSession");
    assert_eq!(session["spec"]["target"]["name"], "web");
    let web = find(&docs, "Deployment");
    assert_eq!(web["metadata"]["name"], "web");
}

#[test]
fn certmanager_issues_the_secret_the_operator_reads_and_injects_the_ca() {
    let docs = documents(&kustomize("config/certmanager"));
    let certificate = find(&docs, "Certificate");
    assert_eq!(certificate["spec"]["secretName"], "shellcar-webhook-tls");
    assert_eq!(
        certificate["spec"]["dnsNames"][0],
        "shellcar-webhook.shellcar-system.svc"
    );
    let source = format!(
        "{}/{}",
        certificate["metadata"]["namespace"].as_str().unwrap(),
        certificate["metadata"]["name"].as_str().unwrap()
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = find(&docs, kind);
        assert_eq!(
            config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            source.as_str()
        );
    }
    let deploy = find(&docs, "Deployment");
    let args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .unwrap();
    assert!(
        args.iter().any(|a| a == "--external-certificate"),
        "{args:?}"
    );
}

/// `shellcar-debugger` lends the operator's power through the verb `debug`, so it grants
/// that verb on the targets a session can have and nothing else, and no built-in role
/// aggregates it: it is bound on purpose.
#[test]
fn the_debugger_role_grants_only_debug_and_aggregates_nowhere() {
    let docs = documents(&kustomize("config/default"));
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "shellcar-debugger")
        .unwrap_or_else(|| panic!("no ClusterRole shellcar-debugger rendered"));
    let labels = role["metadata"]["labels"].as_mapping();
    let aggregated: Vec<_> = labels
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
        .collect();
    assert!(aggregated.is_empty(), "aggregated into {aggregated:?}");
    assert!(role["aggregationRule"].is_null(), "{role:?}");

    let mut granted = Vec::new();
    for rule in role["rules"].as_sequence().unwrap() {
        assert_eq!(
            rule["verbs"],
            serde_yaml::to_value(["debug"]).unwrap(),
            "{rule:?}"
        );
        assert!(rule["resourceNames"].is_null(), "{rule:?}");
        for group in rule["apiGroups"].as_sequence().unwrap() {
            for resource in rule["resources"].as_sequence().unwrap() {
                let (resource, group) = (resource.as_str().unwrap(), group.as_str().unwrap());
                granted.push(if group.is_empty() {
                    resource.to_owned()
                } else {
                    format!("{resource}.{group}")
                });
            }
        }
    }
    granted.sort();
    assert_eq!(
        granted,
        [
            "daemonsets.apps",
            "deployments.apps",
            "pods",
            "replicasets.apps",
            "statefulsets.apps"
        ]
    );
}

#[test]
fn the_admission_policy_is_bound_and_guards_what_the_operator_relies_on() {
    let docs = documents(&kustomize("config/default"));
    let policy = find(&docs, "ValidatingAdmissionPolicy");
    let binding = find(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_yaml::to_value(["Deny"]).unwrap()
    );
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let rules = &policy["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(
        rules["resources"],
        serde_yaml::to_value(["debugsessions"]).unwrap()
    );
    // The finalizer it guards is the one the operator sets.
    assert_eq!(
        policy["spec"]["variables"][0]["expression"],
        format!("'{}'", shellcar::naming::FINALIZER)
    );
    // Only holders of `finalize` remove it, and the operator is one.
    let role = controller_role(&docs);
    let sessions = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["resources"][0] == "debugsessions")
        .expect("a rule for debugsessions");
    assert!(
        sessions["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v == "finalize"),
        "{sessions:?}"
    );
    // Acting on others' sessions takes `manage`, which only `admin` aggregates.
    let manager = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "shellcar-manager")
        .expect("ClusterRole shellcar-manager");
    let labels = manager["metadata"]["labels"].as_mapping().unwrap();
    let aggregated: Vec<&str> = labels
        .iter()
        .filter(|(k, v)| {
            k.as_str()
                .unwrap()
                .starts_with("rbac.authorization.k8s.io/aggregate-to-")
                && *v == "true"
        })
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    assert_eq!(aggregated, ["rbac.authorization.k8s.io/aggregate-to-admin"]);
    assert_eq!(
        manager["rules"][0]["verbs"],
        serde_yaml::to_value(["manage"]).unwrap()
    );
}

/// The RBAC rules of `role`, each as it is written.
fn rules(role: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    role["rules"].as_sequence().unwrap().clone()
}

/// Whether `rule` is about a cluster-scoped resource (or names which objects it covers).
fn cluster_scoped(rule: &serde_yaml::Value) -> bool {
    let resources = rule["resources"].as_sequence().unwrap();
    resources.iter().any(|r| {
        [
            "debugpolicies",
            "debugpolicies/status",
            "namespaces",
            "subjectaccessreviews",
            "mutatingwebhookconfigurations",
        ]
        .contains(&r.as_str().unwrap())
    })
}

#[test]
fn namespaced_grants_by_role_what_default_grants_by_cluster_role() {
    let default = documents(&kustomize("config/default"));
    let docs = documents(&kustomize("config/namespaced"));
    let everything = rules(controller_role(&default));
    let trimmed = rules(controller_role(&docs));

    // The Deployment watches exactly the namespaces the Roles and the ClusterRole name.
    let deploy = find(&docs, "Deployment");
    let env = deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap();
    let watched = env
        .iter()
        .find(|e| e["name"] == "SHELLCAR_WATCH_NAMESPACES")
        .expect("SHELLCAR_WATCH_NAMESPACES on the manager");
    let mut watched: Vec<&str> = watched["value"].as_str().unwrap().split(',').collect();
    watched.sort();
    assert!(!watched.is_empty());

    // Each watched namespace has the namespaced rules of config/default, bound to the
    // operator's ServiceAccount.
    let namespaced: Vec<serde_yaml::Value> = everything
        .iter()
        .filter(|r| !cluster_scoped(r))
        .cloned()
        .collect();
    let mut granted: Vec<&str> = Vec::new();
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "shellcar-controller")
    {
        let ns = role["metadata"]["namespace"].as_str().unwrap();
        granted.push(ns);
        assert_eq!(rules(role), namespaced, "the Role in {ns}");
        let binding = docs
            .iter()
            .find(|d| {
                d["kind"] == "RoleBinding"
                    && d["metadata"]["namespace"] == ns
                    && d["roleRef"]["name"] == "shellcar-controller"
            })
            .unwrap_or_else(|| panic!("no RoleBinding of the Role in {ns}"));
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["subjects"][0]["name"], "shellcar-controller");
        assert_eq!(binding["subjects"][0]["namespace"], "shellcar-system");
    }
    granted.sort();
    assert_eq!(granted, watched);

    // The ClusterRole keeps only the cluster-scoped rules, Namespaces by name.
    assert!(trimmed.iter().all(cluster_scoped), "{trimmed:?}");
    for rule in &trimmed {
        if rule["resources"][0] == "namespaces" {
            let mut names: Vec<&str> = rule["resourceNames"]
                .as_sequence()
                .expect("Namespaces only by name")
                .iter()
                .map(|n| n.as_str().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, watched);
        } else {
            assert!(everything.contains(rule), "not in config/default: {rule:?}");
        }
    }
    assert_eq!(
        trimmed.len(),
        everything.iter().filter(|r| cluster_scoped(r)).count()
    );
}

/// Whether IPv4 `cidr` (a.b.c.d/n) holds `ip`.
fn cidr_holds(cidr: &str, ip: std::net::Ipv4Addr) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap();
    let net: std::net::Ipv4Addr = net.parse().unwrap();
    let bits: u32 = bits.parse().unwrap();
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(net) & mask == u32::from(ip) & mask
}

/// The webhook's rule of the operator's NetworkPolicy rendered from `dir`: its CIDRs.
fn webhook_cidrs(dir: &str) -> Vec<String> {
    let docs = documents(&kustomize(dir));
    let policy = find(&docs, "NetworkPolicy");
    let rules = policy["spec"]["ingress"].as_sequence().unwrap();
    let webhook: Vec<&serde_yaml::Value> = rules
        .iter()
        .filter(|r| {
            r["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| p["port"] == 9443)
        })
        .collect();
    assert_eq!(webhook.len(), 1, "one rule for the webhook's port");
    webhook[0]["from"]
        .as_sequence()
        .unwrap_or_else(|| panic!("the webhook's port is open to everyone"))
        .iter()
        .map(|peer| {
            let keys: Vec<&str> = peer
                .as_mapping()
                .unwrap()
                .keys()
                .map(|k| k.as_str().unwrap())
                .collect();
            assert_eq!(keys, ["ipBlock"], "only the API server's addresses");
            peer["ipBlock"]["cidr"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn the_network_policy_admits_the_webhook_port_from_the_api_server_only() {
    let docs = documents(&kustomize("config/default"));
    let policy = find(&docs, "NetworkPolicy");
    assert_eq!(policy["metadata"]["namespace"], "shellcar-system");
    let deploy = find(&docs, "Deployment");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deploy["spec"]["template"]["metadata"]["labels"],
        "the policy selects the operator's pods"
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_yaml::to_value(["Ingress"]).unwrap()
    );
    // Metrics and health stay open, as before the policy: no `from`.
    let open: Vec<u64> = policy["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| r.get("from").is_none())
        .flat_map(|r| r["ports"].as_sequence().unwrap().iter())
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(open, [8080, 8081]);
    // As shipped, a placeholder that admits no real address (RFC 5737), to be set.
    assert_eq!(webhook_cidrs("config/default"), ["192.0.2.0/24"]);

    // The local test cluster's: where its API server reaches the pods from, and no pod.
    let local = webhook_cidrs("e2e/overlay");
    let admitted = |ip: [u8; 4]| local.iter().any(|c| cidr_holds(c, ip.into()));
    for api_server in [
        [10, 87, 0, 1],
        [10, 87, 0, 2],
        [10, 87, 2, 1],
        [10, 88, 0, 1],
    ] {
        assert!(
            admitted(api_server),
            "{api_server:?} is not admitted: {local:?}"
        );
    }
    for pod in [[10, 88, 0, 7], [10, 88, 1, 7]] {
        assert!(!admitted(pod), "pod address {pod:?} is admitted: {local:?}");
    }
}
