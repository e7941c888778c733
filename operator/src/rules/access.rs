//! What a requester must hold for a session: the permissions it stands in for (Direct),
//! the verb `debug` on its target (Delegated), or either, as the policy that admits it
//! says. Asking the API server whether the requester holds them is [`crate::k8s::access`].

use crate::crd::{
    Access, DebugSessionSpec, EphemeralTeardown, Mode, Resolved, SidecarTeardown, TargetKind,
};
use crate::k8s::access::{Check, Permission};

/// Plural resource name of a target kind, and its API group.
fn resource(kind: TargetKind) -> (&'static str, &'static str) {
    match kind {
        TargetKind::Deployment => ("apps", "deployments"),
        TargetKind::StatefulSet => ("apps", "statefulsets"),
        TargetKind::DaemonSet => ("apps", "daemonsets"),
        TargetKind::ReplicaSet => ("apps", "replicasets"),
        TargetKind::Pod => ("", "pods"),
    }
}

/// The custom RBAC verb that lets someone ask shellcar to debug a target for them.
pub const DEBUG_VERB: &str = "debug";

/// What a session in `namespace`, in resolved mode `mode`, needs from its requester under
/// `access`: sets of checks of which any one, held in full, suffices, in the order a
/// refusal names them. Delegated: [`delegated`]; Direct: [`checks`]; Either: both.
pub fn required(
    spec: &DebugSessionSpec,
    mode: Resolved,
    namespace: &str,
    access: Access,
) -> Vec<Vec<Check>> {
    match access {
        Access::Direct => vec![checks(spec, mode, namespace)],
        Access::Delegated => vec![delegated(spec, namespace)],
        Access::Either => vec![delegated(spec, namespace), checks(spec, mode, namespace)],
    }
}

/// What a requester needs for shellcar to debug the target for them with its own power:
/// the verb [`DEBUG_VERB`] on the target, by name, and `get` on each Secret and ConfigMap
/// that `debugger.env[].valueFrom` names.
pub fn delegated(spec: &DebugSessionSpec, namespace: &str) -> Vec<Check> {
    let target = &spec.target;
    let (group, resource) = resource(target.kind);
    let mut out = vec![Check {
        permission: Permission {
            verb: DEBUG_VERB,
            group,
            resource,
            subresource: None,
            name: Some(target.name.clone()),
            namespace: namespace.to_owned(),
        },
        needed_by: "access Delegated".to_owned(),
    }];
    env_checks(spec, namespace, &mut out);
    out
}

/// The permissions a session in `namespace` needs from its requester to do it directly,
/// in resolved mode `mode`.
///
/// - Sidecar: `patch` on the workload, by name, and `create` on `pods/eviction` when
///   `teardown.sidecar` is Recycle;
/// - Ephemeral: `patch` on `pods/ephemeralcontainers` (by name for a Pod target, else on
///   every pod, as the pods are chosen later), and `create` on `pods/eviction` when
///   `teardown.ephemeral` is Recycle;
/// - Copy: `create` on `pods`, and `get` on the pod it copies (by name for a Pod target,
///   else on every pod);
/// - `get` on each Secret and ConfigMap that `debugger.env[].valueFrom` names.
pub fn checks(spec: &DebugSessionSpec, mode: Resolved, namespace: &str) -> Vec<Check> {
    let target = &spec.target;
    let pod_name = (target.kind == TargetKind::Pod).then(|| target.name.clone());
    let permission = |verb, group, resource, subresource, name: Option<String>| Permission {
        verb,
        group,
        resource,
        subresource,
        name,
        namespace: namespace.to_owned(),
    };
    let by_mode = format!("mode {}", Mode::from(mode));
    let mut out = Vec::new();
    match mode {
        Resolved::Sidecar => {
            let (group, resource) = resource(target.kind);
            out.push(Check {
                permission: permission("patch", group, resource, None, Some(target.name.clone())),
                needed_by: by_mode,
            });
            if spec.teardown.sidecar == SidecarTeardown::Recycle {
                out.push(Check {
                    permission: permission("create", "", "pods", Some("eviction"), None),
                    needed_by: "teardown.sidecar Recycle".to_owned(),
                });
            }
        }
        Resolved::Ephemeral => {
            out.push(Check {
                permission: permission(
                    "patch",
                    "",
                    "pods",
                    Some("ephemeralcontainers"),
                    pod_name.clone(),
                ),
                needed_by: by_mode,
            });
            // Only Ephemeral sessions evict: the teardown policy means nothing to the others.
            if spec.teardown.ephemeral == EphemeralTeardown::Recycle {
                out.push(Check {
                    permission: permission("create", "", "pods", Some("eviction"), pod_name),
                    needed_by: "teardown.ephemeral Recycle".to_owned(),
                });
            }
        }
        Resolved::Copy => {
            out.push(Check {
                permission: permission("create", "", "pods", None, None),
                needed_by: by_mode.clone(),
            });
            // The copy carries the source's spec, literal env included: reading it is
            // what the requester must be allowed.
            out.push(Check {
                permission: permission("get", "", "pods", None, pod_name),
                needed_by: format!("{by_mode}, to read the pod it copies"),
            });
        }
    }
    env_checks(spec, namespace, &mut out);
    out
}

/// Adds to `out` a `get` on each Secret and ConfigMap that `debugger.env[].valueFrom`
/// names, once each.
fn env_checks(spec: &DebugSessionSpec, namespace: &str, out: &mut Vec<Check>) {
    for env in spec.debugger.env.iter().flatten() {
        let Some(from) = &env.value_from else {
            continue;
        };
        let refs = [
            from.secret_key_ref.as_ref().map(|r| ("secrets", &r.name)),
            from.config_map_key_ref
                .as_ref()
                .map(|r| ("configmaps", &r.name)),
        ];
        for (resource, name) in refs.into_iter().flatten() {
            let check = Check {
                permission: Permission {
                    verb: "get",
                    group: "",
                    resource,
                    subresource: None,
                    name: Some(name.clone()),
                    namespace: namespace.to_owned(),
                },
                needed_by: format!("debugger.env {}", env.name),
            };
            if !out.iter().any(|c| c.permission == check.permission) {
                out.push(check);
            }
        }
    }
}

#[cfg(test)]
mod tests;
