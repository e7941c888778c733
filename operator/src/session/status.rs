//! Status of a session: phase, conditions and pods, computed from what the reconciler saw.
//!
//! Pure functions: the reconciler gathers facts (the pods among them observed by
//! `pods`), this module turns them into the status to write and the Events that
//! tell people what changed. The condition builder is `report`'s, shared with the
//! DebugPolicy status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{
    DebugPod, DebugSessionStatus, Exposure, Mode, Phase, ResolvedTarget, TargetChange,
};
use crate::naming;
use crate::session::pods::{FAILING_REASONS, UNSCHEDULABLE};
use crate::session::report::Stamp;

/// Condition types that every status carries.
pub use crate::crd::conditions::{EXPIRED, INJECTED, READY, RECONCILING, STALLED};

/// What the reconciler found, from which the status follows.
#[derive(Clone, Debug, PartialEq)]
pub enum Situation {
    /// The session cannot be carried out; nothing of it is in place.
    Refused {
        reason: &'static str,
        message: String,
    },
    /// The target does not exist (yet, or any more).
    TargetMissing { message: String },
    /// The admitting policy requires approval and nobody has decided yet; nothing is
    /// changed until then.
    AwaitingApproval { policy: String, due: Timestamp },
    /// The debugger is in the target's template; `pods` run (or will run) it.
    Injected {
        pods: Vec<DebugPod>,
        /// Something a person should know about the rollout.
        note: Option<String>,
        /// Why no pod can run it, when the workload itself says so.
        blocked: Option<Problem>,
    },
    /// The ttl ran out and the debugger was removed.
    Expired,
    /// The session is being deleted and the debugger was removed.
    Ended,
}

/// Why a workload cannot run the debugger, whatever its pods say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The Ready reason: [`REPLICA_FAILURE`] or [`NO_REPLICAS`].
    pub reason: &'static str,
    /// The rest of a sentence that starts "debugger X was added to T, but".
    pub message: String,
}

/// The Ready reason of a workload scaled to zero.
pub const NO_REPLICAS: &str = "NoReplicas";

/// Everything a status is made of.
#[derive(Clone, Debug)]
pub struct Facts {
    pub generation: Option<i64>,
    pub now: Timestamp,
    pub mode: Option<Mode>,
    pub target: Option<ResolvedTarget>,
    pub container: String,
    pub expires_at: Option<Timestamp>,
    /// Who asked for the session, as its `spec.requester` names them.
    pub requester: Option<String>,
    pub situation: Situation,
    /// What teardown left behind (added to what earlier teardowns reported).
    pub leftovers: Vec<String>,
    /// The policy that admits the session, once one was judged.
    pub policy: Option<String>,
    /// What the debugger can read in the target's pods.
    pub exposure: Vec<Exposure>,
    /// Changes other field managers made to the target's template during the session.
    pub target_changes: Vec<TargetChange>,
}

/// Looks up condition `type_`.
pub fn condition<'a>(status: &'a DebugSessionStatus, type_: &str) -> Option<&'a Condition> {
    status.condition(type_)
}

/// What a situation means: the phase, and what the conditions say.
struct Verdict {
    phase: Phase,
    ready: bool,
    /// The reason of Ready, which Reconciling and Stalled share.
    reason: &'static str,
    injected: bool,
    injected_reason: &'static str,
    reconciling: bool,
    stalled: bool,
    message: String,
}

impl Verdict {
    /// A verdict on a session with no debugger in place: nothing ready, in progress or
    /// stuck.
    fn quiet(
        phase: Phase,
        reason: &'static str,
        injected_reason: &'static str,
        message: String,
    ) -> Verdict {
        Verdict {
            phase,
            ready: false,
            reason,
            injected: false,
            injected_reason,
            reconciling: false,
            stalled: false,
            message,
        }
    }

