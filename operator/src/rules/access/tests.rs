use super::*;
use crate::crd::{DebugSessionSpec, Resolved};
use crate::k8s::access::Check;

fn spec(yaml: &str) -> DebugSessionSpec {
    serde_yaml::from_str(yaml).unwrap()
}

/// Each check as `verb resource "name" (needed by ...)`.
fn described(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .map(|c| format!("{} {} ({})", c.permission.verb, c.permission, c.needed_by))
        .collect()
}

#[test]
fn sidecar_needs_patch_on_that_workload() {
    for (kind, resource) in [
        ("Deployment", "deployments.apps"),
        ("StatefulSet", "statefulsets.apps"),
        ("DaemonSet", "daemonsets.apps"),
        ("ReplicaSet", "replicasets.apps"),
    ] {
        let checks = checks(
            &spec(&format!("target: {{kind: {kind}, name: app}}")),
            Resolved::Sidecar,
            "shop",
        );
        assert_eq!(
            described(&checks),
            [format!("patch {resource} \"app\" (mode Sidecar)")]
        );
        assert_eq!(checks[0].permission.namespace, "shop");
    }
}

#[test]
fn sidecar_recycle_needs_eviction_in_the_namespace() {
    let checks = checks(
        &spec("{target: {kind: ReplicaSet, name: app}, teardown: {sidecar: Recycle}}"),
        Resolved::Sidecar,
        "shop",
    );
    assert_eq!(
        described(&checks),
        [
            "patch replicasets.apps \"app\" (mode Sidecar)",
            "create pods/eviction (teardown.sidecar Recycle)"
        ]
    );
}

#[test]
fn ephemeral_needs_the_subresource_and_recycle_needs_eviction() {
    let pod = spec("{target: {kind: Pod, name: web-1}, teardown: {ephemeral: Recycle}}");
    assert_eq!(
        described(&checks(&pod, Resolved::Ephemeral, "shop")),
        [
            "patch pods/ephemeralcontainers \"web-1\" (mode Ephemeral)",
            "create pods/eviction \"web-1\" (teardown.ephemeral Recycle)",
        ]
    );
    // a workload's pods are chosen later: every pod of the namespace
    let workload = spec("{target: {kind: Deployment, name: web}, mode: Ephemeral}");
    assert_eq!(
        described(&checks(&workload, Resolved::Ephemeral, "shop")),
        ["patch pods/ephemeralcontainers (mode Ephemeral)"]
    );
    // Recycle means nothing to a Sidecar session
    let sidecar = spec("{target: {kind: Deployment, name: web}, teardown: {ephemeral: Recycle}}");
    assert_eq!(checks(&sidecar, Resolved::Sidecar, "shop").len(), 1);
}

#[test]
fn copy_needs_create_on_pods_and_get_on_the_pod_it_copies() {
    let copy = spec("{target: {kind: Pod, name: web-1}, mode: Copy}");
    assert_eq!(
        described(&checks(&copy, Resolved::Copy, "shop")),
        [
            "create pods (mode Copy)",
            r#"get pods "web-1" (mode Copy, to read the pod it copies)"#
        ]
    );
    let workload = spec("{target: {kind: Deployment, name: web}, mode: Copy}");
    assert_eq!(
        described(&checks(&workload, Resolved::Copy, "shop")),
        [
            "create pods (mode Copy)",
            "get pods (mode Copy, to read the pod it copies)"
        ]
    );
}

#[test]
fn every_secret_and_config_map_in_env_needs_get_once() {
    let s = spec(
        r#"
target: {kind: Deployment, name: app}
debugger:
  env:
  - {name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}
  - {name: USER, valueFrom: {secretKeyRef: {name: db, key: user}}}
  - {name: LEVEL, valueFrom: {configMapKeyRef: {name: settings, key: level}}}
  - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
  - {name: PLAIN, value: x}
"#,
    );
    assert_eq!(
        described(&checks(&s, Resolved::Sidecar, "shop")),
        [
            "patch deployments.apps \"app\" (mode Sidecar)",
            "get secrets \"db\" (debugger.env PW)",
            "get configmaps \"settings\" (debugger.env LEVEL)",
        ]
    );
}

#[test]
fn each_access_model_asks_for_its_own_permissions() {
    let s = spec(
        "{target: {kind: Deployment, name: web}, debugger: {env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}]}}",
    );
    let sets = |access| -> Vec<Vec<String>> {
        required(&s, Resolved::Sidecar, "shop", access)
            .iter()
            .map(|checks| described(checks))
            .collect()
    };
    let delegated = vec![
        r#"debug deployments.apps "web" (access Delegated)"#.to_owned(),
        r#"get secrets "db" (debugger.env PW)"#.to_owned(),
    ];
    let direct = vec![
        r#"patch deployments.apps "web" (mode Sidecar)"#.to_owned(),
        r#"get secrets "db" (debugger.env PW)"#.to_owned(),
    ];
    assert_eq!(sets(Access::Either), [delegated.clone(), direct.clone()]);
    assert_eq!(sets(Access::Direct), [direct]);
    assert_eq!(sets(Access::Delegated), [delegated]);
}

#[test]
fn delegation_asks_for_debug_on_the_target_whatever_the_mode() {
    let pod = spec("{target: {kind: Pod, name: web-1}, teardown: {ephemeral: Recycle}}");
    for mode in [Resolved::Ephemeral, Resolved::Copy] {
        assert_eq!(
            required(&pod, mode, "shop", Access::Delegated)
                .iter()
                .map(|checks| described(checks))
                .collect::<Vec<_>>(),
            [[r#"debug pods "web-1" (access Delegated)"#]],
            "{mode:?}"
        );
    }
}
