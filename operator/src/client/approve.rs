//! The client side of approvals: `shellcar approve` and `shellcar reject` show a session
//! that awaits approval, ask, and put the approver's annotation on it. shellcar's admission
//! webhook checks the approver, records the decision in `spec.approval` and removes the
//! annotation, all within the same request.
//!
//! The decision is bound to what was shown: the annotation names the session's uid and
//! generation ([`Seen`]), which the webhook compares with the stored session, and the
//! patch carries the resourceVersion that was read, so that the API server refuses it
//! if anything of the session (its status's exposure report too) changed since.
//! Everything shown comes from the session, written by its requester: control characters
//! are escaped ([`escape`]), so that nothing in it can redraw the terminal.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{ConnectError, FetchError, connect, fetch};
use crate::cli::DecideArgs;
use crate::crd::Seen;
use crate::crd::{Approval, DebugSession, Decision, Exposure, Mount, Phase};
use crate::naming;

/// Errors of `shellcar approve` and `shellcar reject`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The session is not waiting for a decision; the sentence says why.
    #[error("{0}")]
    NotAwaiting(String),
    #[error("stdin is not a terminal: pass --yes to {verb} DebugSession {name} without a question")]
    NoTerminal { verb: &'static str, name: String },
    #[error("reading the answer")]
    Answer(#[source] std::io::Error),
    /// The API server refused the annotation (the webhook: self-approval, a missing
    /// `approve` verb; or RBAC: no `patch`), in its own words.
    #[error("{0}")]
    Refused(String),
    #[error("annotating DebugSession {name}")]
    Patch {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The session changed (or was deleted and created again) after it was shown.
    #[error(
        "DebugSession {0} changed after it was shown, so nothing was decided: run the command again to see it as it is now"
    )]
    Changed(String),
    #[error("DebugSession {0} as read has no uid, generation or resourceVersion")]
    Unstored(String),
    #[error("writing the annotation")]
    Encode(#[source] serde_json::Error),
    #[error(
        "DebugSession {0} was annotated, but no decision was recorded in spec.approval: \
         is shellcar's admission webhook installed?"
    )]
    NotRecorded(String),
}

/// Shows the session, asks (unless `--yes`), and records `decision` through the webhook.
/// Returns the exit code: 0 when the decision is recorded, 1 when the user said no.
pub async fn decide(decision: Decision, args: DecideArgs) -> Result<u8, Error> {
    let (client, namespace) = connect(&args.connection).await?;
    let api: Api<DebugSession> = Api::namespaced(client, &namespace);
    let name = args.name.as_str();
    let session = fetch(&api, &namespace, name).await?;
    if let Some(why) = why_not_awaiting(&session) {
        return Err(Error::NotAwaiting(why));
    }
    print!("{}", summary(&session));
    if !args.yes && !ask(decision, name)? {
        eprintln!("aborted: DebugSession {name} is unchanged");
        return Ok(1);
    }
    let patch = Patch::Merge(patch_body(decision, &session, &args.reason)?);
    // The response is the session as stored after admission, so it carries what the
    // webhook recorded: no second read needed.
    let recorded = api
        .patch(name, &PatchParams::default(), &patch)
        .await
        .map_err(|e| match e {
            // The resourceVersion sent is not the stored one.
            kube::Error::Api(status) if status.code == 409 => Error::Changed(name.to_owned()),
            kube::Error::Api(status) if !status.message.is_empty() => {
                Error::Refused(escape(&status.message))
            }
            source => Error::Patch {
                name: name.to_owned(),
                source,
            },
        })?;
    println!("{}", outcome(&recorded, decision)?);
    Ok(0)
}

/// Asks on the terminal; true for yes.
fn ask(decision: Decision, name: &str) -> Result<bool, Error> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::NoTerminal {
            verb: verb(decision),
            name: name.to_owned(),
        });
    }
    eprint!("{}? [y/N] ", question(decision, name));
    std::io::stderr().flush().map_err(Error::Answer)?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(Error::Answer)?;
    Ok(confirmed(&answer))
}

fn verb(decision: Decision) -> &'static str {
    match decision {
        Decision::Approved => "approve",
        Decision::Rejected => "reject",
    }
}

fn question(decision: Decision, name: &str) -> String {
    match decision {
        Decision::Approved => format!("Approve session {name}"),
        Decision::Rejected => format!("Reject session {name}"),
    }
}

