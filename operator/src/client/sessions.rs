//! `shellcar ls`, `shellcar end` and `shellcar extend`: the sessions of a namespace.

use std::fmt::Write as _;
use std::time::Duration;

use futures::TryStreamExt;
use jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{wait::await_condition, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::progress::{Phases, Progress};
use super::{ConnectError, FetchError, connect, fetch, refusal};
use crate::cli::{EndArgs, ExtendArgs, LsArgs, short_kind};
use crate::crd::DebugSession;
use crate::ttl::{self, TtlError};

/// Errors of `ls`, `end` and `extend`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("listing DebugSessions")]
    List(#[source] kube::Error),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The API server refused the change (the webhook, RBAC), in its own words.
    #[error("{0}")]
    Refused(String),
    #[error("changing DebugSession {name}")]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("watching DebugSession {name}")]
    Watch {
        name: String,
        #[source]
        source: watcher::Error,
    },
    #[error("DebugSession {name} was not gone within {}; last seen: {last}", humantime::format_duration(*.timeout))]
    Timeout {
        name: String,
        timeout: Duration,
        last: String,
    },
    #[error("DebugSession {name} has an unreadable ttl")]
    Ttl {
        name: String,
        #[source]
        source: TtlError,
    },
}

/// `shellcar ls`: prints the table of sessions.
pub async fn ls(args: LsArgs) -> Result<u8, Error> {
    let (client, namespace) = connect(&args.connection).await?;
    let api: Api<DebugSession> = if args.all_namespaces {
        Api::all(client)
    } else {
        Api::namespaced(client, &namespace)
    };
    let mut sessions = api
        .list(&ListParams::default())
        .await
        .map_err(Error::List)?
        .items;
    if sessions.is_empty() {
        if args.all_namespaces {
            eprintln!("No DebugSessions found.");
        } else {
            eprintln!("No DebugSessions found in namespace {namespace}.");
        }
        return Ok(0);
    }
    sessions.sort_by_key(|s| (s.namespace(), s.name_any()));
    print!(
        "{}",
        table(&sessions, args.all_namespaces, Timestamp::now())
    );
    Ok(0)
}

/// The table `ls` prints, columns padded as kubectl pads them.
fn table(sessions: &[DebugSession], all_namespaces: bool, now: Timestamp) -> String {
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "TARGET",
            "MODE",
            "PHASE",
            "REQUESTER",
            "EXPIRES",
        ]
        .map(String::from),
    ];
    for session in sessions {
        let status = session.status.as_ref();
        let spec = &session.spec;
        rows.push([
            session.namespace().unwrap_or_default(),
            session.name_any(),
            format!("{}/{}", short_kind(spec.target.kind), spec.target.name),
            status.and_then(|s| s.mode).unwrap_or(spec.mode).to_string(),
            status
                .and_then(|s| s.phase)
                .map_or("-", |p| p.as_str())
                .to_owned(),
            spec.requester
                .as_ref()
                .map_or_else(|| "-".to_owned(), |r| r.username.clone()),
            status
                .and_then(|s| s.expires_at.as_ref())
                .map_or_else(|| "-".to_owned(), |at| relative(now, at.0)),
        ]);
    }
    let skip = usize::from(!all_namespaces);
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().skip(skip) {
            if i == 6 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `at` as seen from `now`: `in 29m`, `2h5m ago`.
fn relative(now: Timestamp, at: Timestamp) -> String {
    let secs = at.duration_since(now).as_secs();
    if secs >= 0 {
        format!("in {}", short(secs.unsigned_abs()))
    } else {
        format!("{} ago", short(secs.unsigned_abs()))
    }
}

/// A duration the way kubectl's AGE column writes it: `45s`, `29m`, `2h5m`, `3d4h`.
fn short(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// `shellcar end`: deletes the session and waits until it is gone.
pub async fn end(args: EndArgs) -> Result<u8, Error> {
    let (client, namespace) = connect(&args.connection).await?;
    let api: Api<DebugSession> = Api::namespaced(client, &namespace);
    let last = {
        let progress = Progress::new();
        end_session(&api, &namespace, &args.name, args.timeout, &progress).await?
    };
    println!("{}", ended(&last));
    Ok(0)
}

/// Deletes session `name` and waits until the operator has torn it down and it is gone;
/// returns the session as last seen.
pub(crate) async fn end_session(
    api: &Api<DebugSession>,
    namespace: &str,
    name: &str,
    timeout: Duration,
    progress: &Progress,
) -> Result<DebugSession, Error> {
    let first = fetch(api, namespace, name).await?;
    api.delete(name, &DeleteParams::default())
        .await
        .map_err(|e| match refusal(&e) {
            Some(message) => Error::Refused(message),
            None => Error::Write {
                name: name.to_owned(),
                source: e,
            },
        })?;
    progress.line(&format!(
        "{name}: deleted; waiting for the operator to remove the debugger"
    ));
    let mut last = first;
    let mut phases = Phases::default();
    let wait = async {
        let stream = watcher::watch_object(api.clone(), name);
        futures::pin_mut!(stream);
        while let Some(seen) = stream.try_next().await.map_err(|source| Error::Watch {
            name: name.to_owned(),
            source,
        })? {
            match seen {
                // Another object of the same name would be someone else's session.
                Some(session) if session.uid() == last.uid() => {
                    phases.show(progress, &session);
                    last = session;
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(result) => result.map(|()| last),
        Err(_) => Err(Error::Timeout {
            name: name.to_owned(),
            timeout,
            last: super::progress::phase_line(&last),
        }),
    }
}

/// What `end` reports: the target restored, and anything that had to be left behind.
pub(crate) fn ended(session: &DebugSession) -> String {
    let name = session.name_any();
    let target = &session.spec.target;
    let mut out = format!(
        "DebugSession {name} ended: its debugger is removed from {}/{}",
        short_kind(target.kind),
        target.name
    );
    for leftover in session.status.iter().flat_map(|s| &s.leftovers) {
        let _ = write!(out, "\n  left behind: {leftover}");
    }
    out
}

/// The ttl that extends `current` by `by`, written as the CRD wants it.
fn extended(current: &str, by: Duration) -> Result<String, TtlError> {
    let now = ttl::parse(current, Duration::MAX)?;
    Ok(ttl::format(now.saturating_add(by)))
}

/// `shellcar extend`: raises spec.ttl by a duration; the webhook and the policy decide.
pub async fn extend(args: ExtendArgs) -> Result<u8, Error> {
    let (client, namespace) = connect(&args.connection).await?;
    let api: Api<DebugSession> = Api::namespaced(client, &namespace);
    let name = args.name.as_str();
    let session = fetch(&api, &namespace, name).await?;
    let ttl = extended(&session.spec.ttl, args.duration).map_err(|source| Error::Ttl {
        name: name.to_owned(),
        source,
    })?;
    // The resourceVersion makes the patch conditional: two extends at once do not add up
    // to less than both.
    let patch = json!({
        "metadata": {"resourceVersion": session.resource_version()},
        "spec": {"ttl": ttl},
    });
    let patched = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| match refusal(&e) {
            Some(message) => Error::Refused(message),
            None => Error::Write {
                name: name.to_owned(),
                source: e,
            },
        })?;
    let generation = patched.metadata.generation.unwrap_or_default();
    let observed = await_condition(api, name, move |s: Option<&DebugSession>| {
        s.and_then(|s| s.status.as_ref())
            .and_then(|s| s.observed_generation)
            .is_none_or(|g| g >= generation)
    });
    let expires = match tokio::time::timeout(Duration::from_secs(30), observed).await {
        Ok(Ok(Some(s))) => s.status.and_then(|s| s.expires_at).map(|at| at.0),
        _ => None,
    };
    let now = Timestamp::now();
    match expires {
        Some(at) => println!(
            "DebugSession {name}: ttl {} -> {ttl}; expires at {at} ({})",
            session.spec.ttl,
            relative(now, at)
        ),
        None => println!(
            "DebugSession {name}: ttl {} -> {ttl}; the operator has not reported the new expiry yet",
            session.spec.ttl
        ),
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
