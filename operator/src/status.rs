//! Status of a session: phase, conditions and pods, computed from what the reconciler saw.
//!
//! Pure functions: the reconciler gathers facts, this module turns them into the status to
//! write and the Events that tell people what changed.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerState, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::crd::{
    DebugPod, DebugSessionStatus, Exposure, Mode, Phase, ResolvedTarget, TargetChange,
};
use crate::naming;

/// Condition types that every status carries.
pub const READY: &str = "Ready";
pub const INJECTED: &str = "Injected";
pub const EXPIRED: &str = "Expired";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

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

/// The conditions of one status being built: sets each one, keeping its transition time
/// when its status does not change.
struct Conditions<'a> {
    list: &'a mut Vec<Condition>,
    generation: Option<i64>,
    now: Timestamp,
}

impl Conditions<'_> {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let status = if status { "True" } else { "False" };
        let last_transition_time = self
            .list
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or(Time(self.now), |c| c.last_transition_time.clone());
        let condition = Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            // The API server rejects empty condition messages.
            message: message.to_owned(),
            observed_generation: self.generation,
            last_transition_time,
        };
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(existing) => *existing = condition,
            None => self.list.push(condition),
        }
    }
}

/// Looks up condition `type_`.
pub fn condition<'a>(status: &'a DebugSessionStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
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
    /// The verdict on `situation`, for debugger `container` in `target` (as text).
    fn of(situation: &Situation, container: &str, target: &str) -> Verdict {
        let quiet = |phase, reason, injected_reason, message| Verdict {
            phase,
            ready: false,
            reason,
            injected: false,
            injected_reason,
            reconciling: false,
            stalled: false,
            message,
        };
        match situation {
            Situation::Refused { reason, message } => Verdict {
                stalled: true,
                ..quiet(Phase::Failed, reason, reason, message.clone())
            },
            Situation::TargetMissing { message } => Verdict {
                reconciling: true,
                ..quiet(
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
            } => {
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
                        format!(
                            "debugger {container} was added to {target}; waiting for a pod to run it"
                        ),
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
            Situation::AwaitingApproval { policy, due } => quiet(
                Phase::AwaitingApproval,
                "AwaitingApproval",
                "AwaitingApproval",
                format!(
                    "policy {policy} requires approval before the debugger is added to {target}; \
                     waiting until {due} for someone who may approve debugsessions to run \
                     `shellcar approve` (or annotate the session with {})",
                    naming::APPROVE_ANNOTATION
                ),
            ),
            Situation::Expired => quiet(
                Phase::Expired,
                "Expired",
                "Removed",
                format!("the ttl ran out; debugger {container} was removed from {target}"),
            ),
            Situation::Ended => quiet(
                Phase::Ended,
                "Ended",
                "Removed",
                format!("the session was deleted; debugger {container} was removed from {target}"),
            ),
        }
    }
}

/// The next status, from the previous one and the facts.
pub fn next(old: &DebugSessionStatus, facts: Facts) -> DebugSessionStatus {
    let target = facts.target.as_ref().map_or_else(
        || "the target".to_owned(),
        |t| format!("{} {}", t.kind, t.name),
    );
    let mut verdict = Verdict::of(&facts.situation, &facts.container, &target);
    if let Some(requester) = &facts.requester {
        verdict.message = format!("{}; requested by {requester}", verdict.message);
    }
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
    if let Situation::Injected { pods, .. } = facts.situation {
        if let Some(t) = &status.target
            && !status
                .targets
                .iter()
                .any(|o| (o.kind, &o.name) == (t.kind, &t.name))
        {
            status.targets.push(t.clone());
        }
        status.pods = pods;
        status.started_at = status.started_at.or(Some(Time(facts.now)));
    }
    let expired = verdict.phase == Phase::Expired;
    if expired || verdict.phase == Phase::Ended {
        status.ended_at = old.ended_at.clone().or(Some(Time(facts.now)));
    }
    let Verdict {
        phase,
        ready,
        reason,
        message,
        ..
    } = verdict;
    let mut conditions = Conditions {
        list: &mut status.conditions,
        generation: facts.generation,
        now: facts.now,
    };
    conditions.set(READY, ready, reason, &message);
    conditions.set(
        INJECTED,
        verdict.injected,
        verdict.injected_reason,
        &message,
    );
    let (expired_reason, expired_message) = if expired {
        ("TTLReached", "the ttl ran out")
    } else {
        ("Live", "the ttl has not run out")
    };
    conditions.set(EXPIRED, expired, expired_reason, expired_message);
    let in_progress = if verdict.reconciling {
        message.as_str()
    } else {
        "nothing in progress"
    };
    conditions.set(RECONCILING, verdict.reconciling, reason, in_progress);
    let problem = if verdict.stalled {
        message.as_str()
    } else {
        "no problem found"
    };
    conditions.set(STALLED, verdict.stalled, reason, problem);
    status.phase = Some(phase);
    status.message = Some(message);
    status
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
pub const MAX_STATUS_EXPOSURE: usize = 32;

/// Most pods `status.pods` lists, so that a session on a large DaemonSet or Deployment
/// keeps a status of bounded size.
pub const MAX_STATUS_PODS: usize = 50;

/// The pods of `namespace` that carry the debugger container of `session`, by name, at
/// most [`MAX_STATUS_PODS`].
///
/// A pod carries it when its template annotation names the session; terminating pods
/// (old replicas on their way out) are left out.
pub fn debug_pods(pods: &[Pod], namespace: &str, session: &str, container: &str) -> Vec<DebugPod> {
    let annotation = naming::session_annotation(container);
    let mut found: BTreeMap<String, DebugPod> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some()
            || pod.annotations().get(&annotation).map(String::as_str) != Some(session)
        {
            continue;
        }
        let name = pod.name_any();
        // Sidecar and Copy debuggers are containers, Ephemeral ones ephemeral containers.
        let state = pod
            .status
            .iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.ephemeral_container_statuses.iter().flatten())
            })
            .find(|c| c.name == container)
            .and_then(|c| c.state.as_ref());
        let ready = state.is_some_and(|s| s.running.is_some());
        let (reason, message) = if ready {
            (None, None)
        } else {
            why_not_running(pod, state)
        };
        found.insert(
            name.clone(),
            DebugPod {
                attach: naming::attach_command(namespace, &name, container),
                container: container.to_owned(),
                copy_of: pod.annotations().get(naming::COPY_OF_ANNOTATION).cloned(),
                name,
                ready,
                reason,
                message,
            },
        );
    }
    found.into_values().take(MAX_STATUS_PODS).collect()
}

