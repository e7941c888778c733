//! A debug target as `kubectl` users write it: `deploy/web`, `pod/x`, or a bare pod name.

use crate::crd::TargetKind;

/// A target as written on the command line: `deploy/web`, `pod/x`, or a bare pod name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRef {
    pub kind: TargetKind,
    pub name: String,
}

/// The spellings `debug` accepts, as in `kubectl`: singular, plural and short names, with
/// or without the API group (`deployment.apps/web`).
const KINDS: [(TargetKind, &[&str], &str); 5] = [
    (
        TargetKind::Deployment,
        &["deploy", "deployment", "deployments"],
        "apps",
    ),
    (
        TargetKind::StatefulSet,
        &["sts", "statefulset", "statefulsets"],
        "apps",
    ),
    (
        TargetKind::DaemonSet,
        &["ds", "daemonset", "daemonsets"],
        "apps",
    ),
    (
        TargetKind::ReplicaSet,
        &["rs", "replicaset", "replicasets"],
        "apps",
    ),
    (TargetKind::Pod, &["po", "pod", "pods"], ""),
];

/// Why a target could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target {0:?} names no object: write KIND/NAME (deploy/web) or a pod name")]
    NoName(String),
    #[error(
        "cannot debug a {kind:?}: the kinds are deploy (deployment), sts (statefulset), \
         ds (daemonset), rs (replicaset) and pod, or a bare pod name"
    )]
    UnknownKind { kind: String },
}

impl std::str::FromStr for TargetRef {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((kind, name)) = s.split_once('/') else {
            if s.is_empty() {
                return Err(TargetError::NoName(s.to_owned()));
            }
            return Ok(TargetRef {
                kind: TargetKind::Pod,
                name: s.to_owned(),
            });
        };
        if name.is_empty() || name.contains('/') {
            return Err(TargetError::NoName(s.to_owned()));
        }
        let lower = kind.to_ascii_lowercase();
        let (resource, group) = lower.split_once('.').unwrap_or((&lower, ""));
        let kind = KINDS
            .iter()
            .find(|(_, names, g)| names.contains(&resource) && (group.is_empty() || group == *g))
            .map(|(kind, _, _)| *kind)
            .ok_or_else(|| TargetError::UnknownKind {
                kind: kind.to_owned(),
            })?;
        Ok(TargetRef {
            kind,
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for TargetRef {
    /// The short form `kubectl` users type: `deploy/web`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", short_kind(self.kind), self.name)
    }
}

/// `deploy`, `sts`, `ds`, `rs` or `pod`.
pub fn short_kind(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Deployment => "deploy",
        TargetKind::StatefulSet => "sts",
        TargetKind::DaemonSet => "ds",
        TargetKind::ReplicaSet => "rs",
        TargetKind::Pod => "pod",
    }
}

#[cfg(test)]
mod tests;
