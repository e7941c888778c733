use super::*;

const OPERATOR: &str = "system:serviceaccount:shellcar-system:shellcar-controller";

fn wanted() -> Wanted {
    Wanted {
        ca_bundle: Some("PEM".to_owned()),
        exempt: Some(OPERATOR.to_owned()),
    }
}

fn exempting(username: &str) -> Vec<MatchCondition> {
    vec![MatchCondition {
        name: EXEMPTION.to_owned(),
        expression: exemption(username),
    }]
}

fn right(name: &str) -> Seen {
    Seen {
        name: name.to_owned(),
        ca_bundle: Some(b"PEM".to_vec()),
        match_conditions: exempting(OPERATOR),
    }
}

#[test]
fn configurations_that_are_right_are_left_alone() {
    assert_eq!(repair(&[right("a"), right("b")], &wanted()), None);
    // Other match conditions of the admin's stay, and do not count as missing ours.
    let mut more = right("a");
    more.match_conditions.push(MatchCondition {
        name: "skip-kube-system".to_owned(),
        expression: "request.namespace != 'kube-system'".to_owned(),
    });
    assert_eq!(repair(&[more], &wanted()), None);
}

#[test]
fn a_missing_or_stale_ca_bundle_is_put_back_in_each_webhook_that_lacks_it() {
    let mut restored = right("a");
    restored.ca_bundle = None;
    let mut stale = right("b");
    stale.ca_bundle = Some(b"OLD".to_vec());
    assert_eq!(
        repair(&[restored, right("c"), stale], &wanted()),
        Some(json!({"webhooks": [
            {"name": "a", "clientConfig": {"caBundle": "UEVN"}},
            {"name": "b", "clientConfig": {"caBundle": "UEVN"}},
        ]}))
    );
}

#[test]
fn the_exemption_names_the_operators_own_service_account() {
    let mut other_namespace = right("a");
    other_namespace.match_conditions =
        exempting("system:serviceaccount:shellcar-system:someone-else");
    let mut none = right("b");
    none.match_conditions.clear();
    assert_eq!(
        repair(&[other_namespace, none], &wanted()),
        Some(json!({"webhooks": [
            {"name": "a", "matchConditions": [{"name": EXEMPTION, "expression": exemption(OPERATOR)}]},
            {"name": "b", "matchConditions": [{"name": EXEMPTION, "expression": exemption(OPERATOR)}]},
        ]}))
    );
    assert_eq!(
        exemption(OPERATOR),
        "request.userInfo.username != 'system:serviceaccount:shellcar-system:shellcar-controller'"
    );
}

#[test]
fn with_cert_manager_or_outside_a_cluster_only_what_is_ours_is_kept() {
    let mut foreign = right("a");
    foreign.ca_bundle = Some(b"CERT-MANAGER".to_vec());
    foreign.match_conditions.clear();
    let cert_manager = Wanted {
        ca_bundle: None,
        exempt: Some(OPERATOR.to_owned()),
    };
    assert_eq!(
        repair(std::slice::from_ref(&foreign), &cert_manager),
        Some(json!({"webhooks": [
            {"name": "a", "matchConditions": [{"name": EXEMPTION, "expression": exemption(OPERATOR)}]},
        ]}))
    );
    assert_eq!(repair(&[foreign], &Wanted::default()), None);
}
