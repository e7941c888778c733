//! The reconcile [`Error`]: what can go wrong in one reconciliation, with a stable
//! category for metrics and logs.

use kube::runtime::finalizer;

use crate::api_error::ApiError;
use crate::crd::TargetKind;
use crate::k8s::{access, workload};

/// Errors of one reconciliation. All of them are transient: the session is retried with
/// backoff. Problems with the spec are not errors but refusals, written to status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the DebugSession has no namespace")]
    NoNamespace,
    #[error("the DebugSession has no uid yet, so nothing can be owned by it")]
    NoUid,
    #[error("reading the target")]
    Workload(#[from] workload::Error),
    #[error("applying the debugger to {kind} {name}")]
    Apply {
        kind: TargetKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("removing the debugger from {kind} {name}")]
    Teardown {
        kind: TargetKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the debugged pods")]
    Pods(#[source] kube::Error),
    #[error("writing the status")]
    Status(#[source] kube::Error),
    #[error("{action} pod {pod}")]
    Pod {
        action: &'static str,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("running a command in the debugger of pod {pod}: {message}")]
    Exec { pod: String, message: String },
    #[error("discovering what the cluster serves")]
    Discovery(#[source] kube::Error),
    #[error("asking the API server what the requester may do")]
    Access(#[source] access::Error),
    #[error("namespace {namespace} is not in the watch cache yet")]
    NamespaceUnknown { namespace: String },
    #[error("managing the finalizer")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// The API server's refusal of a change the session makes, when retrying cannot help:
    /// [`ApiError::Refused`], a 4xx other than 404 (gone), 409 (conflict) and 429
    /// (throttled).
    pub fn rejection(&self) -> Option<String> {
        let (Error::Apply { source, .. } | Error::Pod { source, .. }) = self else {
            return None;
        };
        match ApiError::of(source) {
            ApiError::Refused { message, .. } => Some(format!("{self}: {message}")),
            _ => None,
        }
    }

    /// A short, stable category: the metrics label and log field.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NoNamespace => "NoNamespace",
            Error::NoUid => "NoUid",
            Error::Workload(_) => "TargetReadFailed",
            Error::Apply { .. } => "ApplyFailed",
            Error::Teardown { .. } => "TeardownFailed",
            Error::Pods(_) => "PodListFailed",
            Error::Status(_) => "StatusWriteFailed",
            Error::Pod { .. } => "PodOperationFailed",
            Error::Exec { .. } => "ExecFailed",
            Error::Discovery(_) => "DiscoveryFailed",
            Error::Access(_) => "AccessReviewFailed",
            Error::NamespaceUnknown { .. } => "NamespaceNotCached",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }

    /// The [`Error::Pod`] maker for `action` on `pod`, for `map_err`.
    pub fn pod(action: &'static str, pod: &str) -> impl FnOnce(kube::Error) -> Error {
        let pod = pod.to_owned();
        move |source| Error::Pod {
            action,
            pod,
            source,
        }
    }
}

#[cfg(test)]
mod tests;
