use super::*;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_condition_keeps_its_transition_time_until_its_status_changes() {
    let first = Stamp {
        generation: Some(1),
        now: at("2026-11-24T10:00:00Z"),
    };
    let mut list = Vec::new();
    first.set(&mut list, "Ready", false, "WaitingForPods", "waiting");
    let later = Stamp {
        generation: Some(2),
        now: at("2026-11-24T10:05:00Z"),
    };
    // Same status, another reason: the time stays, the rest follows.
    later.set(&mut list, "Ready", false, "ImagePullBackOff", "cannot pull");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].last_transition_time, Time(first.now));
    assert_eq!(list[0].reason, "ImagePullBackOff");
    assert_eq!(list[0].observed_generation, Some(2));
    // Another status: a new time.
    later.set(&mut list, "Ready", true, "DebuggerRunning", "running");
    assert_eq!(list[0].last_transition_time, Time(later.now));
    assert_eq!(list[0].status, "True");
    // Another type is added after it.
    later.set(
        &mut list,
        "Stalled",
        false,
        "DebuggerRunning",
        "no problem found",
    );
    let types: Vec<&str> = list.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Stalled"]);
}

#[test]
fn now_is_whole_seconds() {
    assert_eq!(now().subsec_nanosecond(), 0);
}
