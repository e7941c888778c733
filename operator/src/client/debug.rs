//! `shellcar debug TARGET`: create a session, show it coming up, attach, and optionally
//! end it when the terminal detaches: the one command `kubectl debug` users expect.

use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::attach::{self, kubectl_attach, running_pod, wait_ready};
use super::progress::Progress;
use super::sessions::{self, end_session, ended};
use super::{ConnectError, connect, refusal};
use crate::cli::DebugArgs;
use crate::crd::{DebugSession, DebugSessionSpec};

/// Errors of `shellcar debug`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The API server refused the session (the webhook: policy, RBAC, Pod Security, a dry
    /// run of the change), in its own words.
    #[error("{0}")]
    Refused(String),
    #[error("creating the DebugSession")]
    Create(#[source] kube::Error),
    #[error("building the DebugSession")]
    Build(#[source] serde_json::Error),
    #[error(transparent)]
    Wait(#[from] attach::Error),
    #[error(transparent)]
    End(#[from] sessions::Error),
}

/// The debugger's command under `--end-on-exit` when none is given: one shell, whose
/// `exit` ends the attach.
const END_ON_EXIT_COMMAND: [&str; 1] = ["sh"];

/// How many generated names to try before giving up on collisions.
const NAME_TRIES: usize = 3;

/// Creates the session, waits until it is Ready, and attaches (or prints how to); returns
/// the exit code (kubectl's, when attached).
pub async fn debug(args: DebugArgs) -> Result<u8, Error> {
    let (client, namespace) = connect(&args.connection).await?;
    let api: Api<DebugSession> = Api::namespaced(client, &namespace);
    let created = create(&api, &args).await?;
    let name = created.name_any();
    eprintln!(
        "created DebugSession {name} in namespace {namespace} for {}",
        args.target
    );
    let session = {
        let progress = Progress::new();
        wait_ready(&api, &namespace, &name, args.timeout, &progress).await?
    };
    let pod = running_pod(&session)?;
    let attach = args
        .attach
        .unwrap_or_else(|| std::io::stdin().is_terminal());
    if !attach {
        print!("{}", ready_text(&name, &namespace, &pod.attach));
        return Ok(0);
    }
    let code = kubectl_attach(&args.connection, &namespace, &pod)?;
    if args.end_on_exit {
        let last = {
            let progress = Progress::new();
            end_session(&api, &namespace, &name, args.end_timeout, &progress).await?
        };
        println!("{}", ended(&last));
    } else {
        eprintln!(
            "DebugSession {name} goes on until it expires; attach again with `shellcar attach \
             {name} -n {namespace}`, end it with `shellcar end {name} -n {namespace}`"
        );
    }
    Ok(code)
}

/// What `debug --attach=false` prints once the session is Ready: its name first, for
/// scripts, then the commands a person needs.
fn ready_text(name: &str, namespace: &str, attach: &str) -> String {
    format!("session  {name}\nattach   {attach}\nend      shellcar end {name} -n {namespace}\n")
}

/// Creates the session; with no `--name`, under a generated name, tried again on the
/// unlikely collision.
async fn create(api: &Api<DebugSession>, args: &DebugArgs) -> Result<DebugSession, Error> {
    let tries = if args.name.is_some() { 1 } else { NAME_TRIES };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = match &args.name {
            Some(name) => name.clone(),
            None => generated_name(&args.target.name, &suffix(attempt)),
        };
        let session = session(args, &name).map_err(Error::Build)?;
        match api.create(&PostParams::default(), &session).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < tries => {}
            Err(e) => {
                return Err(match refusal(&e) {
                    Some(message) => Error::Refused(message),
                    None => Error::Create(e),
                });
            }
        }
    }
}

/// The DebugSession `debug` creates. Fields the command line leaves out are left out of
/// the object too, so the CRD's defaults (and the operator's) apply; the webhook fills
/// in spec.requester.
fn session(args: &DebugArgs, name: &str) -> Result<DebugSession, serde_json::Error> {
    let target = &args.target;
    let mut debugger = json!({ "profile": args.profile });
    if let Some(image) = &args.image {
        debugger["image"] = json!(image);
    }
    if !args.command.is_empty() {
        debugger["command"] = json!(args.command);
    } else if args.end_on_exit {
        // The default command starts a new shell when one exits, so that a detach does not
        // restart the container; here leaving the shell is meant to end the session.
        debugger["command"] = json!(END_ON_EXIT_COMMAND);
    }
    let mut spec = json!({
        "target": { "kind": target.kind, "name": target.name },
        "mode": args.mode,
        "pods": args.pods,
        "debugger": debugger,
    });
    if let Some(container) = &args.container {
        spec["target"]["container"] = json!(container);
    }
    if let Some(ttl) = &args.ttl {
        spec["ttl"] = json!(ttl);
    }
    let spec: DebugSessionSpec = serde_json::from_value(spec)?;
    Ok(DebugSession {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

/// `<target>-debug-<suffix>`, the target part cut so the name stays short and valid.
fn generated_name(target: &str, suffix: &str) -> String {
    let mut head: String = target.chars().take(40).collect();
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    format!("{head}-debug-{suffix}")
}

/// Five characters from the alphabet Kubernetes uses for generated names (no vowels, no
/// look-alikes), different for every process and attempt.
fn suffix(attempt: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{nanos}/{}/{attempt}", std::process::id());
    Sha256::digest(seed.as_bytes())
        .iter()
        .take(5)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests;
