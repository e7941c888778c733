use super::*;

fn status(yaml: &str) -> DebugSessionStatus {
    serde_yaml::from_str(yaml).unwrap()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn the_start_deadline_counts_from_injection_or_the_last_time_ready_turned_false() {
    let now = at("2026-11-24T10:10:00Z");
    // Pending for long (Ready False since creation), injected at 10:05.
    let injected = status(
        r#"
startedAt: "2026-11-24T10:05:00Z"
conditions:
- {type: Ready, status: "False", reason: WaitingForPods, message: m, lastTransitionTime: "2026-11-24T09:00:00Z"}
"#,
    );
    assert_eq!(waiting_since(&injected, now), at("2026-11-24T10:05:00Z"));
    // Ran, then stopped at 10:08.
    let stopped = status(
        r#"
startedAt: "2026-11-24T10:05:00Z"
conditions:
- {type: Ready, status: "False", reason: CrashLoopBackOff, message: m, lastTransitionTime: "2026-11-24T10:08:00Z"}
"#,
    );
    assert_eq!(waiting_since(&stopped, now), at("2026-11-24T10:08:00Z"));
    // Running until now, or never injected: the clock starts now.
    let running = status(
        r#"
startedAt: "2026-11-24T10:05:00Z"
conditions:
- {type: Ready, status: "True", reason: DebuggerRunning, message: m, lastTransitionTime: "2026-11-24T10:06:00Z"}
"#,
    );
    assert_eq!(waiting_since(&running, now), now);
    assert_eq!(waiting_since(&DebugSessionStatus::default(), now), now);
}

fn debug_pod(ready: bool, reason: Option<&str>) -> DebugPod {
    DebugPod {
        name: "web-1".to_owned(),
        container: "shellcar-dbg-1".to_owned(),
        ready,
        attach: "kubectl attach -it -n shop web-1 -c shellcar-dbg-1".to_owned(),
        copy_of: None,
        reason: reason.map(str::to_owned),
        message: reason.map(|_| "Back-off pulling image".to_owned()),
    }
}

fn applied(pods: Vec<DebugPod>) -> Outcome {
    Outcome::Applied {
        target: ResolvedTarget {
            kind: TargetKind::Deployment,
            name: "web".to_owned(),
            uid: Some("u-1".to_owned()),
        },
        pods,
        note: None,
        exposure: vec![],
        blocked: None,
        changes: vec![],
    }
}

const DEADLINE: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_running_debugger_is_injected_and_looked_at_again_for_authorization() {
    let now = at("2026-11-24T10:10:00Z");
    let mut done = Done::default();
    let (situation, action) = settle(
        applied(vec![debug_pod(true, None)]),
        &DebugSessionStatus::default(),
        now,
        HOUR,
        DEADLINE,
        TargetKind::Deployment,
        &mut done,
    );
    assert!(
        matches!(situation, Situation::Injected { .. }),
        "{situation:?}"
    );
    assert_eq!(action, Action::requeue(AUTHORIZATION_RECHECK));
    assert_eq!(done.target.map(|t| t.name).as_deref(), Some("web"));
}

#[test]
fn a_debugger_waiting_within_the_deadline_is_looked_at_again_when_it_runs_out() {
    let now = at("2026-11-24T10:10:00Z");
    let old = status(
        r#"
startedAt: "2026-11-24T10:05:30Z"
conditions:
- {type: Ready, status: "False", reason: WaitingForPods, message: m, lastTransitionTime: "2026-11-24T10:05:30Z"}
"#,
    );
    let (situation, action) = settle(
        applied(vec![debug_pod(false, None)]),
        &old,
        now,
        HOUR,
        DEADLINE,
        TargetKind::Deployment,
        &mut Done::default(),
    );
    assert!(
        matches!(situation, Situation::Injected { .. }),
        "{situation:?}"
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

#[test]
fn a_debugger_no_pod_ran_within_the_deadline_is_refused_with_the_last_reason() {
    let now = at("2026-11-24T10:10:00Z");
    let old = status(
        r#"
startedAt: "2026-11-24T10:00:00Z"
conditions:
- {type: Ready, status: "False", reason: ImagePullBackOff, message: m, lastTransitionTime: "2026-11-24T10:00:00Z"}
"#,
    );
    let mut done = Done::default();
    let (situation, action) = settle(
        applied(vec![debug_pod(false, Some("ImagePullBackOff"))]),
        &old,
        now,
        HOUR,
        DEADLINE,
        TargetKind::Deployment,
        &mut done,
    );
    let Situation::Refused { reason, message } = situation else {
        panic!("not refused: {situation:?}");
    };
    assert_eq!(reason, "StartTimeout");
    assert!(
        message.ends_with("; last: pod web-1: ImagePullBackOff: Back-off pulling image"),
        "{message}"
    );
    // Woken at expiry; what the mode found is still recorded.
    assert_eq!(action, Action::requeue(HOUR));
    assert!(done.target.is_some());
}

#[test]
fn a_missing_pod_is_looked_for_sooner_than_a_missing_workload() {
    let now = at("2026-11-24T10:10:00Z");
    let missing = || Outcome::Missing {
        message: "gone".to_owned(),
    };
    let old = DebugSessionStatus::default();
    let mut done = Done::default();
    let (_, pod) = settle(
        missing(),
        &old,
        now,
        HOUR,
        DEADLINE,
        TargetKind::Pod,
        &mut done,
    );
    let (situation, workload) = settle(
        missing(),
        &old,
        now,
        HOUR,
        DEADLINE,
        TargetKind::Deployment,
        &mut done,
    );
    assert!(matches!(situation, Situation::TargetMissing { .. }));
    assert_eq!(pod, Action::requeue(MISSING_POD_RETRY));
    assert_eq!(workload, Action::requeue(MISSING_TARGET_RETRY));
}
