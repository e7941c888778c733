//! Checks that a session can be carried out, before anything is changed.
//!
//! Each refusal is permanent until the session or its target changes: the reconciler
//! turns it into a Failed phase, a Stalled condition and a Warning Event.

use std::time::Duration;

use crate::crd::{DebugSessionSpec, Mode, TargetKind};
use crate::ttl::{self, TtlError};
use crate::workload::Workload;

/// What the operator allows, from its command line.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Image used when a session names none.
    pub default_image: String,
    /// Longest ttl a session may ask for.
    pub max_ttl: Duration,
    /// Image prefixes a debugger may use; empty allows every image.
    pub allowed_images: Vec<String>,
}

/// A session the operator can carry out.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub mode: Mode,
    pub ttl: Duration,
    pub image: String,
}

/// Why a session is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Invalid {
    #[error(transparent)]
    Ttl(#[from] TtlError),
    #[error(
        "{mode} mode for a {kind} target is not supported yet; use a Deployment, StatefulSet, DaemonSet or ReplicaSet target with mode Auto or Sidecar"
    )]
    Unsupported { mode: Mode, kind: TargetKind },
    #[error("image {image:?} is not allowed; allowed image prefixes: {allowed}")]
    ImageNotAllowed { image: String, allowed: String },
    #[error("{kind} {name} has no container {container:?}; it has: {found}")]
    ContainerNotFound {
        kind: TargetKind,
        name: String,
        container: String,
        found: String,
    },
    #[error(
        "{kind} {name} is managed by {owner_kind} {owner}, which would undo the change; target the {owner_kind} instead"
    )]
    ManagedTarget {
        kind: TargetKind,
        name: String,
        owner_kind: String,
        owner: String,
    },
    #[error("{kind} {name} uses hostPID, which cannot be combined with a shared process namespace")]
    HostPid { kind: TargetKind, name: String },
    #[error("{kind} {name} sets shareProcessNamespace: false; remove that field to debug it")]
    SharingDisabled { kind: TargetKind, name: String },
}

impl Invalid {
    /// A short, stable category: the condition reason, Event reason and metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Ttl(TtlError::TooLong { .. }) => "TTLTooLong",
            Invalid::Ttl(_) => "InvalidTTL",
            Invalid::Unsupported { .. } => "NotSupported",
            Invalid::ImageNotAllowed { .. } => "ImageNotAllowed",
            Invalid::ContainerNotFound { .. } => "ContainerNotFound",
            Invalid::ManagedTarget { .. } => "ManagedTarget",
            Invalid::HostPid { .. } => "HostPIDConflict",
            Invalid::SharingDisabled { .. } => "SharingDisabled",
        }
    }
}

/// Checks the session's own fields.
pub fn spec(spec: &DebugSessionSpec, policy: &Policy) -> Result<Plan, Invalid> {
    let ttl = ttl::parse(&spec.ttl, policy.max_ttl)?;
    let kind = spec.target.kind;
    let mode = match (spec.mode, kind.is_workload()) {
        (Mode::Auto | Mode::Sidecar, true) => Mode::Sidecar,
        (mode, _) => return Err(Invalid::Unsupported { mode, kind }),
    };
    let image = spec
        .debugger
        .image
        .clone()
        .unwrap_or_else(|| policy.default_image.clone());
    if !policy.allowed_images.is_empty()
        && !policy.allowed_images.iter().any(|p| image.starts_with(p))
    {
        return Err(Invalid::ImageNotAllowed {
            image,
            allowed: policy.allowed_images.join(", "),
        });
    }
    Ok(Plan { mode, ttl, image })
}

/// Checks the session against the workload it targets.
pub fn target(spec: &DebugSessionSpec, workload: &Workload) -> Result<(), Invalid> {
    let (kind, name) = (workload.kind, workload.name.clone());
    if let Some(owner) = &workload.controller {
        return Err(Invalid::ManagedTarget {
            kind,
            name,
            owner_kind: owner.kind.clone(),
            owner: owner.name.clone(),
        });
    }
    if let Some(container) = &spec.target.container {
        let found = workload.container_names();
        if !found.contains(&container.as_str()) {
            return Err(Invalid::ContainerNotFound {
                kind,
                name,
                container: container.clone(),
                found: found.join(", "),
            });
        }
    }
    let pod_spec = workload.template.spec.as_ref();
    if pod_spec.and_then(|s| s.host_pid) == Some(true) {
        return Err(Invalid::HostPid { kind, name });
    }
    if pod_spec.and_then(|s| s.share_process_namespace) == Some(false) {
        return Err(Invalid::SharingDisabled { kind, name });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;

    fn policy() -> Policy {
        Policy {
            default_image: "busybox".to_owned(),
            max_ttl: Duration::from_secs(24 * 3600),
            allowed_images: vec![],
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

    #[test]
    fn auto_on_a_workload_is_sidecar_with_the_default_image() {
        let plan = spec(&session("target: {kind: Deployment, name: web}"), &policy()).unwrap();
        assert_eq!(
            plan,
            Plan {
                mode: Mode::Sidecar,
                ttl: Duration::from_secs(3600),
                image: "busybox".to_owned()
            }
        );
    }

    #[test]
    fn pods_and_other_modes_are_not_supported_yet() {
        for yaml in [
            "target: {kind: Pod, name: p}",
            "{target: {kind: Deployment, name: web}, mode: Ephemeral}",
            "{target: {kind: Deployment, name: web}, mode: Copy}",
            "{target: {kind: Pod, name: p}, mode: Sidecar}",
        ] {
            let err = spec(&session(yaml), &policy()).unwrap_err();
            assert_eq!(err.reason(), "NotSupported", "{yaml}");
        }
    }

    #[test]
    fn ttl_refusals_have_their_own_reasons() {
        let long = spec(
            &session("{target: {kind: Deployment, name: web}, ttl: 48h}"),
            &policy(),
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
        )
        .unwrap_err();
        assert_eq!(bad.reason(), "InvalidTTL");
    }

    #[test]
    fn images_outside_the_allowed_prefixes_are_refused() {
        let policy = Policy {
            allowed_images: vec!["registry.example/tools/".to_owned()],
            ..policy()
        };
        let err = spec(&session("target: {kind: Deployment, name: web}"), &policy).unwrap_err();
        assert_eq!(err.reason(), "ImageNotAllowed");
        let ok = session(
            "{target: {kind: Deployment, name: web}, debugger: {image: registry.example/tools/shell:1}}",
        );
        assert!(spec(&ok, &policy).is_ok());
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
}
