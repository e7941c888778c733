use super::*;
use kube::CustomResourceExt;

#[test]
fn minimal_session_gets_defaults() {
    let spec: DebugSessionSpec =
        serde_yaml::from_str("target: {kind: Deployment, name: web}").unwrap();
    assert_eq!(spec.mode, Mode::Auto);
    assert_eq!(spec.debugger.profile, Profile::General);
    assert_eq!(spec.ttl, "1h");
    assert_eq!(spec.target.container, None);
}

#[test]
fn unknown_kind_is_rejected_by_the_schema() {
    let crd = serde_json::to_value(DebugSession::crd()).unwrap();
    let kinds = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["target"]["properties"]["kind"]["enum"];
    let kinds: Vec<&str> = kinds
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Pod"
        ]
    );
}

#[test]
fn status_lists_are_maps_keyed_for_server_side_apply() {
    let crd = serde_json::to_value(DebugSession::crd()).unwrap();
    let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        status["conditions"]["x-kubernetes-list-map-keys"][0],
        "type"
    );
    assert_eq!(status["pods"]["x-kubernetes-list-map-keys"][0], "name");
}

#[test]
fn debugger_lists_are_bounded_and_requester_is_a_column() {
    let crd = serde_json::to_value(DebugSession::crd()).unwrap();
    let version = &crd["spec"]["versions"][0];
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let debugger = &spec["debugger"]["properties"];
    for list in ["command", "args"] {
        assert_eq!(debugger[list]["maxItems"], 64, "{list}");
        assert_eq!(debugger[list]["items"]["maxLength"], 4096, "{list}");
    }
    assert_eq!(debugger["env"]["maxItems"], 64);
    assert_eq!(spec["requester"]["required"][0], "username");
    let columns = version["additionalPrinterColumns"].as_array().unwrap();
    assert!(
        columns
            .iter()
            .any(|c| c["name"] == "Requester" && c["jsonPath"] == ".spec.requester.username")
    );
}
