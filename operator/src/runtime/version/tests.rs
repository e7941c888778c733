use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::mock_api::{self, ApiHandle};

fn info(major: &str, minor: &str, git_version: &str) -> Info {
    Info {
        major: major.to_owned(),
        minor: minor.to_owned(),
        git_version: git_version.to_owned(),
        ..Info::default()
    }
}

fn v(major: u32, minor: u32) -> Option<Version> {
    Some(Version { major, minor })
}

#[test]
fn the_version_is_read_from_major_and_minor_or_else_git_version() {
    assert_eq!(binary(&info("1", "33", "v1.33.13")), v(1, 33));
    // Some providers mark their builds with a "+".
    assert_eq!(binary(&info("1", "33+", "v1.33.5-gke.1080000")), v(1, 33));
    // Without the fields, the gitVersion says it, whatever follows the patch number.
    assert_eq!(binary(&info("", "", "v1.33.13-eks-4f1e2a7")), v(1, 33));
    assert_eq!(binary(&info("1", "", "v1.37.0-alpha.2")), v(1, 37));
    assert_eq!(binary(&info("", "", "1.32.4")), v(1, 32));
    for unreadable in [
        info("", "", ""),
        info("1", "", "unknown"),
        info("one", "x", "v1"),
    ] {
        assert_eq!(binary(&unreadable), None, "{unreadable:?}");
    }
}

#[test]
fn an_emulated_version_is_the_one_that_counts() {
    let mut emulating = info("1", "34", "v1.34.2");
    emulating.emulation_major = Some("1".to_owned());
    emulating.emulation_minor = Some("32".to_owned());
    assert_eq!(served(&emulating), v(1, 32));
    assert_eq!(
        judge(&emulating),
        Verdict::TooOld(
            "Kubernetes v1.34.2 (emulating 1.32) is below the oldest version shellcar supports, 1.33; upgrade the cluster or use an older shellcar"
                .to_owned()
        )
    );
    // Reported, and the same as its own: nothing to add.
    emulating.emulation_minor = Some("34".to_owned());
    assert_eq!(judge(&emulating), Verdict::Supported("v1.34.2".to_owned()));
}

#[test]
fn versions_below_the_floor_are_refused_with_what_to_do() {
    assert_eq!(
        judge(&info("1", "32", "v1.32.4")),
        Verdict::TooOld(
            "Kubernetes v1.32.4 is below the oldest version shellcar supports, 1.33; upgrade the cluster or use an older shellcar"
                .to_owned()
        )
    );
    assert!(matches!(
        judge(&info("1", "20", "v1.20.15")),
        Verdict::TooOld(_)
    ));
    assert_eq!(
        judge(&info("1", "33+", "v1.33.13-eks-4f1e2a7")),
        Verdict::Supported("v1.33.13-eks-4f1e2a7".to_owned())
    );
    assert_eq!(
        judge(&info("1", "37", "")),
        Verdict::Supported("v1.37".to_owned())
    );
    // A later major version is newer, whatever its minor.
    assert!(matches!(
        judge(&info("2", "0", "v2.0.0")),
        Verdict::Supported(_)
    ));
    assert_eq!(judge(&info("", "", "")), Verdict::Unreadable);
}

/// `/version` as an API server answers it.
fn version_body(minor: &str, git_version: &str) -> Value {
    json!({
        "major": "1", "minor": minor, "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.5", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// Answers the next request, which must be `GET /version`, with `code` and `body`.
async fn answer(handle: &mut ApiHandle, code: u16, body: &Value) {
    let (request, send) =
        mock_api::next_request(handle, Duration::from_secs(60), "GET /version").await;
    assert_eq!(request.uri().path(), "/version");
    mock_api::reply(send, code, body);
}

/// Runs [`check`] against a mock API server that answers `/version` with `answers`, in
/// order; returns what it decided and the health it left.
async fn check_against(answers: Vec<(u16, Value)>) -> (bool, Health) {
    let (client, mut handle) = mock_api::client();
    let server = tokio::spawn(async move {
        for (code, body) in answers {
            answer(&mut handle, code, &body).await;
        }
    });
    let health = Health::default();
    let runs = check(&client, &health).await;
    server.await.unwrap();
    (runs, health)
}

#[tokio::test(start_paused = true)]
async fn below_the_floor_the_operator_says_why_and_is_never_ready() {
    let (runs, health) = check_against(vec![(200, version_body("32", "v1.32.4"))]).await;
    assert!(!runs);
    health.set_webhook_ready();
    assert_eq!(
        health.readiness(),
        Err(
            "Kubernetes v1.32.4 is below the oldest version shellcar supports, 1.33; upgrade the cluster or use an older shellcar"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_supported_version_runs_and_an_unanswered_question_is_asked_again() {
    let unavailable = mock_api::status_body(503, "ServiceUnavailable", "the server is starting");
    let (runs, health) = check_against(vec![
        (503, unavailable),
        (200, version_body("37", "v1.37.2")),
    ])
    .await;
    assert!(runs);
    // Ready again as soon as the webhook serves: nothing was refused.
    health.set_webhook_ready();
    assert_eq!(health.readiness(), Ok(()));
}
