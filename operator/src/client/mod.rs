//! The client side of shellcar, also run as the kubectl plugin `kubectl shellcar`: `debug`
//! a target, `attach` to a session, list (`ls`), `end` and `extend` sessions, `approve` or
//! `reject` one.
//!
//! It talks to the API server only, as the user at the terminal; the operator and its
//! webhook do the rest. Nothing in the operator's core uses this module.
//! It depends on `cli`, `crd`, `naming`, `ttl` and `api_error` only.

pub mod approve;
pub mod attach;
pub mod debug;
pub(crate) mod progress;
pub mod sessions;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use crate::api_error::ApiError;
use crate::cli::ConnectArgs;
use crate::crd::DebugSession;

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

/// The message the API server (a webhook, RBAC, validation) gave for refusing a request,
/// if it gave one. A refusal or a conflict carries it; any other answer of the API server
/// that says something (not found, a webhook that failed) is shown with its message too:
/// it tells the person at the terminal more than the error's code.
pub(crate) fn refusal(error: &kube::Error) -> Option<String> {
    let message = match (ApiError::of(error).message(), error) {
        (Some(message), _) => message.to_owned(),
        (None, kube::Error::Api(status)) => status.message.clone(),
        (None, _) => return None,
    };
    (!message.is_empty()).then_some(message)
}

#[cfg(test)]
mod tests;
