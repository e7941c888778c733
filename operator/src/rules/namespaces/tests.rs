use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::crd::DebugPolicy;

fn policy(name: &str, selector: serde_json::Value) -> Arc<DebugPolicy> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "apiVersion": "debug.shellcar.dev/v1alpha1",
            "kind": "DebugPolicy",
            "metadata": {"name": name},
            "spec": {"namespaceSelector": selector},
        }))
        .unwrap(),
    )
}

/// The labels the API server gives namespace `ns`.
fn labels(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_owned(), ns.to_owned())])
}

fn names_of(policies: &[Arc<DebugPolicy>]) -> Vec<String> {
    policies
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

fn namespaces() -> Namespaces {
    Namespaces::new("shellcar-system", Vec::new())
}

#[test]
fn kube_system_and_the_operators_namespace_are_protected() {
    let ns = namespaces();
    assert!(ns.is_protected("kube-system"));
    assert!(ns.is_protected("shellcar-system"));
    assert!(!ns.is_protected("shop"));
    assert!(!ns.is_protected("kube-public"));
    assert!(Namespaces::new("ops", Vec::new()).is_protected("ops"));
}

#[test]
fn a_policy_that_selects_everything_lifts_nothing() {
    let everything = [
        policy("empty", serde_json::json!({})),
        policy(
            "other-label",
            serde_json::json!({"matchLabels": {"team": "ops"}}),
        ),
        policy(
            "not-in",
            serde_json::json!({"matchExpressions": [
                {"key": NAME_LABEL, "operator": "NotIn", "values": ["shop"]}
            ]}),
        ),
        policy(
            "exists",
            serde_json::json!({"matchExpressions": [{"key": NAME_LABEL, "operator": "Exists"}]}),
        ),
    ];
    for ns in ["kube-system", "shellcar-system"] {
        let refused = namespaces()
            .governing(ns, &labels(ns), &everything)
            .unwrap_err();
        assert_eq!(refused.reason(), "NamespaceProtected");
        let message = refused.to_string();
        assert!(
            message.starts_with(&format!("namespace {ns} is protected")),
            "{message}"
        );
        assert!(
            message.contains(&format!(
                "matchLabels {{kubernetes.io/metadata.name: {ns}}}"
            )),
            "{message}"
        );
    }
    // Elsewhere every policy governs.
    let governing = namespaces()
        .governing("shop", &labels("shop"), &everything)
        .unwrap();
    assert_eq!(governing.len(), everything.len());
}

#[test]
fn only_policies_that_name_a_protected_namespace_govern_it() {
    let policies = [
        policy("everything", serde_json::json!({})),
        policy(
            "by-label",
            serde_json::json!({"matchLabels": {NAME_LABEL: "kube-system"}}),
        ),
        policy(
            "by-expression",
            serde_json::json!({"matchExpressions": [
                {"key": NAME_LABEL, "operator": "In", "values": ["shop", "kube-system"]}
            ]}),
        ),
        policy(
            "other-namespace",
            serde_json::json!({"matchLabels": {NAME_LABEL: "shellcar-system"}}),
        ),
        // Names it, but also wants a label kube-system lacks: it does not select it.
        policy(
            "names-but-does-not-select",
            serde_json::json!({"matchLabels": {NAME_LABEL: "kube-system", "env": "prod"}}),
        ),
    ];
    let governing = namespaces()
        .governing("kube-system", &labels("kube-system"), &policies)
        .unwrap();
    assert_eq!(names_of(&governing), ["by-label", "by-expression"]);

    // A policy that names it but selects nothing there leaves it protected.
    let refused = namespaces().governing("kube-system", &labels("kube-system"), &policies[4..]);
    assert_eq!(
        refused.unwrap_err().reason(),
        "NamespaceProtected",
        "the built-in default never applies in a protected namespace"
    );
}

#[test]
fn a_malformed_policy_that_names_the_namespace_governs_it_and_fails_closed() {
    // Its selector cannot be read: it counts, so that the policy's judgment refuses the
    // session as malformed instead of some other policy admitting it.
    let malformed = policy(
        "bad",
        serde_json::json!({"matchExpressions": [
            {"key": NAME_LABEL, "operator": "In", "values": ["kube-system"]},
            {"key": "env", "operator": "Sometimes", "values": ["x"]}
        ]}),
    );
    let governing = namespaces()
        .governing("kube-system", &labels("kube-system"), &[malformed])
        .unwrap();
    assert_eq!(names_of(&governing), ["bad"]);
}

#[test]
fn every_namespace_is_watched_unless_some_are_listed() {
    assert_eq!(namespaces().watches("anywhere"), Ok(()));
    let listed = Namespaces::new(
        "shellcar-system",
        vec![
            "team-b".to_owned(),
            " shop".to_owned(),
            String::new(),
            "shop".to_owned(),
        ],
    );
    assert_eq!(listed.watched(), ["shop", "team-b"]);
    assert_eq!(listed.watches("shop"), Ok(()));
    let refused = listed.watches("default").unwrap_err();
    assert_eq!(refused.reason(), "NamespaceNotWatched");
    assert_eq!(
        refused.to_string(),
        "this shellcar watches only namespaces shop, team-b (--watch-namespaces), so nothing would act on a session in namespace default; create it in one of those"
    );
}
