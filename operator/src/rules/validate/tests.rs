use super::*;
use kube::api::DynamicObject;

fn policy() -> Policy {
    Policy {
        default_image: "busybox".to_owned(),
        max_ttl: Duration::from_secs(24 * 3600),
        allowed_images: vec![],
        stopper: None,
        start_deadline: Duration::from_secs(300),
        namespaces: crate::rules::namespaces::Namespaces::new("shellcar-system", Vec::new()),
    }
}

fn session(yaml: &str) -> DebugSessionSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn workload(yaml: &str) -> Workload {
    let obj: DynamicObject = serde_yaml::from_str(yaml).unwrap();
    Workload::from_dynamic(TargetKind::Deployment, &obj).unwrap()
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {template: {spec: {containers: [{name: nginx}, {name: exporter}]}}}
"#;

const EPHEMERAL: Capabilities = Capabilities {
    ephemeral_containers: true,
};
const NO_EPHEMERAL: Capabilities = Capabilities {
    ephemeral_containers: false,
};

#[test]
fn auto_on_a_workload_is_sidecar_with_the_default_image() {
    let plan = spec(
        &session("target: {kind: Deployment, name: web}"),
        &policy(),
        EPHEMERAL,
    )
    .unwrap();
    assert_eq!(
        plan,
        Plan {
            mode: Resolved::Sidecar,
            ttl: Duration::from_secs(3600),
            image: "busybox".to_owned()
        }
    );
}

fn mode(yaml: &str, caps: Capabilities) -> Result<Resolved, &'static str> {
    spec(&session(yaml), &policy(), caps)
        .map(|p| p.mode)
        .map_err(|e| e.reason())
}

#[test]
fn auto_picks_ephemeral_for_pods_where_the_cluster_has_it() {
    let pod = "target: {kind: Pod, name: p}";
    assert_eq!(mode(pod, EPHEMERAL), Ok(Resolved::Ephemeral));
    assert_eq!(mode(pod, NO_EPHEMERAL), Ok(Resolved::Copy));
    let explicit = "{target: {kind: Deployment, name: web}, mode: Ephemeral}";
    assert_eq!(mode(explicit, EPHEMERAL), Ok(Resolved::Ephemeral));
    assert_eq!(mode(explicit, NO_EPHEMERAL), Err("EphemeralUnavailable"));
    let copy = "{target: {kind: Deployment, name: web}, mode: Copy}";
    assert_eq!(mode(copy, NO_EPHEMERAL), Ok(Resolved::Copy));
}

#[test]
fn impossible_combinations_are_refused() {
    let sidecar_pod = "{target: {kind: Pod, name: p}, mode: Sidecar}";
    assert_eq!(mode(sidecar_pod, EPHEMERAL), Err("NotSupported"));
    let copy_all = "{target: {kind: Deployment, name: web}, mode: Copy, pods: All}";
    assert_eq!(mode(copy_all, EPHEMERAL), Err("NotSupported"));
}

#[test]
fn recycle_needs_pods_with_a_controller() {
    let recycle = session("{target: {kind: Pod, name: p}, teardown: {ephemeral: Recycle}}");
    let bare: Pod = serde_yaml::from_str("metadata: {name: p}").unwrap();
    let owned: Pod = serde_yaml::from_str(
        "metadata: {name: q, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: r, uid: u, controller: true}]}",
    )
    .unwrap();
    assert_eq!(
        pods(&recycle, &[owned.clone(), bare.clone()])
            .unwrap_err()
            .reason(),
        "RecycleBarePod"
    );
    assert!(pods(&recycle, &[owned]).is_ok());
    assert!(pods(&session("target: {kind: Pod, name: p}"), &[bare]).is_ok());
}

#[test]
fn ttl_refusals_have_their_own_reasons() {
    let long = spec(
        &session("{target: {kind: Deployment, name: web}, ttl: 48h}"),
        &policy(),
        EPHEMERAL,
    )
    .unwrap_err();
    assert_eq!(long.reason(), "TTLTooLong");
    assert_eq!(
        long.to_string(),
        "ttl \"48h\" is longer than the maximum of 1day"
    );
    let bad = spec(
        &session("{target: {kind: Deployment, name: web}, ttl: soon}"),
        &policy(),
        EPHEMERAL,
    )
    .unwrap_err();
    assert_eq!(bad.reason(), "InvalidTTL");
}

