use std::time::Duration;

use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::json;

use super::*;
use crate::mock_api;

fn pod(name: &str, owner: Option<(&str, &str, bool)>) -> Pod {
    let mut pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": name, "uid": format!("pod-{name}")}}))
            .unwrap();
    if let Some((kind, uid, controller)) = owner {
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".to_owned(),
            kind: kind.to_owned(),
            name: format!("owner-{uid}"),
            uid: uid.to_owned(),
            controller: Some(controller),
            block_owner_deletion: None,
        }]);
    }
    pod
}

fn replica_set(name: &str, uid: &str, deployment: Option<&str>) -> DynamicObject {
    let mut meta = json!({"name": name, "namespace": "shop", "uid": uid});
    if let Some(d) = deployment {
        meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
            "name": "web", "uid": d, "controller": true}]);
    }
    serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta}))
        .unwrap()
}

#[test]
fn a_deployment_owns_only_the_pods_of_the_replica_sets_it_controls() {
    let ours = replica_set("web-1", "rs-1", Some("d-1"));
    let theirs = replica_set("other-1", "rs-2", Some("d-2"));
    let orphan = replica_set("loose-1", "rs-3", None);
    let owners = Owners::deployment("d-1", [&ours.metadata, &theirs.metadata, &orphan.metadata]);
    assert!(owners.owns(&pod("web-1-a", Some(("ReplicaSet", "rs-1", true)))));
    assert!(!owners.owns(&pod("other-1-a", Some(("ReplicaSet", "rs-2", true)))));
    assert!(!owners.owns(&pod("loose-1-a", Some(("ReplicaSet", "rs-3", true)))));
    assert!(!owners.owns(&pod("decoy", None)), "no owner at all");
    assert!(
        !owners.owns(&pod("decoy", Some(("ReplicaSet", "rs-1", false)))),
        "an owner reference that is not the controller does not count"
    );
    assert!(
        !owners.owns(&pod("decoy", Some(("Deployment", "d-1", true)))),
        "a Deployment never controls pods itself"
    );
}

#[test]
fn a_pod_target_owns_only_the_pod_with_its_uid() {
    let owners = Owners::pod("pod-web");
    assert!(owners.owns(&pod("web", None)));
    assert!(
        !owners.owns(&pod("web-again", None)),
        "same role, other UID"
    );
    let mut both = Owners::controller("rs-1");
    both.extend(owners);
    assert!(both.owns(&pod("web", None)));
    assert!(both.owns(&pod("x", Some(("ReplicaSet", "rs-1", true)))));
    assert!(!Owners::default().owns(&pod("web", None)));
}

#[tokio::test]
async fn replica_sets_the_cache_does_not_know_are_read_from_the_api_server() {
    let mut writer = Writer::new(workload::api_resource(TargetKind::ReplicaSet).unwrap());
    let cached = replica_set("owner-rs-1", "rs-1", Some("d-1"));
    writer.apply_watcher_event(&watcher::Event::InitApply(cached));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let store = writer.as_reader();
    let pods = vec![
        pod("a", Some(("ReplicaSet", "rs-1", true))),
        pod("b", Some(("ReplicaSet", "rs-new", true))),
        pod("c", Some(("ReplicaSet", "rs-gone", true))),
    ];
    let target = ResolvedTarget {
        kind: TargetKind::Deployment,
        name: "web".to_owned(),
        uid: Some("d-1".to_owned()),
    };
    let (client, mut server) = mock_api::client();
    let asking = tokio::spawn(async move {
        let owners = of(&client, Some(&store), "shop", &target, &pods).await?;
        Ok::<_, Error>(owned(pods, &owners))
    });
    let patience = Duration::from_secs(5);
    let rs = "/apis/apps/v1/namespaces/shop/replicasets";
    // Requests come in name order: owner-rs-gone, then owner-rs-new.
    let (request, send) = mock_api::next_request(&mut server, patience, "GET gone").await;
    assert_eq!(request.uri().to_string(), format!("{rs}/owner-rs-gone"));
    let gone = mock_api::status_body(404, "NotFound", "not found");
    mock_api::reply(send, 404, &gone);
    let (request, send) = mock_api::next_request(&mut server, patience, "GET new").await;
    assert_eq!(request.uri().to_string(), format!("{rs}/owner-rs-new"));
    let fresh = replica_set("owner-rs-new", "rs-new", Some("d-1"));
    mock_api::reply(send, 200, &serde_json::to_value(&fresh).unwrap());
    let found = asking.await.unwrap().unwrap();
    let names: Vec<_> = found
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
}
