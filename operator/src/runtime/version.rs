//! The Kubernetes versions shellcar runs on, and the check at start that keeps it from
//! running on older ones.

use std::fmt;

use k8s_openapi::apimachinery::pkg::version::Info;
use kube::Client;
use tracing::{error, info, warn};

use crate::runtime::retry;
use crate::runtime::telemetry::Health;

/// A Kubernetes version, as far as APIs go: major and minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The oldest Kubernetes version shellcar supports: the oldest of those it is tested on
/// (1.33 to 1.37), and the API it is built against (k8s-openapi's `v1_33` feature, in the
/// root Cargo.toml; raise both together). Nothing in shellcar works around an older API
/// server, so on one it would fail in ways that do not name the cause.
pub const OLDEST_SUPPORTED: Version = Version {
    major: 1,
    minor: 33,
};

/// The leading digits of `field`: 33 of "33", and of "33+" as some providers report it.
fn number(field: &str) -> Option<u32> {
    let digits: String = field.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn from_fields(major: &str, minor: &str) -> Option<Version> {
    Some(Version {
        major: number(major)?,
        minor: number(minor)?,
    })
}

/// The version in a `gitVersion` such as "v1.33.13" or "v1.33.13-eks-4f1e2a7".
fn from_git_version(git_version: &str) -> Option<Version> {
    let mut parts = git_version
        .strip_prefix('v')
        .unwrap_or(git_version)
        .split('.');
    from_fields(parts.next()?, parts.next()?)
}

/// The API server's own version: its `major` and `minor`, else its `gitVersion`.
pub fn binary(info: &Info) -> Option<Version> {
    from_fields(&info.major, &info.minor).or_else(|| from_git_version(&info.git_version))
}

/// The version whose APIs the server serves: the one it emulates
/// (`--emulated-version`, reported since 1.31) where it says so, else its own.
pub fn served(info: &Info) -> Option<Version> {
    let emulated = info
        .emulation_major
        .as_deref()
        .zip(info.emulation_minor.as_deref())
        .and_then(|(major, minor)| from_fields(major, minor));
    emulated.or_else(|| binary(info))
}

/// The server's version as a person reads it: its `gitVersion` ("v1.32.4"), and the
/// version it emulates where that differs.
fn describe(info: &Info, served: Version) -> String {
    let binary = binary(info);
    let name = if info.git_version.is_empty() {
        format!("v{}", binary.unwrap_or(served))
    } else {
        info.git_version.clone()
    };
    if binary.is_some_and(|b| b != served) {
        format!("{name} (emulating {served})")
    } else {
        name
    }
}

/// What shellcar makes of the API server's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Supported; how to name the version in the log.
    Supported(String),
    /// Older than [`OLDEST_SUPPORTED`]; the sentence that says so, and what to do.
    TooOld(String),
    /// `/version` names no version that can be read. Taken as supported: a server that
    /// hides its version is more likely new and unusual than old.
    Unreadable,
}

/// Judges the version `/version` reports.
pub fn judge(info: &Info) -> Verdict {
    let Some(served) = served(info) else {
        return Verdict::Unreadable;
    };
    let name = describe(info, served);
    if served >= OLDEST_SUPPORTED {
        Verdict::Supported(name)
    } else {
        Verdict::TooOld(format!(
            "Kubernetes {name} is below the oldest version shellcar supports, {OLDEST_SUPPORTED}; upgrade the cluster or use an older shellcar"
        ))
    }
}

/// Reads the API server's version, retrying until it answers, and judges it: true when
/// the operator may run.
///
/// Below [`OLDEST_SUPPORTED`] it logs the reason as an error and marks `health` not
/// ready with the same sentence, for good, and returns false. The caller then stays up,
/// live but not ready, and does nothing else until shutdown:
/// - not exiting: a process that exits restarts in a crash loop whose reason scrolls
///   away; a live, unready pod keeps it in its log and its `/readyz`, and a rolling
///   update to this version stalls (maxUnavailable 0) with the old replicas serving.
/// - no controller: nothing is reconciled, so nothing is changed with an API this
///   version of shellcar was not built for.
/// - no admission webhook, not even one that denies: the webhook's Service sends reviews
///   only to ready pods, so a denial would never be asked for, and keeping the webhook's
///   certificate would rewrite the Secret and caBundle that a still-running older shellcar
///   serves with. With no ready replica, the API server itself refuses DebugSession
///   creates and updates (the webhooks fail closed), and no session starts.
pub async fn check(client: &Client, health: &Health) -> bool {
    let info = retry("reading the Kubernetes version", || {
        client.apiserver_version()
    })
    .await;
    match judge(&info) {
        Verdict::Supported(name) => {
            info!("running on Kubernetes {name}");
            true
        }
        Verdict::Unreadable => {
            warn!(
                major = %info.major,
                minor = %info.minor,
                git_version = %info.git_version,
                "cannot tell the Kubernetes version; running as if it were {OLDEST_SUPPORTED} or newer"
            );
            true
        }
        Verdict::TooOld(reason) => {
            error!("{reason}");
            health.refuse(reason);
            false
        }
    }
}

#[cfg(test)]
mod tests;