#[test]
fn quantities_are_checked_with_their_field_named() {
    for good in [
        "64Mi", "1G", "250m", "0.5", "1", "+1.5e3", "2E-2", ".5", "100Ki",
    ] {
        assert!(is_quantity(good), "{good}");
    }
    for bad in ["lots", "", "1.2.3", "Mi", "1mi", "1e", "--1", "1 Gi", "."] {
        assert!(!is_quantity(bad), "{bad}");
    }
    let lots = session(
        "{target: {kind: Deployment, name: web}, debugger: {resources: {limits: {memory: lots}}}}",
    );
    let refused = spec(&lots, &policy(), EPHEMERAL).unwrap_err();
    assert_eq!(refused.reason(), "InvalidQuantity");
    assert!(
        refused
            .to_string()
            .starts_with("debugger.resources.limits.memory \"lots\" is not a quantity"),
        "{refused}"
    );
}

#[test]
fn target_container_must_exist() {
    let web = workload(WEB);
    assert!(
        target(
            &session("target: {kind: Deployment, name: web, container: nginx}"),
            &web
        )
        .is_ok()
    );
    let err = target(
        &session("target: {kind: Deployment, name: web, container: app}"),
        &web,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Deployment web has no container \"app\"; it has: nginx, exporter"
    );
}

#[test]
fn managed_hostpid_and_disabled_sharing_are_refused() {
    let spec = session("target: {kind: Deployment, name: web}");
    let managed = workload(
        r#"
metadata:
  name: web-1
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: u, controller: true}]
spec: {template: {spec: {containers: [{name: nginx}]}}}
"#,
    );
    assert_eq!(
        target(&spec, &managed).unwrap_err().reason(),
        "ManagedTarget"
    );
    let host_pid = workload(
        "{metadata: {name: w}, spec: {template: {spec: {hostPID: true, containers: [{name: a}]}}}}",
    );
    assert_eq!(
        target(&spec, &host_pid).unwrap_err().reason(),
        "HostPIDConflict"
    );
    let disabled = workload(
        "{metadata: {name: w}, spec: {template: {spec: {shareProcessNamespace: false, containers: [{name: a}]}}}}",
    );
    assert_eq!(
        target(&spec, &disabled).unwrap_err().reason(),
        "SharingDisabled"
    );
}

#[test]
fn an_image_that_is_no_reference_is_refused_before_any_rollout() {
    let caps = Capabilities {
        ephemeral_containers: true,
    };
    for image in [
        "busybox:1.36",
        "registry.example:5000/tools/busybox@sha256:0123456789012345678901234567890123456789012345678901234567890123",
    ] {
        let s = session(&format!(
            "{{target: {{kind: Deployment, name: web}}, debugger: {{image: {image:?}}}}}"
        ));
        assert!(spec(&s, &policy(), caps).is_ok(), "{image}");
    }
    for image in ["Bad Image", "busybox:1:2", ""] {
        let s = session(&format!(
            "{{target: {{kind: Deployment, name: web}}, debugger: {{image: {image:?}}}}}"
        ));
        let refused = spec(&s, &policy(), caps).unwrap_err();
        assert_eq!(refused.reason(), "InvalidImage", "{image}");
        assert!(
            refused.to_string().starts_with(&format!(
                "debugger.image {image:?} is not an image reference"
            )),
            "{refused}"
        );
    }
}

#[test]
fn path_and_the_loaders_env_are_refused() {
    let caps = Capabilities::default();
    for name in ["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH"] {
        let s = session(&format!(
            "{{target: {{kind: Deployment, name: web}}, debugger: {{env: [{{name: {name}, value: /tmp}}]}}}}"
        ));
        let refused = spec(&s, &policy(), caps).unwrap_err();
        assert_eq!(refused.reason(), "ReservedEnv", "{name}");
        assert!(
            refused
                .to_string()
                .starts_with(&format!("debugger.env {name} may not be set"))
        );
    }
    let fine = session(
        "{target: {kind: Deployment, name: web}, debugger: {env: [{name: PAGER, value: less}, {name: OLD_PATH, value: x}]}}",
    );
    assert!(spec(&fine, &policy(), caps).is_ok());
}
