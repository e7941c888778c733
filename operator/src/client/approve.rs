//! The client side of approvals: `shellcar approve` and `shellcar reject` show a session
//! that awaits approval, ask, and put the approver's annotation on it. shellcar's admission
//! webhook checks the approver, records the decision in `spec.approval` and removes the
//! annotation, all within the same request.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{ConnectError, FetchError, connect, fetch};
use crate::cli::DecideArgs;
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
    let patch = Patch::Merge(patch_body(decision, &args.reason));
    // The response is the session as stored after admission, so it carries what the
    // webhook recorded: no second read needed.
    let recorded = api
        .patch(name, &PatchParams::default(), &patch)
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) if !status.message.is_empty() => {
                Error::Refused(status.message)
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

/// The merge patch that asks the webhook to record `decision`: the annotation, with the
/// reason as its value.
fn patch_body(decision: Decision, reason: &str) -> serde_json::Value {
    let annotation = match decision {
        Decision::Approved => naming::APPROVE_ANNOTATION,
        Decision::Rejected => naming::REJECT_ANNOTATION,
    };
    json!({ "metadata": { "annotations": { annotation: reason } } })
}

/// `approved by alice at 2025-03-01T10:00:00Z: reason`.
fn describe(approval: &Approval) -> String {
    let decided = match approval.decision {
        Decision::Approved => "approved",
        Decision::Rejected => "rejected",
    };
    let mut out = format!("{decided} by {} at {}", approval.approver, approval.time.0);
    if approval.reason.is_empty() {
        out.push_str(" (no reason given)");
    } else {
        let _ = write!(out, ": {}", approval.reason);
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
        let _ = write!(why, " (policy {policy})");
    }
    if let Some(message) = status.and_then(|s| s.message.as_deref()) {
        let _ = write!(why, ": {message}");
    }
    Some(why)
}

/// What an approver should see before deciding: the request, who made it, the policy
/// that admits it, and what the debugger will be able to read.
fn summary(session: &DebugSession) -> String {
    let spec = &session.spec;
    let status = session.status.as_ref();
    let mut out = format!(
        "DebugSession {}/{} awaits approval\n",
        session.namespace().unwrap_or_default(),
        session.name_any()
    );
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(out, "  {key:<10} {value}");
    };
    let mut target = format!("{} {}", spec.target.kind, spec.target.name);
    if let Some(container) = &spec.target.container {
        let _ = write!(target, ", container {container}");
    }
    line("target", &target);
    let mode = match status.and_then(|s| s.mode) {
        Some(resolved) if resolved != spec.mode => {
            format!("{} (resolves to {resolved})", spec.mode)
        }
        _ => spec.mode.to_string(),
    };
    line("mode", &mode);
    line("profile", &format!("{:?}", spec.debugger.profile));
    line(
        "image",
        spec.debugger
            .image
            .as_deref()
            .unwrap_or("the operator's --default-image"),
    );
    let command: Vec<&str> = [&spec.debugger.command, &spec.debugger.args]
        .into_iter()
        .flatten()
        .flatten()
        .map(String::as_str)
        .collect();
    if !command.is_empty() {
        line("command", &command.join(" "));
    }
    line("ttl", &format!("{}, counted from approval", spec.ttl));
    let requester = match &spec.requester {
        Some(r) if r.groups.is_empty() => r.username.clone(),
        Some(r) => format!("{} (groups: {})", r.username, r.groups.join(", ")),
        None => "not recorded".to_owned(),
    };
    line("requester", &requester);
    line(
        "policy",
        status
            .and_then(|s| s.policy.as_deref())
            .unwrap_or("not reported yet"),
    );
    if let Some(message) = status.and_then(|s| s.message.as_deref()) {
        line("status", message);
    }
    out.push_str(&exposure(session));
    out
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
             volumes, ServiceAccount token or hostPath mounts, or it does not exist yet"
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
    let mut out = format!("  container {}\n", exposure.container);
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "    {key:<16} {value}");
    };
    let mut empty = true;
    if !exposure.secret_env.is_empty() {
        let vars: Vec<String> = exposure
            .secret_env
            .iter()
            .map(|v| format!("{} (Secret {})", v.name, v.secret))
            .collect();
        line("Secret env vars", vars.join(", "));
        empty = false;
    }
    if !exposure.secret_env_from.is_empty() {
        line(
            "env from Secrets",
            exposure.secret_env_from.join(", ") + " (every key)",
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
            format!("ServiceAccount {} at {}", token.service_account, token.path),
        );
        empty = false;
    }
    if !exposure.host_paths.is_empty() {
        line("hostPath", mounts(&exposure.host_paths));
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
        .map(|m| format!("{} at {} ({})", m.volume, m.path, m.source))
        .collect();
    mounts.join(", ")
}