/// True for `y` or `yes` (any case, surrounding blanks ignored); everything else is no.
fn confirmed(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// The merge patch that asks the webhook to record `decision` on `session` as it was
/// shown: the annotation holds its uid, generation and the reason ([`Seen`]), and
/// `metadata.resourceVersion` makes the API server refuse the patch (409 Conflict) if the
/// stored session is no longer the one read.
fn patch_body(
    decision: Decision,
    session: &DebugSession,
    reason: &str,
) -> Result<serde_json::Value, Error> {
    let annotation = match decision {
        Decision::Approved => naming::APPROVE_ANNOTATION,
        Decision::Rejected => naming::REJECT_ANNOTATION,
    };
    let unstored = || Error::Unstored(session.name_any());
    let seen = Seen::of(session, reason).ok_or_else(unstored)?;
    let version = session.resource_version().ok_or_else(unstored)?;
    let value = seen.to_annotation().map_err(Error::Encode)?;
    Ok(json!({
        "metadata": {
            "resourceVersion": version,
            "annotations": { annotation: value },
        }
    }))
}

/// `text` with every character that could move the cursor, change colours, clear the
/// screen or reorder what is shown (control characters, bidirectional overrides,
/// invisible format characters) and every backslash written as a Rust escape (`\u{1b}`,
/// `\n`, `\\`), so that what the requester wrote is printed as it is and nothing else.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // Quotes print as they are; `escape_debug` would add a backslash.
            '"' | '\'' => out.push(c),
            // Not `\0`, which would run into a digit after it.
            '\0' => out.push_str("\\u{0}"),
            // Whatever `{:?}` would not print as it is: control and format characters,
            // unassigned and private-use ones, separators other than the space.
            c => out.extend(c.escape_debug()),
        }
    }
    out
}

/// A list item as a quoted, escaped string (`"sleep 1d"`), so that where one item ends
/// and the next begins shows.
fn quoted(item: &str) -> String {
    format!("{item:?}")
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| quoted(i))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `approved by alice at 2025-03-01T10:00:00Z: reason`.
fn describe(approval: &Approval) -> String {
    let decided = match approval.decision {
        Decision::Approved => "approved",
        Decision::Rejected => "rejected",
    };
    let mut out = format!(
        "{decided} by {} at {}",
        escape(&approval.approver),
        approval.time.0
    );
    if approval.reason.is_empty() {
        out.push_str(" (no reason given)");
    } else {
        let _ = write!(out, ": {}", escape(&approval.reason));
    }
    out
}

/// Why the session cannot be decided on now, or None when it awaits approval.
fn why_not_awaiting(session: &DebugSession) -> Option<String> {
    let name = session.name_any();
    if let Some(approval) = &session.spec.approval {
        return Some(format!(
            "DebugSession {name} was already {}",
            describe(approval)
        ));
    }
    let status = session.status.as_ref();
    let phase = match status.and_then(|s| s.phase) {
        Some(Phase::AwaitingApproval) => return None,
        Some(phase) => phase,
        None => {
            return Some(format!(
                "DebugSession {name} has no phase yet: the operator has not looked at it; \
                 try again in a moment"
            ));
        }
    };
    let mut why = format!(
        "DebugSession {name} is in phase {}, not AwaitingApproval",
        phase.as_str()
    );
    if let Some(policy) = status.and_then(|s| s.policy.as_deref()) {
        let _ = write!(why, " (policy {})", escape(policy));
    }
    if let Some(message) = status.and_then(|s| s.message.as_deref()) {
        let _ = write!(why, ": {}", escape(message));
    }
    Some(why)
}