    /// The verdict on `situation`, for debugger `container` in `target` (as text).
    fn of(situation: &Situation, container: &str, target: &str) -> Verdict {
        match situation {
            Situation::Refused { reason, message } => Verdict {
                stalled: true,
                ..Verdict::quiet(Phase::Failed, reason, reason, message.clone())
            },
            Situation::TargetMissing { message } => Verdict {
                reconciling: true,
                ..Verdict::quiet(
                    Phase::Pending,
                    "TargetNotFound",
                    "TargetNotFound",
                    message.clone(),
                )
            },
            Situation::Injected {
                pods,
                note,
                blocked,
            } => Verdict::injected(pods, note.as_deref(), blocked.as_ref(), container, target),
            Situation::AwaitingApproval { policy, due } => Verdict::quiet(
                Phase::AwaitingApproval,
                "AwaitingApproval",
                "AwaitingApproval",
                format!(
                    "policy {policy} requires approval before the debugger is added to {target}; \
                     waiting until {due} for someone who may approve debugsessions to run \
                     `shellcar approve` (or annotate the session with {} set to \
                     {{\"uid\": \"<metadata.uid>\", \"generation\": <metadata.generation>, \"reason\": \"...\"}})",
                    naming::APPROVE_ANNOTATION
                ),
            ),
            Situation::Expired => Verdict::quiet(
                Phase::Expired,
                "Expired",
                "Removed",
                format!("the ttl ran out; debugger {container} was removed from {target}"),
            ),
            Situation::Ended => Verdict::quiet(
                Phase::Ended,
                "Ended",
                "Removed",
                format!("the session was deleted; debugger {container} was removed from {target}"),
            ),
        }
    }

