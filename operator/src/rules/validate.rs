//! Checks that a session can be carried out, before anything is changed.
//!
//! Each refusal is permanent until the session or its target changes: the reconciler
//! turns it into a Failed phase, a Stalled condition and a Warning Event.

use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use oci_spec::distribution::Reference;

use crate::crd::{DebugSessionSpec, EphemeralTeardown, Mode, PodSelection, Resolved, TargetKind};
use crate::k8s::capabilities::Capabilities;
use crate::k8s::workload::Workload;
use crate::rules::Policy;
use crate::rules::namespaces::Refused;
use crate::rules::stamp::Unstamped;
use crate::ttl::{self, TtlError};

/// Most pods an Ephemeral session with `pods: All` debugs.
pub const MAX_PODS: usize = 10;

/// A session the operator can carry out.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub mode: Resolved,
    pub ttl: Duration,
    pub image: String,
}

/// Why a session is refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum Invalid {
    #[error(transparent)]
    Ttl(#[from] TtlError),
    #[error(
        "Sidecar mode changes a pod template, which a {kind} does not have; use mode Ephemeral or Copy for a Pod"
    )]
    SidecarNeedsWorkload { kind: TargetKind },
    #[error(
        "this cluster does not serve ephemeral containers (its API has no pods/ephemeralcontainers); use mode Copy"
    )]
    EphemeralUnavailable,
    #[error("Copy mode copies one pod; set pods: One or use mode Ephemeral")]
    CopyOnePod,
    #[error(
        "teardown.ephemeral: Recycle evicts the pod so that its controller replaces it, but pod {pod} has no controller; use Leave or Label"
    )]
    RecycleBarePod { pod: String },
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
    #[error("{kind} {name}: another field manager owns a field the debugger needs: {message}")]
    Conflict {
        kind: TargetKind,
        name: String,
        message: String,
    },
    #[error("pod {pod} refused the ephemeral debugger: {message}")]
    EphemeralRejected { pod: String, message: String },
    #[error(
        "pod {pod} already exists and is not this session's copy; it is left as it is: delete it, or create the session under another name"
    )]
    NameTaken { pod: String },
    #[error(
        "the session has no spec.requester: it was created while shellcar's admission webhook did not run, so nobody can tell who asked; delete it and create it again"
    )]
    NoRequester,
    #[error(transparent)]
    NotAdmitted(#[from] Unstamped),
    #[error(
        "spec.approval is dated {time}, in the future: no approver could have decided then; delete the session and create it again"
    )]
    ApprovalInFuture { time: String },
    #[error("{denied}")]
    Forbidden { denied: String },
    #[error(transparent)]
    Namespace(#[from] Refused),
    #[error("no DebugPolicy allows this session: {message}")]
    PolicyDenied { message: String },
    #[error("no DebugPolicy allows this session any more: {message}")]
    PolicyRevoked { message: String },
    #[error("{message}")]
    PodSecurity { message: String },
    #[error(
        "nobody approved the session within {deadline}, the approval deadline of policy {policy}"
    )]
    NotApproved { policy: String, deadline: String },
    #[error("{approver} rejected the session{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    ApprovalRejected { approver: String, reason: String },
    #[error("the API server refused the change: {message}")]
    Rejected { message: String },
    #[error("no debugger ran within the start deadline of {deadline}{}", last.as_deref().map(|l| format!("; last: {l}")).unwrap_or_default())]
    StartTimeout {
        deadline: String,
        last: Option<String>,
    },
    #[error(
        "{field} {value:?} is not a quantity; write a number with an optional suffix, such as 64Mi, 1G, 250m or 0.5"
    )]
    Quantity { field: String, value: String },
    #[error(
        "debugger.env {name} may not be set: PATH and LD_* decide which programs the operator's stop and deadline commands run in the debugger, so the ttl would no longer hold"
    )]
    ReservedEnv { name: String },
    #[error(
        "debugger.image {image:?} is not an image reference ({message}); write [registry/]path[:tag][@sha256:digest], such as busybox:1.36"
    )]
    Image { image: String, message: String },
}

impl Invalid {
    /// A short, stable category: the condition reason, Event reason and metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Ttl(TtlError::TooLong { .. }) => "TTLTooLong",
            Invalid::Ttl(_) => "InvalidTTL",
            Invalid::SidecarNeedsWorkload { .. } | Invalid::CopyOnePod => "NotSupported",
            Invalid::EphemeralUnavailable => "EphemeralUnavailable",
            Invalid::RecycleBarePod { .. } => "RecycleBarePod",
            Invalid::ContainerNotFound { .. } => "ContainerNotFound",
            Invalid::ManagedTarget { .. } => "ManagedTarget",
            Invalid::HostPid { .. } => "HostPIDConflict",
            Invalid::SharingDisabled { .. } => "SharingDisabled",
            Invalid::Conflict { .. } => "Conflict",
            Invalid::EphemeralRejected { .. } => "EphemeralContainerInvalid",
            Invalid::NameTaken { .. } => "NameTaken",
            Invalid::NoRequester => "NoRequester",
            Invalid::NotAdmitted(_) => "NotAdmitted",
            Invalid::ApprovalInFuture { .. } => "ApprovalInFuture",
            Invalid::Forbidden { .. } => "Forbidden",
            Invalid::Quantity { .. } => "InvalidQuantity",
            Invalid::Image { .. } => "InvalidImage",
            Invalid::ReservedEnv { .. } => "ReservedEnv",
            Invalid::Rejected { .. } => "Rejected",
            Invalid::StartTimeout { .. } => "StartTimeout",
            Invalid::Namespace(refused) => refused.reason(),
            Invalid::PolicyDenied { .. } => "PolicyDenied",
            Invalid::PolicyRevoked { .. } => "PolicyRevoked",
            Invalid::PodSecurity { .. } => "PodSecurity",
            Invalid::NotApproved { .. } => "NotApproved",
            Invalid::ApprovalRejected { .. } => "ApprovalRejected",
        }
    }
}