/// What an approver should see before deciding: the session (which the decision is bound
/// to), every field of the request that changes what the debugger can do, who asked, the
/// policy that holds it, and what the debugger will be able to read. Every value is
/// escaped.
fn summary(session: &DebugSession) -> String {
    let spec = &session.spec;
    let debugger = &spec.debugger;
    let status = session.status.as_ref();
    let mut out = format!(
        "DebugSession {}/{} awaits approval\n",
        escape(&session.namespace().unwrap_or_default()),
        escape(&session.name_any())
    );
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(out, "  {key:<10} {value}");
    };
    line(
        "session",
        &format!(
            "uid {}, generation {} (the decision holds for this one only)",
            escape(session.metadata.uid.as_deref().unwrap_or("unknown")),
            session
                .metadata
                .generation
                .map_or("unknown".to_owned(), |g| g.to_string())
        ),
    );
    let mut target = format!("{} {}", spec.target.kind, escape(&spec.target.name));
    if let Some(container) = &spec.target.container {
        let _ = write!(target, ", container {}", escape(container));
    }
    line("target", &target);
    let mode = match status.and_then(|s| s.mode) {
        Some(resolved) if resolved != spec.mode => {
            format!("{} (resolves to {resolved})", spec.mode)
        }
        _ => spec.mode.to_string(),
    };
    line("mode", &mode);
    line("pods", &format!("{:?}", spec.pods));
    line("profile", &format!("{:?}", debugger.profile));
    line(
        "image",
        &debugger
            .image
            .as_deref()
            .map_or("the operator's --default-image".to_owned(), escape),
    );
    let (command, args) = match (&debugger.command, &debugger.args) {
        (Some(command), args) => (quoted_list(command), args.as_deref().map(quoted_list)),
        (None, Some(args)) => ("the image's entrypoint".to_owned(), Some(quoted_list(args))),
        (None, None) => (
            r#"the default shell ("sh" "-c" "while true; do sh; done")"#.to_owned(),
            None,
        ),
    };
    line("command", &command);
    line("args", args.as_deref().unwrap_or("none"));
    let env = env(debugger.env.as_deref().unwrap_or_default());
    match env.split_first() {
        None => line("env", "none"),
        Some((first, rest)) => {
            line("env", first);
            for more in rest {
                line("", more);
            }
        }
    }
    line("resources", &resources(debugger.resources.as_ref()));
    line(
        "teardown",
        &format!(
            "ephemeral {:?} (what happens to a pod with an ephemeral debugger)",
            spec.teardown.ephemeral
        ),
    );
    line(
        "ttl",
        &format!("{}, counted from approval", escape(&spec.ttl)),
    );
    let requester = match &spec.requester {
        Some(r) if r.groups.is_empty() => escape(&r.username),
        Some(r) => format!(
            "{} (groups: {})",
            escape(&r.username),
            escape(&r.groups.join(", "))
        ),
        None => "not recorded".to_owned(),
    };
    line("requester", &requester);
    line(
        "policy",
        &status
            .and_then(|s| s.policy.as_deref())
            .map_or("not reported yet".to_owned(), escape),
    );
    if let Some(message) = status.and_then(|s| s.message.as_deref()) {
        line("status", &escape(message));
    }
    out.push_str(&exposure(session));
    out
}

/// One line per env var of the debugger: a literal value, quoted, or where the value
/// comes from.
fn env(vars: &[EnvVar]) -> Vec<String> {
    vars.iter()
        .map(|var| {
            let name = escape(&var.name);
            let from = var.value_from.as_ref();
            if let Some(s) = from.and_then(|f| f.secret_key_ref.as_ref()) {
                format!(
                    "{name} from Secret {}, key {}",
                    escape(&s.name),
                    escape(&s.key)
                )
            } else if let Some(c) = from.and_then(|f| f.config_map_key_ref.as_ref()) {
                format!(
                    "{name} from ConfigMap {}, key {}",
                    escape(&c.name),
                    escape(&c.key)
                )
            } else if let Some(f) = from.and_then(|f| f.field_ref.as_ref()) {
                format!("{name} from the pod's field {}", escape(&f.field_path))
            } else if let Some(r) = from.and_then(|f| f.resource_field_ref.as_ref()) {
                format!("{name} from the container's {}", escape(&r.resource))
            } else if from.is_some() {
                format!("{name} from a source this client does not know")
            } else {
                format!(
                    "{name} = {}",
                    quoted(var.value.as_deref().unwrap_or_default())
                )
            }
        })
        .collect()
}

/// `requests cpu 100m, memory 64Mi; limits memory 128Mi`, or `none set`.
fn resources(resources: Option<&ResourceRequirements>) -> String {
    let parts: Vec<String> = [
        ("requests", resources.and_then(|r| r.requests.as_ref())),
        ("limits", resources.and_then(|r| r.limits.as_ref())),
    ]
    .into_iter()
    .filter_map(|(what, quantities)| {
        let items: Vec<String> = quantities?
            .iter()
            .map(|(name, q)| format!("{} {}", escape(name), escape(&q.0)))
            .collect();
        (!items.is_empty()).then(|| format!("{what} {}", items.join(", ")))
    })
    .collect();
    if parts.is_empty() {
        "none set".to_owned()
    } else {
        parts.join("; ")
    }
}

