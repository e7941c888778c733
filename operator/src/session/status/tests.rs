use super::*;
use crate::crd::TargetKind;
use crate::session::pods::debug_pods;
use k8s_openapi::api::core::v1::Pod;

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
fn an_ended_session_with_leftovers_never_says_plainly_removed() {
    let clean = next(
        &DebugSessionStatus::default(),
        facts(Situation::Expired, "2026-11-23T11:00:00Z"),
    );
    let said = clean.message.unwrap();
    assert!(said.contains("was removed from"), "{said}");
    assert!(!said.contains("leftovers"), "{said}");
    let mut f = facts(Situation::Ended, "2026-11-23T11:00:00Z");
    f.leftovers = vec!["pod web-a still runs the debugger dbg: ReplicaSet web-1 replaces pods only when they are deleted; delete the pod to remove the debugger".to_owned()];
    let left = next(&DebugSessionStatus::default(), f);
    let said = left.message.unwrap();
    assert!(
        said.contains("except what status.leftovers lists: pod web-a still runs the debugger dbg"),
        "{said}"
    );
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
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-1, controller: true}]
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
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-1, controller: true}]
  status:
    phase: Pending
    conditions:
    - {type: PodScheduled, status: "False", reason: Unschedulable, message: "0/1 nodes are available: 1 Insufficient cpu."}
- metadata:
    name: web-3
    annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9f, uid: rs-1, controller: true}]
  status:
    containerStatuses:
    - {name: shellcar-dbg-1, image: busybox, imageID: "", ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}
"#,
    )
    .unwrap();
    let owners = crate::k8s::owners::Owners::controller("rs-1");
    let found = debug_pods(&pods, &owners, "shop", "dbg", "shellcar-dbg-1");
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
