//! Names derived from a session: its container, field manager and markers.
//!
//! Every name is a pure function of the session's name, so an operator that restarts
//! finds what it made before without keeping any state of its own.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Prefix of every debugger container and of the field managers.
const PREFIX: &str = "shellcar";

/// Label that every debugged pod template carries, shared by all sessions on it; the
/// operator watches only pods with this label.
pub const DEBUGGED_LABEL: &str = "debug.shellcar.dev/debugged";

/// Finalizer that holds a session until its debugger is removed.
pub const FINALIZER: &str = "debug.shellcar.dev/teardown";

/// Field manager of the controller's own writes (status).
pub const CONTROLLER_MANAGER: &str = "shellcar";

/// Prefix of annotations naming the sessions that debug a pod template.
pub const SESSION_ANNOTATION_PREFIX: &str = "debug.shellcar.dev/";

/// Annotation of a Copy session's pod naming the pod it copies. Outside the session
/// annotation prefix, which maps pods to sessions.
pub const COPY_OF_ANNOTATION: &str = "shellcar.dev/copy-of";

/// Prefix of annotations naming who asked for the debugger in a pod (or pod template):
/// `requester.shellcar.dev/<container>: <username>`. Outside the session annotation
/// prefix, which maps pods to sessions.
pub const REQUESTER_ANNOTATION_PREFIX: &str = "requester.shellcar.dev/";

/// Label that the Label teardown policy leaves on a pod with a stopped ephemeral debugger.
pub const EPHEMERAL_DEBUGGED_LABEL: &str = "debug.shellcar.dev/ephemeral-debugged";

/// Annotation an approver puts on a DebugSession to approve it; its value is the reason.
/// The admission webhook checks the approver, records `spec.approval` and removes it.
pub const APPROVE_ANNOTATION: &str = "debug.shellcar.dev/approve";

/// Annotation an approver puts on a DebugSession to reject it; its value is the reason.
pub const REJECT_ANNOTATION: &str = "debug.shellcar.dev/reject";

/// What `status.policy` says when no DebugPolicy selects the namespace and the built-in
/// default admitted the session. Not a valid object name, so no policy can be mistaken
/// for it.
pub const BUILT_IN_POLICY: &str = "(built-in)";

/// Hex digits of a session name's hash in the names derived from it: 64 bits, so that no
/// two session names a user can choose share a container name or field manager by luck or
/// by search (a 32-bit hash can be matched by brute force in seconds).
const HASH_DIGITS: usize = 16;

/// [`HASH_DIGITS`] hex digits of SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest
        .iter()
        .take(HASH_DIGITS / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `s` made into the start of a DNS label: lowercase alphanumerics and dashes, at most
/// `max` characters, no trailing dash.
fn label_part(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Name of the debugger container of session `session`: `shellcar-<name>-<hash>`.
///
/// At most 63 characters (a DNS label). The hash of the full session name keeps two
/// sessions apart even when their names differ only after the cut or in dots, and the
/// prefix keeps it apart from the application's own containers.
pub fn container_name(session: &str) -> String {
    // 63 = "shellcar" + "-" + name part + "-" + the hash
    let part = label_part(session, 63 - PREFIX.len() - 2 - HASH_DIGITS);
    if part.is_empty() {
        format!("{PREFIX}-{}", short_hash(session))
    } else {
        format!("{PREFIX}-{part}-{}", short_hash(session))
    }
}

/// Name of the ephemeral container that stops session `session`'s Ephemeral debugger
/// from the operator's own image: `shellcar-stop-<hash>`.
pub fn stopper_name(session: &str) -> String {
    format!("{PREFIX}-stop-{}", short_hash(session))
}

/// Name of the pod that a Copy session creates. The container name's rules (a DNS label,
/// unique per session) suit a pod name too.
pub fn copy_name(session: &str) -> String {
    container_name(session)
}

/// Server-side apply field manager of session `session`: `shellcar.dev/<name>`.
///
/// Each session owns its changes to a target under this manager, so that removing them
/// removes exactly what that session added. Field managers may be 128 characters long.
pub fn field_manager(session: &str) -> String {
    const MAX: usize = 128;
    let plain = format!("{PREFIX}.dev/{session}");
    if plain.len() <= MAX {
        plain
    } else {
        // "shellcar.dev/" + head + "-" + the hash
        let head: String = session
            .chars()
            .take(MAX - PREFIX.len() - 5 - 1 - HASH_DIGITS)
            .collect();
        format!("{PREFIX}.dev/{head}-{}", short_hash(session))
    }
}

/// True for the field managers of shellcar sessions.
pub fn is_session_manager(manager: &str) -> bool {
    manager.starts_with("shellcar.dev/")
}

/// The pod template annotation that names the session owning container `container`.
pub fn session_annotation(container: &str) -> String {
    format!("{SESSION_ANNOTATION_PREFIX}{container}")
}

/// The annotation that names the requester of the session owning container `container`.
pub fn requester_annotation(container: &str) -> String {
    format!("{REQUESTER_ANNOTATION_PREFIX}{container}")
}

/// The annotations that mark what session `session` (whose debugger is `container`) put
/// in a pod or pod template: the session's name and, if known, who asked for it.
pub fn marks(container: &str, session: &str, requester: &str) -> BTreeMap<String, String> {
    let mut marks = BTreeMap::from([(session_annotation(container), session.to_owned())]);
    if !requester.is_empty() {
        marks.insert(requester_annotation(container), requester.to_owned());
    }
    marks
}

/// The command that attaches a terminal to a debugger container.
pub fn attach_command(namespace: &str, pod: &str, container: &str) -> String {
    format!("kubectl attach -it -n {namespace} {pod} -c {container}")
}

#[cfg(test)]
mod tests;