/// Waiting reasons of a container that will not run without someone's help: the Ready
/// reason becomes the waiting reason, and a Warning Event says so.
pub const FAILING_REASONS: [&str; 9] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
    UNSCHEDULABLE,
];

/// The reason of a pod the scheduler cannot place (its PodScheduled condition's reason).
const UNSCHEDULABLE: &str = "Unschedulable";

/// The reason a workload gives when it cannot create pods (its ReplicaFailure condition).
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Whether Ready reason `reason` is a failure people must act on.
pub fn is_failing(reason: &str) -> bool {
    FAILING_REASONS.contains(&reason) || reason == REPLICA_FAILURE
}

/// Why the debugger container in `pod` (with `state`) is not running, as Kubernetes
/// says it: the container's waiting reason when it is one of [`FAILING_REASONS`], else an
/// unschedulable pod's scheduler message.
fn why_not_running(pod: &Pod, state: Option<&ContainerState>) -> (Option<String>, Option<String>) {
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref())
        && let Some(reason) = waiting
            .reason
            .as_deref()
            .filter(|r| FAILING_REASONS.contains(r))
    {
        return (Some(reason.to_owned()), waiting.message.clone());
    }
    let unscheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .filter(|c| c.status == "False");
    match unscheduled {
        Some(c) => (
            Some(c.reason.clone().unwrap_or_else(|| UNSCHEDULABLE.to_owned())),
            c.message.clone(),
        ),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TargetKind;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn facts(situation: Situation, now: &str) -> Facts {
        Facts {
            generation: Some(1),
            now: at(now),
            mode: Some(Mode::Sidecar),
            target: Some(ResolvedTarget {
                kind: TargetKind::Deployment,
                name: "web".to_owned(),
                uid: Some("u-1".to_owned()),
            }),
            container: "shellcar-dbg-1".to_owned(),
            expires_at: Some(at("2026-11-23T11:00:00Z")),
            requester: None,
            situation,
            leftovers: vec![],
            policy: None,
            exposure: vec![],
            target_changes: vec![],
        }
    }

    #[test]
    fn the_requester_is_named_and_every_target_is_remembered() {
        let mut first = facts(
            Situation::Injected {
                pods: vec![],
                note: None,
                blocked: None,
            },
            "2026-11-23T10:00:00Z",
        );
        first.requester = Some("system:serviceaccount:shop:dev".to_owned());
        let injected = next(&DebugSessionStatus::default(), first.clone());
        assert!(
            injected
                .message
                .as_deref()
                .unwrap()
                .ends_with("; requested by system:serviceaccount:shop:dev"),
            "{:?}",
            injected.message
        );
        let mut moved = first;
        moved.target = Some(ResolvedTarget {
            kind: TargetKind::Deployment,
            name: "api".to_owned(),
            uid: None,
        });
        let twice = next(&next(&injected, moved.clone()), moved);
        let names: Vec<&str> = twice.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["web", "api"]);
    }

    fn pod(name: &str, ready: bool) -> DebugPod {
        DebugPod {
            reason: None,
            message: None,
            name: name.to_owned(),
            container: "shellcar-dbg-1".to_owned(),
            ready,
            attach: format!("kubectl attach -it -n shop {name} -c shellcar-dbg-1"),
            copy_of: None,
        }
    }

    fn cond<'a>(s: &'a DebugSessionStatus, t: &str) -> (&'a str, &'a str) {
        let c = condition(s, t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_session_goes_from_injecting_to_active_to_expired() {
        let injecting = next(
            &DebugSessionStatus::default(),
            facts(
                Situation::Injected {
                    pods: vec![pod("web-1", false)],
                    note: None,
                    blocked: None,
                },
                "2026-11-23T10:00:00Z",
            ),
        );
        assert_eq!(injecting.phase, Some(Phase::Injecting));
        assert_eq!(cond(&injecting, READY), ("False", "WaitingForPods"));
        assert_eq!(cond(&injecting, INJECTED), ("True", "Applied"));
        assert_eq!(cond(&injecting, RECONCILING).0, "True");
        assert_eq!(injecting.started_at, Some(Time(at("2026-11-23T10:00:00Z"))));

        let active = next(
            &injecting,
            facts(
                Situation::Injected {
                    pods: vec![pod("web-1", true)],
                    note: None,
                    blocked: None,
                },
                "2026-11-23T10:00:05Z",
            ),
        );
        assert_eq!(active.phase, Some(Phase::Active));
        assert_eq!(cond(&active, READY), ("True", "DebuggerRunning"));
        assert_eq!(
            active.message.as_deref(),
            Some(
                "debugger shellcar-dbg-1 is running in 1 of 1 pods; attach with: \
                 kubectl attach -it -n shop web-1 -c shellcar-dbg-1"
            )
        );
        // started_at is kept; Injected did not change so its transition time is kept
        assert_eq!(active.started_at, injecting.started_at);
        assert_eq!(
            condition(&active, INJECTED).unwrap().last_transition_time,
            Time(at("2026-11-23T10:00:00Z"))
        );
        assert_eq!(
            condition(&active, READY).unwrap().last_transition_time,
            Time(at("2026-11-23T10:00:05Z"))
        );

        let expired = next(&active, facts(Situation::Expired, "2026-11-23T11:00:00Z"));
        assert_eq!(expired.phase, Some(Phase::Expired));
        assert_eq!(cond(&expired, EXPIRED), ("True", "TTLReached"));
        assert_eq!(cond(&expired, INJECTED), ("False", "Removed"));
        assert_eq!(expired.ended_at, Some(Time(at("2026-11-23T11:00:00Z"))));
        assert!(expired.pods.is_empty());
        assert!(
            expired.conditions.iter().all(|c| !c.message.is_empty()),
            "the API server rejects empty condition messages"
        );
    }

    #[test]
    fn the_same_facts_give_the_same_status() {
        let f = || {
            facts(
                Situation::Injected {
                    pods: vec![pod("web-1", true)],
                    note: None,
                    blocked: None,
                },
                "2026-11-23T10:00:00Z",
            )
        };
        let first = next(&DebugSessionStatus::default(), f());
        let mut later = f();
        later.now = at("2026-11-23T10:07:00Z");
        assert_eq!(
            next(&first, later),
            first,
            "status must be written only on change"
        );
    }

    #[test]
    fn refusals_are_stalled_failures() {
        let s = next(
            &DebugSessionStatus::default(),
            facts(
                Situation::Refused {
                    reason: "TTLTooLong",
                    message: "ttl too long".to_owned(),
                },
                "2026-11-23T10:00:00Z",
            ),
        );
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(cond(&s, STALLED), ("True", "TTLTooLong"));
        assert_eq!(cond(&s, READY), ("False", "TTLTooLong"));
        assert_eq!(s.started_at, None);
        let t = transition(&DebugSessionStatus::default(), &s).unwrap();
        assert!(t.warning);
        assert_eq!(t.reason, "TTLTooLong");
        assert_eq!(t.note, "ttl too long");
    }

    #[test]
    fn events_only_on_transitions() {
        let missing = next(
            &DebugSessionStatus::default(),
            facts(
                Situation::TargetMissing {
                    message: "Deployment web not found".to_owned(),
                },
                "2026-11-23T10:00:00Z",
            ),
        );
        assert_eq!(missing.phase, Some(Phase::Pending));
        let t = transition(&DebugSessionStatus::default(), &missing).unwrap();
        assert_eq!((t.warning, t.reason.as_str()), (true, "TargetNotFound"));
        let again = next(
            &missing,
            facts(
                Situation::TargetMissing {
                    message: "Deployment web not found".to_owned(),
                },
                "2026-11-23T10:01:00Z",
            ),
        );
        assert_eq!(transition(&missing, &again), None);
        let injected = next(
            &again,
            facts(
                Situation::Injected {
                    pods: vec![],
                    note: Some("ReplicaSets do not roll out".to_owned()),
                    blocked: None,
                },
                "2026-11-23T10:02:00Z",
            ),
        );
        let t = transition(&again, &injected).unwrap();
        assert_eq!((t.warning, t.reason.as_str()), (false, "Injected"));
        assert!(
            t.note.ends_with(". ReplicaSets do not roll out"),
            "{}",
            t.note
        );
    }

    #[test]
    fn leftovers_accumulate_without_repeats() {
        let mut f = facts(Situation::Expired, "2026-11-23T11:00:00Z");
        f.leftovers = vec!["pod web-1 keeps a stopped ephemeral container".to_owned()];
        let first = next(&DebugSessionStatus::default(), f.clone());
        f.leftovers.push("pod web-2 was evicted".to_owned());
        let second = next(&first, f);
        assert_eq!(
            second.leftovers,
            [
                "pod web-1 keeps a stopped ephemeral container",
                "pod web-2 was evicted"
            ]
        );
    }

    #[test]
    fn ephemeral_debuggers_and_copies_are_listed() {
        let pods: Vec<Pod> = serde_yaml::from_str(
            r#"
- metadata:
    name: web-1
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
  status:
    ephemeralContainerStatuses:
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: false, restartCount: 0, state: {running: {}}}
- metadata:
    name: shellcar-dbg-1
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg, shellcar.dev/copy-of: web-2}
"#,
        )
        .unwrap();
        let found = debug_pods(&pods, "shop", "dbg", "shellcar-dbg-1");
        assert_eq!(found[0].name, "shellcar-dbg-1");
        assert_eq!(found[0].copy_of.as_deref(), Some("web-2"));
        assert!(!found[0].ready);
        assert_eq!(found[1].name, "web-1");
        assert!(found[1].ready);
    }

    #[test]
    fn debug_pods_come_from_annotated_live_pods() {
        let pods: Vec<Pod> = serde_yaml::from_str(
            r#"
- metadata:
    name: web-2
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
  status:
    containerStatuses:
    - {name: nginx, image: n, imageID: "", ready: true, restartCount: 0, state: {running: {}}}
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: true, restartCount: 0, state: {running: {}}}
- metadata:
    name: web-1
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
  status:
    containerStatuses:
    - {name: shellcar-dbg-1, image: b, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}
- metadata:
    name: web-old
    deletionTimestamp: "2026-11-23T10:00:00Z"
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
- metadata:
    name: other
    annotations: {debug.shellcar.dev/shellcar-other-2: other}
"#,
        )
        .unwrap();
        let found = debug_pods(&pods, "shop", "dbg", "shellcar-dbg-1");
        assert_eq!(found, vec![pod("web-1", false), pod("web-2", true)]);
    }

    fn injected(pods: Vec<DebugPod>, blocked: Option<Problem>) -> Situation {
        Situation::Injected {
            pods,
            note: None,
            blocked,
        }
    }

    #[test]
    fn a_debugger_that_cannot_pull_or_be_scheduled_names_why() {
        let pods: Vec<Pod> = serde_yaml::from_str(
            r#"
- metadata:
    name: web-1
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
  status:
    containerStatuses:
    - name: shellcar-dbg-1
      image: reg/nope:1
      imageID: ""
      ready: false
      restartCount: 0
      state: {waiting: {reason: ImagePullBackOff, message: 'Back-off pulling image "reg/nope:1"'}}
- metadata:
    name: web-2
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
  status:
    phase: Pending
    conditions:
    - {type: PodScheduled, status: "False", reason: Unschedulable, message: "0/1 nodes are available: 1 Insufficient cpu."}
- metadata:
    name: web-3
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
  status:
    containerStatuses:
    - {name: shellcar-dbg-1, image: busybox, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}
"#,
        )
        .unwrap();
        let found = debug_pods(&pods, "shop", "dbg", "shellcar-dbg-1");
        let why: Vec<(Option<&str>, Option<&str>)> = found
            .iter()
            .map(|p| (p.reason.as_deref(), p.message.as_deref()))
            .collect();
        assert_eq!(
            why,
            [
                (
                    Some("ImagePullBackOff"),
                    Some("Back-off pulling image \"reg/nope:1\"")
                ),
                (
                    Some("Unschedulable"),
                    Some("0/1 nodes are available: 1 Insufficient cpu.")
                ),
                // Still starting: nothing to report.
                (None, None),
            ]
        );
        let status = next(
            &DebugSessionStatus::default(),
            facts(injected(found, None), "2026-11-23T10:00:00Z"),
        );
        assert_eq!(status.phase, Some(Phase::Injecting));
        assert_eq!(cond(&status, READY), ("False", "ImagePullBackOff"));
        assert_eq!(cond(&status, RECONCILING), ("True", "ImagePullBackOff"));
        assert_eq!(
            status.message.as_deref(),
            Some(
                "debugger shellcar-dbg-1 cannot start in pod web-1: ImagePullBackOff: Back-off pulling image \"reg/nope:1\""
            )
        );
        let event = transition(&DebugSessionStatus::default(), &status).unwrap();
        assert!(event.warning);
        assert_eq!(event.reason, "ImagePullBackOff");
    }

    #[test]
    fn a_workload_that_cannot_run_the_debugger_says_so() {
        let zero = next(
            &DebugSessionStatus::default(),
            facts(
                injected(
                    vec![],
                    Some(Problem {
                        reason: NO_REPLICAS,
                        message: "Deployment web has 0 replicas; scale it up to get the debugger"
                            .to_owned(),
                    }),
                ),
                "2026-11-23T10:00:00Z",
            ),
        );
        assert_eq!(cond(&zero, READY), ("False", "NoReplicas"));
        assert_eq!(
            zero.message.as_deref(),
            Some(
                "debugger shellcar-dbg-1 was added to Deployment web, but Deployment web has 0 replicas; scale it up to get the debugger"
            )
        );
        // Waiting for someone to scale up is no failure.
        let event = transition(&DebugSessionStatus::default(), &zero).unwrap();
        assert!(!event.warning);
        assert_eq!(event.reason, "Injected");
        let quota = next(
            &DebugSessionStatus::default(),
            facts(
                injected(
                    vec![],
                    Some(Problem {
                        reason: REPLICA_FAILURE,
                        message: "Deployment web cannot create pods: exceeded quota".to_owned(),
                    }),
                ),
                "2026-11-23T10:00:00Z",
            ),
        );
        let event = transition(&zero, &quota).unwrap();
        assert!(event.warning);
        assert_eq!(event.reason, "ReplicaFailure");
        // A running pod is what counts.
        let running = next(
            &quota,
            facts(
                injected(vec![pod("web-1", true)], None),
                "2026-11-23T10:01:00Z",
            ),
        );
        assert_eq!(cond(&running, READY), ("True", "DebuggerRunning"));
    }

    /// The status kstatus computes for a custom resource, as its documentation defines
    /// it: a spec newer than `observedGeneration` or `Reconciling=True` is InProgress,
    /// `Stalled=True` is Failed, anything else Current.
    fn kstatus(generation: i64, status: &DebugSessionStatus) -> &'static str {
        let is_true = |t: &str| condition(status, t).is_some_and(|c| c.status == "True");
        if status.observed_generation.is_some_and(|g| g < generation) || is_true(RECONCILING) {
            "InProgress"
        } else if is_true(STALLED) {
            "Failed"
        } else {
            "Current"
        }
    }

    #[test]
    fn kstatus_reads_every_situation_as_flux_and_argo_should() {
        let refused = Situation::Refused {
            reason: "StartTimeout",
            message: "no debugger ran within the start deadline of 5m".to_owned(),
        };
        let cases: Vec<(Situation, &str)> = vec![
            (injected(vec![], None), "InProgress"),
            (injected(vec![pod("web-1", false)], None), "InProgress"),
            (injected(vec![pod("web-1", true)], None), "Current"),
            (refused, "Failed"),
            (
                Situation::TargetMissing {
                    message: "Deployment web not found".to_owned(),
                },
                "InProgress",
            ),
            // Waiting for a person: nothing is in progress, and nothing failed.
            (
                Situation::AwaitingApproval {
                    policy: "prod".to_owned(),
                    due: at("2026-11-23T11:00:00Z"),
                },
                "Current",
            ),
            (Situation::Expired, "Current"),
            (Situation::Ended, "Current"),
        ];
        for (situation, expected) in cases {
            let label = format!("{situation:?}");
            let status = next(
                &DebugSessionStatus::default(),
                facts(situation, "2026-11-23T10:00:00Z"),
            );
            // Ready is there from the first status on, and observedGeneration is set.
            assert!(condition(&status, READY).is_some(), "{label}");
            assert_eq!(status.observed_generation, Some(1), "{label}");
            assert_eq!(kstatus(1, &status), expected, "{label}");
            // A spec newer than the status is in progress, whatever the status says.
            assert_eq!(kstatus(2, &status), "InProgress", "{label}");
        }
    }
}
