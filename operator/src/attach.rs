//! The client side: wait for a session to be Ready, then attach to its debugger.

use kube::runtime::wait::await_condition;
use kube::{Api, Client};

use crate::cli::AttachArgs;
use crate::crd::DebugSession;
use crate::status;

/// Errors of `shellcar attach`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the cluster")]
    Client(#[source] kube::Error),
    #[error("DebugSession {0} did not become Ready in time")]
    Timeout(String),
    #[error("waiting for DebugSession {name}")]
    Wait {
        name: String,
        #[source]
        source: kube::runtime::wait::Error,
    },
    #[error("DebugSession {0} not found")]
    Gone(String),
    #[error("DebugSession {name} is Ready but lists no running pod: {message}")]
    NoPod { name: String, message: String },
    #[error("running kubectl")]
    Kubectl(#[source] std::io::Error),
}

fn is_ready(session: Option<&DebugSession>) -> bool {
    session
        .and_then(|s| s.status.as_ref())
        .and_then(|s| status::condition(s, status::READY))
        .is_some_and(|c| c.status == "True")
}

/// Waits until the session is Ready and runs `kubectl attach -it` on its first running pod;
/// returns kubectl's exit code.
pub async fn attach(args: AttachArgs) -> Result<u8, Error> {
    let client = Client::try_default().await.map_err(Error::Client)?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<DebugSession> = Api::namespaced(client, &ns);
    let name = args.name.clone();
    let wait = await_condition(api, &name, |s: Option<&DebugSession>| {
        is_ready(s) || s.is_none()
    });
    let session = tokio::time::timeout(args.timeout, wait)
        .await
        .map_err(|_| Error::Timeout(name.clone()))?
        .map_err(|source| Error::Wait {
            name: name.clone(),
            source,
        })?
        .ok_or_else(|| Error::Gone(name.clone()))?;
    let status = session.status.unwrap_or_default();
    let pod = status
        .pods
        .iter()
        .find(|p| p.ready)
        .ok_or_else(|| Error::NoPod {
            name: name.clone(),
            message: status.message.clone().unwrap_or_default(),
        })?;
    if args.print {
        println!("{}", pod.attach);
        return Ok(0);
    }
    eprintln!("attaching: {} (detach with Ctrl-P Ctrl-Q)", pod.attach);
    std::process::Command::new("kubectl")
        .args(["attach", "-it", "-n", &ns, &pod.name, "-c", &pod.container])
        .status()
        .map(|status| {
            status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1)
        })
        .map_err(Error::Kubectl)
}
