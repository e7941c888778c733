use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn policy(yaml: &str) -> DebugPolicy {
    let mut p = DebugPolicy::new("prod", serde_yaml::from_str(yaml).unwrap());
    p.metadata.generation = Some(3);
    p
}

#[test]
fn a_bad_glob_makes_the_policy_not_ready_with_its_reason() {
    let p = policy("{images: ['reg/[abc']}");
    let fault = Rules::compile(
        &p,
        &crate::rules::Policy {
            default_image: "busybox".to_owned(),
            max_ttl: Duration::from_secs(3600),
            allowed_images: vec![],
            stopper: None,
            start_deadline: Duration::from_secs(300),
            namespaces: crate::rules::namespaces::Namespaces::new("shellcar-system", Vec::new()),
        },
    )
    .unwrap_err();
    let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let status = next(&p, Err(fault.to_string()), fault.reason(), now);
    assert_eq!(status.observed_generation, Some(3));
    let ready = &status.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidGlob")
    );
    assert!(
        ready
            .message
            .starts_with("images[0] \"reg/[abc\" is not a glob"),
        "{}",
        ready.message
    );
    assert!(ready.message.ends_with("; the policy admits no session"));
    // Fixed: Ready, with a new transition time; unchanged: the time is kept.
    let mut fixed = policy("{images: ['reg/*']}");
    fixed.status = Some(status);
    let later: Timestamp = "2026-11-24T10:05:00Z".parse().unwrap();
    let ready = next(&fixed, Ok(()), "Valid", later);
    assert_eq!(ready.conditions[0].status, "True");
    assert_eq!(ready.conditions[0].last_transition_time, Time(later));
    fixed.status = Some(ready.clone());
    let again = next(
        &fixed,
        Ok(()),
        "Valid",
        "2026-11-24T11:00:00Z".parse().unwrap(),
    );
    assert_eq!(again, ready);
}