    /// The verdict on a debugger in place in `target`, run (or not) by `pods`: Ready once
    /// one runs it, else the first reason none can, else waiting.
    fn injected(
        pods: &[DebugPod],
        note: Option<&str>,
        blocked: Option<&Problem>,
        container: &str,
        target: &str,
    ) -> Verdict {
        let running: Vec<&DebugPod> = pods.iter().filter(|p| p.ready).collect();
        let stuck = pods.iter().find_map(|p| {
            let reason = p.reason.as_deref()?;
            let known = FAILING_REASONS.iter().find(|r| **r == reason);
            Some((*known.unwrap_or(&UNSCHEDULABLE), p))
        });
        let (reason, mut message) = match (running.first(), blocked, stuck) {
            (Some(first), _, _) => (
                "DebuggerRunning",
                format!(
                    "debugger {container} is running in {} of {} pods; attach with: {}",
                    running.len(),
                    pods.len(),
                    first.attach
                ),
            ),
            (None, Some(problem), _) => (
                problem.reason,
                format!(
                    "debugger {container} was added to {target}, but {}",
                    problem.message
                ),
            ),
            (None, None, Some((reason, pod))) => (
                reason,
                format!(
                    "debugger {container} cannot start in pod {}: {reason}{}",
                    pod.name,
                    pod.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            ),
            (None, None, None) => (
                "WaitingForPods",
                format!("debugger {container} was added to {target}; waiting for a pod to run it"),
            ),
        };
        if let Some(note) = note {
            message = format!("{message}. {note}");
        }
        let ready = !running.is_empty();
        Verdict {
            phase: if ready {
                Phase::Active
            } else {
                Phase::Injecting
            },
            ready,
            reason,
            injected: true,
            injected_reason: "Applied",
            reconciling: !ready,
            stalled: false,
            message,
        }
    }

    /// Sets every condition of the status the verdict gives, stamped with `stamp`.
    fn conditions(&self, list: &mut Vec<Condition>, stamp: Stamp) {
        let Verdict {
            phase,
            ready,
            reason,
            injected,
            injected_reason,
            reconciling,
            stalled,
            message,
        } = self;
        let expired = *phase == Phase::Expired;
        stamp.set(list, READY, *ready, reason, message);
        stamp.set(list, INJECTED, *injected, injected_reason, message);
        let (expired_reason, expired_message) = if expired {
            ("TTLReached", "the ttl ran out")
        } else {
            ("Live", "the ttl has not run out")
        };
        stamp.set(list, EXPIRED, expired, expired_reason, expired_message);
        let in_progress = if *reconciling {
            message.as_str()
        } else {
            "nothing in progress"
        };
        stamp.set(list, RECONCILING, *reconciling, reason, in_progress);
        let problem = if *stalled {
            message.as_str()
        } else {
            "no problem found"
        };
        stamp.set(list, STALLED, *stalled, reason, problem);
    }
}

/// The next status, from the previous one and the facts.
pub fn next(old: &DebugSessionStatus, facts: Facts) -> DebugSessionStatus {
    let target = facts.target.as_ref().map_or_else(
        || "the target".to_owned(),
        |t| format!("{} {}", t.kind, t.name),
    );
    let mut verdict = Verdict::of(&facts.situation, &facts.container, &target);
    let mut status = DebugSessionStatus {
        observed_generation: facts.generation,
        conditions: old.conditions.clone(),
        mode: facts.mode,
        targets: old.targets.clone(),
        target: facts.target,
        container: Some(facts.container),
        started_at: old.started_at.clone(),
        expires_at: facts.expires_at.map(Time),
        leftovers: old.leftovers.clone(),
        policy: facts.policy.or_else(|| old.policy.clone()),
        // Kept once the target is gone, as a record of what the session could read.
        exposure: if facts.exposure.is_empty() {
            old.exposure.clone()
        } else {
            facts
                .exposure
                .into_iter()
                .take(MAX_STATUS_EXPOSURE)
                .collect()
        },
        target_changes: facts.target_changes.into_iter().take(16).collect(),
        ..Default::default()
    };
    for line in facts.leftovers {
        if !status.leftovers.contains(&line) {
            status.leftovers.push(line);
        }
    }
    // An ended session never says its debugger is gone where something of it is left.
    if matches!(verdict.phase, Phase::Expired | Phase::Ended) && !status.leftovers.is_empty() {
        verdict.message = format!(
            "{}, except what status.leftovers lists: {}",
            verdict.message,
            status.leftovers.join("; ").trim_end()
        );
    }
    if let Some(requester) = &facts.requester {
        verdict.message = format!("{}; requested by {requester}", verdict.message);
    }
    if let Situation::Injected { pods, .. } = facts.situation {
        remember(&mut status.targets, status.target.as_ref());
        status.pods = pods;
        status.started_at = status.started_at.or(Some(Time(facts.now)));
    }
    if matches!(verdict.phase, Phase::Expired | Phase::Ended) {
        status.ended_at = old.ended_at.clone().or(Some(Time(facts.now)));
    }
    let stamp = Stamp {
        generation: facts.generation,
        now: facts.now,
    };
    verdict.conditions(&mut status.conditions, stamp);
    status.phase = Some(verdict.phase);
    status.message = Some(verdict.message);
    status
}

/// Adds `target` to the targets the session ever changed, unless it is there already.
fn remember(targets: &mut Vec<ResolvedTarget>, target: Option<&ResolvedTarget>) {
    if let Some(t) = target
        && !targets
            .iter()
            .any(|o| (o.kind, &o.name) == (t.kind, &t.name))
    {
        targets.push(t.clone());
    }
}

/// A change people should hear about, published as an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The Event for going from `old` to `new`, if the phase or the Ready reason changed.
pub fn transition(old: &DebugSessionStatus, new: &DebugSessionStatus) -> Option<Transition> {
    let key = |s: &DebugSessionStatus| (s.phase, condition(s, READY).map(|c| c.reason.clone()));
    if key(old) == key(new) {
        return None;
    }
    let phase = new.phase?;
    let reason = condition(new, READY)
        .map(|c| c.reason.clone())
        .unwrap_or_else(|| phase.as_str().to_owned());
    let failing = is_failing(&reason);
    let reason = match phase {
        Phase::AwaitingApproval => "AwaitingApproval".to_owned(),
        Phase::Injecting if failing => reason,
        Phase::Injecting => "Injected".to_owned(),
        Phase::Active => "Active".to_owned(),
        _ => reason,
    };
    Some(Transition {
        warning: failing || matches!(phase, Phase::Failed | Phase::Pending),
        reason,
        note: new.message.clone().unwrap_or_default(),
    })
}

/// Most containers `status.exposure` lists (the CRD's bound).
const MAX_STATUS_EXPOSURE: usize = 32;

/// The reason a workload gives when it cannot create pods (its ReplicaFailure condition).
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Whether Ready reason `reason` is a failure people must act on.
fn is_failing(reason: &str) -> bool {
    FAILING_REASONS.contains(&reason) || reason == REPLICA_FAILURE
}

#[cfg(test)]
mod tests;
