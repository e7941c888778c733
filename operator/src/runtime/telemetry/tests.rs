use super::*;

#[test]
fn metrics_count_reconciles_failures_and_phases() {
    let m = Metrics::default();
    m.reconciled(Duration::from_millis(20));
    m.failed("KubeError");
    m.session_phase("shop/a".to_owned(), Some(Phase::Active));
    m.session_phase("shop/b".to_owned(), Some(Phase::Active));
    m.session_phase("shop/b".to_owned(), None);
    let text = m.encode();
    assert!(text.contains("shellcar_reconciles_total 1"), "{text}");
    assert!(
        text.contains("shellcar_reconcile_failures_total{category=\"KubeError\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shellcar_sessions{phase=\"Active\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shellcar_reconcile_duration_seconds_count 1"),
        "{text}"
    );
}

/// The value of `series` (name and labels, as exposed) in `m`'s exposition.
fn sample(m: &Metrics, series: &str) -> Option<f64> {
    m.encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn sessions_in(m: &Metrics, phase: &str) -> Option<f64> {
    sample(m, &format!("shellcar_sessions{{phase=\"{phase}\"}}"))
}

#[test]
fn the_phase_gauge_forgets_sessions_that_are_gone() {
    let m = Metrics::default();
    m.session_phase("shop/a".to_owned(), Some(Phase::Injecting));
    m.session_phase("shop/b".to_owned(), Some(Phase::Injecting));
    assert_eq!(sessions_in(&m, "Injecting"), Some(2.0));
    // A session counts in its current phase only.
    m.session_phase("shop/a".to_owned(), Some(Phase::Active));
    assert_eq!(sessions_in(&m, "Injecting"), Some(1.0));
    assert_eq!(sessions_in(&m, "Active"), Some(1.0));
    // Deleted sessions count nowhere.
    m.session_phase("shop/a".to_owned(), None);
    m.session_phase("shop/b".to_owned(), None);
    for phase in [
        "Pending",
        "AwaitingApproval",
        "Injecting",
        "Active",
        "Ended",
    ] {
        assert_eq!(sessions_in(&m, phase), Some(0.0), "{phase}: {}", m.encode());
    }
    // Forgetting a session that was never seen changes nothing.
    m.session_phase("shop/c".to_owned(), None);
    assert_eq!(sessions_in(&m, "Active"), Some(0.0));
}

#[test]
fn a_replica_that_stops_leading_forgets_every_session() {
    let m = Metrics::default();
    m.session_phase("shop/a".to_owned(), Some(Phase::Active));
    m.session_phase("shop/b".to_owned(), Some(Phase::Injecting));
    m.forget_sessions();
    let text = m.encode();
    assert!(!text.contains("shellcar_sessions{"), "{text}");
    // Leading again, it counts only what it sees from then on.
    m.session_phase("shop/c".to_owned(), Some(Phase::Active));
    assert_eq!(sessions_in(&m, "Active"), Some(1.0));
    assert_eq!(sessions_in(&m, "Injecting"), Some(0.0));
}

#[test]
fn time_to_ready_and_teardown_are_histograms_in_seconds() {
    let m = Metrics::default();
    // Exposed before any observation, so that dashboards and alerts find them.
    assert_eq!(
        sample(&m, "shellcar_time_to_ready_seconds_count"),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "shellcar_teardown_duration_seconds_count"),
        Some(0.0)
    );
    m.time_to_ready(Duration::from_secs(90));
    m.teardown(Duration::from_millis(300));
    m.teardown(Duration::from_secs(4));
    let ready = |le: &str| {
        sample(
            &m,
            &format!("shellcar_time_to_ready_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    assert_eq!(ready("60.0"), Some(0.0), "{}", m.encode());
    assert_eq!(ready("120.0"), Some(1.0), "{}", m.encode());
    assert_eq!(sample(&m, "shellcar_time_to_ready_seconds_sum"), Some(90.0));
    let teardown = |le: &str| {
        sample(
            &m,
            &format!("shellcar_teardown_duration_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    assert_eq!(teardown("0.25"), Some(0.0), "{}", m.encode());
    assert_eq!(teardown("0.5"), Some(1.0), "{}", m.encode());
    assert_eq!(teardown("5.0"), Some(2.0), "{}", m.encode());
    assert_eq!(
        sample(&m, "shellcar_teardown_duration_seconds_count"),
        Some(2.0)
    );
}

#[tokio::test]
async fn api_requests_are_exported_by_verb_and_resource() {
    use tower::{Layer, Service, ServiceExt};
    let m = Metrics::default();
    let (service, mut handle) = tower_test::mock::pair::<http::Request<()>, ()>();
    let mut counted = m.count_requests().layer(service);
    tokio::spawn(async move {
        while let Some((_, respond)) = handle.next_request().await {
            respond.send_response(());
        }
    });
    let request = http::Request::patch("/apis/apps/v1/namespaces/shop/deployments/web/status")
        .body(())
        .unwrap();
    counted.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(
        sample(
            &m,
            "shellcar_api_requests_total{verb=\"patch\",resource=\"deployments/status\"}"
        ),
        Some(1.0),
        "{}",
        m.encode()
    );
}

#[test]
fn the_leader_gauge_follows_leadership() {
    let m = Metrics::default();
    let sample = |m: &Metrics| {
        m.encode()
            .lines()
            .find_map(|l| l.strip_prefix("shellcar_leader ").map(str::to_owned))
    };
    assert_eq!(sample(&m).as_deref(), Some("0"));
    m.set_leader(true);
    assert_eq!(sample(&m).as_deref(), Some("1"));
    m.set_leader(false);
    assert_eq!(sample(&m).as_deref(), Some("0"));
}

#[tokio::test]
async fn ready_means_the_webhook_serves_whoever_leads() {
    let health = Arc::new(Health::default());
    let ready = |h: &Arc<Health>| readyz(State(h.clone()));
    assert_eq!(ready(&health).await.0, StatusCode::SERVICE_UNAVAILABLE);
    // A standby never runs the controller, and is Ready as soon as its webhook is.
    health.set_webhook_ready();
    assert_eq!(ready(&health).await.0, StatusCode::OK);
    assert_eq!(livez(State(health.clone())).await.0, StatusCode::OK);
    // A leader whose controller ended is restarted (livez), not taken out of the
    // webhook's Service (readyz).
    health.set_stopped();
    assert_eq!(
        livez(State(health.clone())).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(ready(&health).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_refused_replica_stays_live_and_says_why_it_is_not_ready() {
    let health = Arc::new(Health::default());
    let why = "Kubernetes v1.32.4 is below the oldest version shellcar supports, 1.33; \
               upgrade the cluster or use an older shellcar";
    health.refuse(why.to_owned());
    // Even a webhook that serves does not make it ready.
    health.set_webhook_ready();
    let (code, body) = readyz(State(health.clone())).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, format!("{why}\n"));
    // Restarting would not help: the kubelet must leave it be.
    assert_eq!(livez(State(health.clone())).await.0, StatusCode::OK);
}