/// Checks the session's own fields and resolves its mode.
pub fn spec(spec: &DebugSessionSpec, policy: &Policy, caps: Capabilities) -> Result<Plan, Invalid> {
    let ttl = ttl::parse(&spec.ttl, policy.max_ttl)?;
    let kind = spec.target.kind;
    let mode = match (spec.mode, kind.is_workload()) {
        (Mode::Auto | Mode::Sidecar, true) => Resolved::Sidecar,
        (Mode::Sidecar, false) => return Err(Invalid::SidecarNeedsWorkload { kind }),
        (Mode::Auto, false) if caps.ephemeral_containers => Resolved::Ephemeral,
        (Mode::Auto, false) => Resolved::Copy,
        (Mode::Ephemeral, _) if !caps.ephemeral_containers => {
            return Err(Invalid::EphemeralUnavailable);
        }
        (Mode::Ephemeral, _) => Resolved::Ephemeral,
        (Mode::Copy, _) => Resolved::Copy,
    };
    if mode == Resolved::Copy && spec.pods == PodSelection::All {
        return Err(Invalid::CopyOnePod);
    }
    quantities(spec)?;
    reserved_env(spec)?;
    let image = spec
        .debugger
        .image
        .clone()
        .unwrap_or_else(|| policy.default_image.clone());
    // Refused here, so at `kubectl apply`, not as a pod that cannot pull.
    if let Err(e) = Reference::from_str(&image) {
        return Err(Invalid::Image {
            image,
            message: e.to_string(),
        });
    }
    Ok(Plan { mode, ttl, image })
}

/// Refuses env the debugger's user could turn against the operator's own commands in the
/// debugger (the ephemeral debugger's deadline and stop scripts run `sh`, `kill`, `cat`
/// and `sleep` by name): `PATH`, and `LD_*`, which loads code into every program.
fn reserved_env(spec: &DebugSessionSpec) -> Result<(), Invalid> {
    match spec
        .debugger
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "PATH" || e.name.starts_with("LD_"))
    {
        Some(env) => Err(Invalid::ReservedEnv {
            name: env.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Checks every quantity of `debugger.resources`, so that a typo is refused with its name
/// and value rather than with the API server's regular expression.
fn quantities(spec: &DebugSessionSpec) -> Result<(), Invalid> {
    let Some(resources) = &spec.debugger.resources else {
        return Ok(());
    };
    let lists = [
        ("limits", &resources.limits),
        ("requests", &resources.requests),
    ];
    for (list, quantities) in lists {
        for (name, q) in quantities.iter().flatten() {
            if !is_quantity(&q.0) {
                return Err(Invalid::Quantity {
                    field: format!("debugger.resources.{list}.{name}"),
                    value: q.0.clone(),
                });
            }
        }
    }
    Ok(())
}

/// True when `s` is a Kubernetes quantity: a signed decimal number, then a binary suffix
/// (Ki to Ei), a decimal one (n, u, m, k, M, G, T, P, E) or a decimal exponent (e3, E-2).
fn is_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_end = unsigned
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let mut parts = number.split('.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    let number_ok = parts.next().is_none()
        && !(whole.is_empty() && fraction.is_none_or(str::is_empty))
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.is_none_or(|f| f.chars().all(|c| c.is_ascii_digit()));
    let exponent = |e: &str| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    };
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix.strip_prefix(['e', 'E']).is_some_and(exponent);
    number_ok && suffix_ok
}

/// Checks the pods an Ephemeral session is about to debug.
pub fn pods(spec: &DebugSessionSpec, pods: &[Pod]) -> Result<(), Invalid> {
    if spec.teardown.ephemeral == EphemeralTeardown::Recycle
        && let Some(bare) = pods.iter().find(|p| {
            !p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true))
        })
    {
        return Err(Invalid::RecycleBarePod {
            pod: bare.name_any(),
        });
    }
    Ok(())
}

/// Checks that a debugger may join running `pod`: not one in the host's process namespace
/// (hostPID), where the debugger would see and signal every process of the node. Ephemeral
/// and Copy judge the pod they join or copy with this, in their apply and their dry run
/// alike; Sidecar judges the template with [`target`].
pub fn joinable_pod(pod: &Pod) -> Result<(), Invalid> {
    if pod.spec.as_ref().and_then(|s| s.host_pid) == Some(true) {
        return Err(Invalid::HostPid {
            kind: TargetKind::Pod,
            name: pod.name_any(),
        });
    }
    Ok(())
}

/// Checks that `kind` `name`, whose containers are `found`, has container `wanted`.
pub fn container_exists(
    kind: TargetKind,
    name: &str,
    found: &[&str],
    wanted: &str,
) -> Result<(), Invalid> {
    if found.contains(&wanted) {
        return Ok(());
    }
    Err(Invalid::ContainerNotFound {
        kind,
        name: name.to_owned(),
        container: wanted.to_owned(),
        found: found.join(", "),
    })
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
        container_exists(kind, &name, &workload.container_names(), container)?;
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
mod tests;