/// `status.exposure`, readable; says so when it is empty or not computed yet.
fn exposure(session: &DebugSession) -> String {
    const HEAD: &str = "What the debugger can read through the shared process namespace";
    let status = session.status.as_ref();
    let listed = status.map_or(&[][..], |s| s.exposure.as_slice());
    if listed.is_empty() {
        // An empty list is dropped from the object, so "nothing found" and "not looked"
        // look alike. The operator writes the report whenever it sets AwaitingApproval,
        // so a phase tells them apart.
        let why = if status.and_then(|s| s.phase).is_none() {
            "not computed yet: the operator has not reported on this session"
        } else {
            "nothing listed: the target names no Secret env vars, Secret or projected \
             volumes, ServiceAccount token, hostPath mounts, node namespaces, privileged \
             containers or added capabilities, or it does not exist yet"
        };
        return format!("{HEAD}: {why}.\n{PROC_NOTE}");
    }
    let mut out = format!("{HEAD} (status.exposure):\n");
    for container in listed {
        out.push_str(&render_container(container));
    }
    out.push_str(PROC_NOTE);
    out
}

/// Whatever status lists, /proc shows the rest (README: caveats of a shared process
/// namespace).
const PROC_NOTE: &str = "Besides, every process's environment, arguments and files are \
                         readable through /proc.\n";

fn render_container(exposure: &Exposure) -> String {
    let mut out = format!("  container {}\n", escape(&exposure.container));
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "    {key:<16} {value}");
    };
    let mut empty = true;
    if !exposure.secret_env.is_empty() {
        let vars: Vec<String> = exposure
            .secret_env
            .iter()
            .map(|v| format!("{} (Secret {})", escape(&v.name), escape(&v.secret)))
            .collect();
        line("Secret env vars", vars.join(", "));
        empty = false;
    }
    if !exposure.secret_env_from.is_empty() {
        line(
            "env from Secrets",
            escape(&exposure.secret_env_from.join(", ")) + " (every key)",
        );
        empty = false;
    }
    if !exposure.secret_volumes.is_empty() {
        line("Secret volumes", mounts(&exposure.secret_volumes));
        empty = false;
    }
    if let Some(token) = &exposure.service_account_token {
        line(
            "token",
            format!(
                "ServiceAccount {} at {}",
                escape(&token.service_account),
                escape(&token.path)
            ),
        );
        empty = false;
    }
    if !exposure.host_paths.is_empty() {
        line("hostPath", mounts(&exposure.host_paths));
        empty = false;
    }
    if !exposure.host_namespaces.is_empty() {
        line(
            "node namespaces",
            escape(&exposure.host_namespaces.join(", ")),
        );
        empty = false;
    }
    if exposure.privileged {
        line(
            "privileged",
            "yes: every capability, and the node's devices".to_owned(),
        );
        empty = false;
    }
    if !exposure.added_capabilities.is_empty() {
        line(
            "capabilities",
            escape(&exposure.added_capabilities.join(", ")) + " (added)",
        );
        empty = false;
    }
    if empty {
        out.push_str("    nothing listed\n");
    }
    out
}

fn mounts(mounts: &[Mount]) -> String {
    let mounts: Vec<String> = mounts
        .iter()
        .map(|m| {
            format!(
                "{} at {} ({})",
                escape(&m.volume),
                escape(&m.path),
                escape(&m.source)
            )
        })
        .collect();
    mounts.join(", ")
}

/// What the webhook recorded, after the annotation went through.
fn outcome(session: &DebugSession, decision: Decision) -> Result<String, Error> {
    let name = session.name_any();
    match &session.spec.approval {
        Some(approval) if approval.decision == decision => Ok(format!(
            "DebugSession {} {}",
            escape(&name),
            describe(approval)
        )),
        Some(approval) => Err(Error::NotAwaiting(format!(
            "DebugSession {name} was meanwhile {}",
            describe(approval)
        ))),
        None => Err(Error::NotRecorded(name)),
    }
}

#[cfg(test)]
mod tests;