/// What the webhook recorded, after the annotation went through.
fn outcome(session: &DebugSession, decision: Decision) -> Result<String, Error> {
    let name = session.name_any();
    match &session.spec.approval {
        Some(approval) if approval.decision == decision => {
            Ok(format!("DebugSession {name} {}", describe(approval)))
        }
        Some(approval) => Err(Error::NotAwaiting(format!(
            "DebugSession {name} was meanwhile {}",
            describe(approval)
        ))),
        None => Err(Error::NotRecorded(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(yaml: &str) -> DebugSession {
        serde_yaml::from_str(yaml).unwrap()
    }

    const AWAITING: &str = r#"
apiVersion: debug.shellcar.dev/v1alpha1
kind: DebugSession
metadata: {name: web-debug, namespace: shop}
spec:
  target: {kind: Deployment, name: web, container: nginx}
  debugger: {image: "registry.example/tools/busybox:1.36", profile: Baseline}
  ttl: 30m
  requester: {username: jane, groups: [dev, "system:authenticated"]}
status:
  phase: AwaitingApproval
  policy: prod
  mode: Sidecar
  target: {kind: Deployment, name: web, uid: u1}
  message: waiting for approval until 2025-03-01T10:30:00Z
  exposure:
    - container: nginx
      secretEnv: [{name: DB_PASSWORD, secret: db}]
      secretEnvFrom: [api-keys]
      secretVolumes: [{volume: tls, path: /etc/tls, source: Secret web-tls}]
      serviceAccountToken:
        serviceAccount: web
        path: /var/run/secrets/kubernetes.io/serviceaccount
      hostPaths: [{volume: logs, path: /var/log/app, source: /var/log}]
    - container: init
"#;

    #[test]
    fn summary_names_the_request_the_requester_the_policy_and_the_exposure() {
        let text = summary(&session(AWAITING));
        let expected = [
            "DebugSession shop/web-debug awaits approval",
            "  target     Deployment web, container nginx",
            "  mode       Auto (resolves to Sidecar)",
            "  profile    Baseline",
            "  image      registry.example/tools/busybox:1.36",
            "  ttl        30m, counted from approval",
            "  requester  jane (groups: dev, system:authenticated)",
            "  policy     prod",
            "  status     waiting for approval until 2025-03-01T10:30:00Z",
            "What the debugger can read through the shared process namespace (status.exposure):",
            "  container nginx",
            "    Secret env vars  DB_PASSWORD (Secret db)",
            "    env from Secrets api-keys (every key)",
            "    Secret volumes   tls at /etc/tls (Secret web-tls)",
            "    token            ServiceAccount web at /var/run/secrets/kubernetes.io/serviceaccount",
            "    hostPath         logs at /var/log/app (/var/log)",
            "  container init",
            "    nothing listed",
            "Besides, every process's environment, arguments and files are readable through /proc.",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    }

    #[test]
    fn summary_says_what_is_defaulted_or_unknown() {
        let text = summary(&session(
            r#"
metadata: {name: s, namespace: shop}
spec:
  target: {kind: Pod, name: p}
  debugger: {command: [sh, -c], args: ["sleep 1d"]}
status: {phase: AwaitingApproval}
"#,
        ));
        assert!(text.contains("  target     Pod p\n"), "{text}");
        assert!(text.contains("  mode       Auto\n"), "{text}");
        assert!(
            text.contains("  image      the operator's --default-image\n"),
            "{text}"
        );
        assert!(text.contains("  command    sh -c sleep 1d\n"), "{text}");
        assert!(
            text.contains("  ttl        1h, counted from approval\n"),
            "{text}"
        );
        assert!(text.contains("  requester  not recorded\n"), "{text}");
        assert!(text.contains("  policy     not reported yet\n"), "{text}");
        assert!(
            text.contains(": nothing listed: the target names no Secret env vars"),
            "{text}"
        );
    }

    #[test]
    fn empty_exposure_is_told_apart_from_one_not_computed() {
        let base = r#"
metadata: {name: s, namespace: shop}
spec: {target: {kind: Pod, name: p}}
"#;
        let none = session(base);
        assert!(exposure(&none).contains("not computed yet: the operator has not reported"));
        // While it awaits approval, the operator has looked, target or no target.
        let looked = session(&format!("{base}status: {{phase: AwaitingApproval}}\n"));
        let text = exposure(&looked);
        assert!(text.starts_with("What the debugger can read"), "{text}");
        assert!(
            text.contains(": nothing listed: the target names no"),
            "{text}"
        );
        assert!(!text.contains("not computed"), "{text}");
    }

    #[test]
    fn only_a_session_awaiting_approval_can_be_decided() {
        assert_eq!(why_not_awaiting(&session(AWAITING)), None);

        let approved = AWAITING.replace(
            "  requester:",
            "  approval: {decision: Approved, approver: bob, reason: incident 42, \
             time: \"2025-03-01T10:05:00Z\"}\n  requester:",
        );
        assert_eq!(
            why_not_awaiting(&session(&approved)).as_deref(),
            Some(
                "DebugSession web-debug was already approved by bob at \
                 2025-03-01T10:05:00Z: incident 42"
            )
        );

        let active = AWAITING
            .replace("phase: AwaitingApproval", "phase: Active")
            .replace("policy: prod", "policy: (built-in)")
            .replace(
                "waiting for approval until 2025-03-01T10:30:00Z",
                "debugger running",
            );
        assert_eq!(
            why_not_awaiting(&session(&active)).as_deref(),
            Some(
                "DebugSession web-debug is in phase Active, not AwaitingApproval \
                 (policy (built-in)): debugger running"
            )
        );

        let new = session("metadata: {name: s}\nspec: {target: {kind: Pod, name: p}}\n");
        let why = why_not_awaiting(&new).unwrap();
        assert!(why.contains("has no phase yet"), "{why}");
    }

    #[test]
    fn only_y_or_yes_confirms() {
        for yes in ["y", "Y", "yes", "YES", " yes\n", "y\r\n"] {
            assert!(confirmed(yes), "{yes:?}");
        }
        for no in [
            "", "\n", "n", "no", "N", "yess", "ye", "sure", "y es", "oui",
        ] {
            assert!(!confirmed(no), "{no:?}");
        }
        assert_eq!(
            question(Decision::Approved, "web-debug"),
            "Approve session web-debug"
        );
        assert_eq!(
            question(Decision::Rejected, "web-debug"),
            "Reject session web-debug"
        );
    }

    #[test]
    fn patch_sets_the_annotation_to_the_reason() {
        assert_eq!(
            patch_body(Decision::Approved, "incident 42"),
            json!({"metadata": {"annotations": {"debug.shellcar.dev/approve": "incident 42"}}})
        );
        assert_eq!(
            patch_body(Decision::Rejected, ""),
            json!({"metadata": {"annotations": {"debug.shellcar.dev/reject": ""}}})
        );
    }

    #[test]
    fn outcome_reports_who_is_recorded() {
        let recorded = |decision: &str, reason: &str| {
            session(&AWAITING.replace(
                "  requester:",
                &format!(
                    "  approval: {{decision: {decision}, approver: bob, reason: \"{reason}\", \
                     time: \"2025-03-01T10:05:00Z\"}}\n  requester:"
                ),
            ))
        };
        assert_eq!(
            outcome(&recorded("Approved", "incident 42"), Decision::Approved).unwrap(),
            "DebugSession web-debug approved by bob at 2025-03-01T10:05:00Z: incident 42"
        );
        assert_eq!(
            outcome(&recorded("Rejected", ""), Decision::Rejected).unwrap(),
            "DebugSession web-debug rejected by bob at 2025-03-01T10:05:00Z (no reason given)"
        );
        let raced = outcome(&recorded("Rejected", "no"), Decision::Approved).unwrap_err();
        assert_eq!(
            raced.to_string(),
            "DebugSession web-debug was meanwhile rejected by bob at 2025-03-01T10:05:00Z: no"
        );
        assert!(matches!(
            outcome(&session(AWAITING), Decision::Approved),
            Err(Error::NotRecorded(name)) if name == "web-debug"
        ));
    }
}
