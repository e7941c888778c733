//! Waiting for a session to be Ready and attaching a terminal to its debugger, shared by
//! `shellcar attach` and `shellcar debug`.

use std::time::Duration;

use futures::TryStreamExt;
use kube::Api;
use kube::runtime::watcher;

use super::progress::{Phases, Progress, reason};
use super::{ConnectError, connect, kubectl_flags};
use crate::cli::{AttachArgs, ConnectArgs};
use crate::crd::conditions::READY;
use crate::crd::{DebugPod, DebugSession, Phase};

/// Errors of waiting for a session and attaching to it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("DebugSession {name} did not become Ready within {}; last seen: {last}", humantime::format_duration(*.timeout))]
    Timeout {
        name: String,
        timeout: Duration,
        last: String,
    },
    #[error("watching DebugSession {name}")]
    Watch {
        name: String,
        #[source]
        source: watcher::Error,
    },
    #[error("DebugSession {0} not found (or deleted while waiting)")]
    Gone(String),
    #[error("DebugSession {0} is being deleted")]
    Deleting(String),
    /// The session failed; its status says why.
    #[error("DebugSession {name} failed{}: {message}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Failed {
        name: String,
        reason: Option<String>,
        message: String,
    },
    #[error("DebugSession {name} is over (phase {phase}): {message}")]
    Over {
        name: String,
        phase: &'static str,
        message: String,
    },
    #[error("DebugSession {name} is Ready but lists no running pod: {message}")]
    NoPod { name: String, message: String },
    #[error("running kubectl")]
    Kubectl(#[source] std::io::Error),
}

/// True when the session's Ready condition is True.
pub(crate) fn is_ready(session: &DebugSession) -> bool {
    session
        .status
        .as_ref()
        .and_then(|s| s.condition(READY))
        .is_some_and(|c| c.status == "True")
}

/// What waiting for Ready makes of the session as last seen: done, an end, or go on.
fn verdict(name: &str, session: &DebugSession) -> Option<Result<(), Error>> {
    if is_ready(session) {
        return Some(Ok(()));
    }
    if session.metadata.deletion_timestamp.is_some() {
        return Some(Err(Error::Deleting(name.to_owned())));
    }
    let status = session.status.clone().unwrap_or_default();
    let message = status.message.unwrap_or_default();
    match status.phase {
        Some(Phase::Failed) => Some(Err(Error::Failed {
            name: name.to_owned(),
            reason: reason(session),
            message,
        })),
        Some(phase @ (Phase::Expired | Phase::Ended)) => Some(Err(Error::Over {
            name: name.to_owned(),
            phase: phase.as_str(),
            message,
        })),
        _ => None,
    }
}

/// Waits until session `name` is Ready and returns it, showing each phase on the way. A
/// session that awaits approval says who can approve it and is waited for.
pub(crate) async fn wait_ready(
    api: &Api<DebugSession>,
    namespace: &str,
    name: &str,
    timeout: Duration,
    progress: &Progress,
) -> Result<DebugSession, Error> {
    let mut phases = Phases::default();
    let mut last = String::from("nothing yet");
    let mut told_approval = false;
    let wait = async {
        let stream = watcher::watch_object(api.clone(), name);
        futures::pin_mut!(stream);
        while let Some(seen) = stream.try_next().await.map_err(|source| Error::Watch {
            name: name.to_owned(),
            source,
        })? {
            let Some(session) = seen else {
                return Err(Error::Gone(name.to_owned()));
            };
            phases.show(progress, &session);
            last = super::progress::phase_line(&session);
            let phase = session.status.as_ref().and_then(|s| s.phase);
            if phase == Some(Phase::AwaitingApproval) && !told_approval {
                progress.line(&format!(
                    "{name} awaits approval: someone other than you with the verb approve on \
                     debugsessions in namespace {namespace} runs `shellcar approve {name} -n \
                     {namespace}`; waiting"
                ));
                told_approval = true;
            }
            if let Some(done) = verdict(name, &session) {
                return done.map(|()| session);
            }
        }
        Err(Error::Gone(name.to_owned()))
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            name: name.to_owned(),
            timeout,
            last,
        }),
    }
}

/// The first pod of a Ready session whose debugger runs.
pub(crate) fn running_pod(session: &DebugSession) -> Result<DebugPod, Error> {
    let status = session.status.clone().unwrap_or_default();
    status
        .pods
        .iter()
        .find(|p| p.ready)
        .cloned()
        .ok_or_else(|| Error::NoPod {
            name: session.metadata.name.clone().unwrap_or_default(),
            message: status.message.clone().unwrap_or_default(),
        })
}

/// Runs `kubectl attach -it` on the debugger of `pod`, against the cluster `connection`
/// names; returns kubectl's exit code.
pub(crate) fn kubectl_attach(
    connection: &ConnectArgs,
    namespace: &str,
    pod: &DebugPod,
) -> Result<u8, Error> {
    // kubectl attach has no detach keys (Ctrl-P Ctrl-Q was dockershim's): leaving means
    // ending the debugger's shell, or kubectl.
    eprintln!("attaching: {}", pod.attach);
    std::process::Command::new("kubectl")
        .args(kubectl_flags(connection))
        .args([
            "attach",
            "-it",
            "-n",
            namespace,
            &pod.name,
            "-c",
            &pod.container,
        ])
        .status()
        .map(|status| {
            status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1)
        })
        .map_err(Error::Kubectl)
}

/// `shellcar attach`: waits until the session is Ready and attaches to its first running
/// pod (or prints the command); returns the exit code.
pub async fn attach(args: AttachArgs) -> Result<u8, Error> {
    let (client, namespace) = connect(&args.connection).await?;
    let api: Api<DebugSession> = Api::namespaced(client, &namespace);
    let session = {
        let progress = Progress::new();
        wait_ready(&api, &namespace, &args.name, args.timeout, &progress).await?
    };
    let pod = running_pod(&session)?;
    if args.print {
        println!("{}", pod.attach);
        return Ok(0);
    }
    kubectl_attach(&args.connection, &namespace, &pod)
}

#[cfg(test)]
mod tests;
