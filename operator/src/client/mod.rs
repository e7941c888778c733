//! The client side of shellcar, also run as the kubectl plugin `kubectl shellcar`: `debug`
//! a target, `attach` to a session, list (`ls`), `end` and `extend` sessions, `approve` or
//! `reject` one.
//!
//! It talks to the API server only, as the user at the terminal; the operator and its
//! webhook do the rest. Nothing in the operator's core uses this module.

pub mod approve;
pub mod attach;
pub mod debug;
pub(crate) mod progress;
pub mod sessions;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use crate::cli::ConnectArgs;
use crate::crd::{DebugSession, TargetKind};

/// Why no client could be built from the kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading the kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster)")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("connecting to the cluster")]
    Client(#[source] kube::Error),
}

/// A client for the cluster `args` names, and the namespace to work in: `--namespace`, or
/// the context's, or `default`.
pub async fn connect(args: &ConnectArgs) -> Result<(Client, String), ConnectError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(ConnectError::Kubeconfig)?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(ConnectError::Kubeconfig)?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(ConnectError::Kubeconfig)?,
        // Neither named: the kubeconfig, or the pod's service account (as kubectl does).
        (None, None) => Config::infer().await.map_err(ConnectError::Infer)?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(ConnectError::Client)?;
    Ok((client, namespace))
}

/// Why a named session could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("reading DebugSession {name}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("DebugSession {name} not found in namespace {namespace}")]
    NotFound { name: String, namespace: String },
}

/// The session `name` in `namespace` (the namespace `api` is for), or why not.
pub(crate) async fn fetch(
    api: &Api<DebugSession>,
    namespace: &str,
    name: &str,
) -> Result<DebugSession, FetchError> {
    api.get_opt(name)
        .await
        .map_err(|source| FetchError::Read {
            name: name.to_owned(),
            source,
        })?
        .ok_or_else(|| FetchError::NotFound {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        })
}

/// The flags that make `kubectl` talk to the same cluster as shellcar does.
pub(crate) fn kubectl_flags(args: &ConnectArgs) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(path) = &args.kubeconfig {
        flags.push(format!("--kubeconfig={}", path.display()));
    }
    if let Some(context) = &args.context {
        flags.push(format!("--context={context}"));
    }
    flags
}

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

/// The message the API server (a webhook, RBAC, validation) gave for refusing a request,
/// if it gave one.
pub(crate) fn refusal(error: &kube::Error) -> Option<String> {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => Some(status.message.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Result<TargetRef, TargetError> {
        s.parse()
    }

    #[test]
    fn targets_read_as_kubectl_writes_them() {
        let cases = [
            ("deploy/web", TargetKind::Deployment, "web"),
            ("deployment/web", TargetKind::Deployment, "web"),
            ("deployments/web", TargetKind::Deployment, "web"),
            ("deployment.apps/web", TargetKind::Deployment, "web"),
            ("Deployment/web", TargetKind::Deployment, "web"),
            ("sts/db", TargetKind::StatefulSet, "db"),
            ("statefulset.apps/db", TargetKind::StatefulSet, "db"),
            ("ds/agent", TargetKind::DaemonSet, "agent"),
            ("daemonsets/agent", TargetKind::DaemonSet, "agent"),
            ("rs/x", TargetKind::ReplicaSet, "x"),
            ("replicaset/x", TargetKind::ReplicaSet, "x"),
            ("pod/x", TargetKind::Pod, "x"),
            ("po/x", TargetKind::Pod, "x"),
            ("pods/x", TargetKind::Pod, "x"),
            ("web-7d4b9c-abcde", TargetKind::Pod, "web-7d4b9c-abcde"),
        ];
        for (input, kind, name) in cases {
            assert_eq!(
                target(input),
                Ok(TargetRef {
                    kind,
                    name: name.to_owned()
                }),
                "{input}"
            );
        }
    }

    #[test]
    fn unknown_kinds_and_missing_names_are_refused_with_the_accepted_kinds() {
        let err = target("svc/web").unwrap_err();
        assert_eq!(
            err,
            TargetError::UnknownKind {
                kind: "svc".to_owned()
            }
        );
        let text = err.to_string();
        for kind in ["deploy", "sts", "ds", "rs", "pod"] {
            assert!(text.contains(kind), "{text}");
        }
        // A workload kind under the wrong group, and a pod under a group, are not theirs.
        assert!(target("deployment.batch/web").is_err());
        assert!(target("pod.apps/x").is_err());
        assert!(target("cronjob/nightly").is_err());
        for bad in ["", "deploy/", "deploy/a/b"] {
            assert!(
                matches!(target(bad), Err(TargetError::NoName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn targets_print_in_the_short_form() {
        assert_eq!(
            target("deployment.apps/web").unwrap().to_string(),
            "deploy/web"
        );
        assert_eq!(target("statefulsets/db").unwrap().to_string(), "sts/db");
        assert_eq!(target("x").unwrap().to_string(), "pod/x");
    }

    #[test]
    fn kubectl_gets_the_same_kubeconfig_and_context() {
        let args = ConnectArgs {
            namespace: Some("shop".to_owned()),
            context: Some("prod".to_owned()),
            kubeconfig: Some("/tmp/kc".into()),
        };
        assert_eq!(
            kubectl_flags(&args),
            ["--kubeconfig=/tmp/kc", "--context=prod"]
        );
        assert!(kubectl_flags(&ConnectArgs::default()).is_empty());
    }
}
