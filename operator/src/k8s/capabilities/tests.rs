use super::*;

fn core(names: &[&str]) -> APIResourceList {
    serde_json::from_value(serde_json::json!({
        "groupVersion": "v1",
        "resources": names.iter().map(|n| serde_json::json!({
            "name": n, "kind": "Pod", "namespaced": true, "singularName": "", "verbs": []
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[test]
fn ephemeral_containers_are_there_where_discovery_lists_them() {
    let served = core(&["pods", "pods/ephemeralcontainers"]);
    assert!(Capabilities::from_discovery(&served).ephemeral_containers);
    assert!(!Capabilities::from_discovery(&core(&["pods"])).ephemeral_containers);
}
