use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use http::{Method, Request, header};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::mock_api::{self, status_body};

const ME: &str = "shellcar-6d4f9-x2k8p_00000000000000aa";
const OTHER: &str = "shellcar-6d4f9-q7w1z_00000000000000bb";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The Lease as its holder leaves it right after renewing it `ago`.
fn held_by(holder: &str, ago: Duration) -> Record {
    Record {
        holder: Some(holder.to_owned()),
        renewed: Some(SystemTime::now() - ago),
        duration: Some(LEASE_DURATION),
    }
}

#[test]
fn a_record_says_who_holds_the_lease_since_when_and_for_how_long() {
    let lease: Lease = serde_yaml::from_str(
        r#"
metadata:
  name: shellcar-controller
  namespace: shellcar-system
spec:
  holderIdentity: shellcar-6d4f9-x2k8p_00000000000000aa
  acquireTime: "2025-03-01T10:00:00.000000Z"
  renewTime: "2025-03-01T10:00:05.250000Z"
  leaseDurationSeconds: 15
  leaseTransitions: 3
"#,
    )
    .unwrap();
    let renewed: jiff::Timestamp = "2025-03-01T10:00:05.25Z".parse().unwrap();
    let record = Record::of(Some(&lease));
    assert_eq!(
        record,
        Record {
            holder: Some(ME.to_owned()),
            renewed: Some(SystemTime::from(renewed)),
            duration: Some(secs(15)),
        }
    );
    assert!(!record.is_free());
}

#[test]
fn a_released_or_missing_lease_is_free() {
    // What kube-lease-manager leaves when it releases: the holder's fields cleared.
    let released: Lease = serde_yaml::from_str(
        r#"
metadata:
  name: shellcar-controller
spec:
  leaseTransitions: 3
"#,
    )
    .unwrap();
    assert!(Record::of(Some(&released)).is_free());
    let emptied: Lease =
        serde_yaml::from_str("metadata: {name: shellcar-controller}\nspec: {holderIdentity: ''}")
            .unwrap();
    assert!(Record::of(Some(&emptied)).is_free());
    assert!(Record::of(None).is_free());
}

#[test]
fn the_holder_leads_until_the_margin_before_expiry() {
    let now = SystemTime::now();
    let at = |ago: u64| Record {
        renewed: Some(now - secs(ago)),
        ..held_by(ME, secs(0))
    };
    assert_eq!(at(0).lead_for(ME, now), Some(secs(10)));
    assert_eq!(at(3).lead_for(ME, now), Some(secs(7)));
    assert_eq!(at(9).lead_for(ME, now), Some(secs(1)));
    // From renewTime + 10 s on it must stop: others may take over at + 15 s.
    assert_eq!(at(10).lead_for(ME, now), None);
    assert_eq!(at(14).lead_for(ME, now), None);
    assert_eq!(at(60).lead_for(ME, now), None);
}

#[test]
fn only_the_named_holder_of_a_complete_record_leads() {
    let now = SystemTime::now();
    assert_eq!(held_by(OTHER, secs(0)).lead_for(ME, now), None);
    assert_eq!(Record::default().lead_for(ME, now), None);
    let no_renewal = Record {
        renewed: None,
        ..held_by(ME, secs(0))
    };
    assert_eq!(no_renewal.lead_for(ME, now), None);
    let no_duration = Record {
        duration: None,
        ..held_by(ME, secs(0))
    };
    assert_eq!(no_duration.lead_for(ME, now), None);
    // A Lease shorter than the margin leaves no time to lead at all.
    let short = Record {
        duration: Some(secs(4)),
        ..held_by(ME, secs(0))
    };
    assert_eq!(short.lead_for(ME, now), None);
}

#[test]
fn a_renewal_stamped_in_the_future_buys_one_term_only() {
    let now = SystemTime::now();
    let ahead = Record {
        renewed: Some(now + secs(60)),
        ..held_by(ME, secs(0))
    };
    assert_eq!(ahead.lead_for(ME, now), Some(secs(10)));
}

#[test]
fn identities_name_the_pod_and_a_random_part() {
    let (a, b) = (identity(), identity());
    assert_ne!(a, b);
    let (pod, random) = a.split_once('_').unwrap();
    assert!(!pod.is_empty());
    assert_eq!(random.len(), 16, "{a}");
    if let Ok(name) = std::env::var("POD_NAME") {
        assert_eq!(pod, name.trim());
    }
}

/// Counts the controller terms a test starts, how many still run, and how many ran at
/// once at most.
#[derive(Clone, Default)]
struct Fake {
    starts: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// One running term; counted down however the term ends, cancelled included.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Fake {
    /// A controller that finishes its work `linger` after it is asked to stop, or
    /// never (`None`): then only cancelling it ends it.
    fn controller(
        &self,
        linger: Option<Duration>,
    ) -> impl FnMut(Stop) -> BoxFuture<'static, Result<(), TermError>> + use<> {
        let fake = self.clone();
        move |stop| {
            fake.starts.fetch_add(1, Ordering::SeqCst);
            let now = fake.running.fetch_add(1, Ordering::SeqCst) + 1;
            fake.peak.fetch_max(now, Ordering::SeqCst);
            let running = Running(fake.running.clone());
            Box::pin(async move {
                let _running = running;
                stop.await;
                match linger {
                    Some(linger) => sleep(linger).await,
                    None => std::future::pending().await,
                }
                Ok(())
            })
        }
    }

    fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

fn leader_gauge(metrics: &Metrics) -> bool {
    metrics.encode().lines().any(|l| l == "shellcar_leader 1")
}

/// Lets the loop under test catch up (time is paused: this costs nothing).
async fn settle() {
    sleep(Duration::from_millis(500)).await;
}

#[tokio::test(start_paused = true)]
async fn leads_only_while_the_lease_manager_and_the_lease_agree() {
    let fake = Fake::default();
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let (holding_tx, holding) = watch::channel(false);
    let (records_tx, records) = watch::channel(Record::default());
    let (shutdown_tx, shutdown) = oneshot::channel::<()>();
    let steps = async {
        records_tx.send_replace(held_by(ME, secs(0)));
        settle().await;
        assert_eq!(fake.running(), 0, "the lease manager has not taken it yet");
        holding_tx.send_replace(true);
        settle().await;
        assert_eq!((fake.starts(), fake.running()), (1, 1));
        assert!(leader_gauge(&metrics));

        records_tx.send_replace(held_by(OTHER, secs(0)));
        settle().await;
        assert_eq!(
            fake.running(),
            0,
            "another holder: the controller stops at once"
        );
        assert!(!leader_gauge(&metrics));

        records_tx.send_replace(held_by(ME, secs(0)));
        settle().await;
        assert_eq!((fake.starts(), fake.running()), (2, 1), "a new term");

        holding_tx.send_replace(false);
        settle().await;
        assert_eq!(fake.running(), 0, "the lease manager lost it");
        let _ = shutdown_tx.send(());
    };
    let controller = fake.controller(Some(Duration::from_millis(100)));
    let shutdown = async {
        let _ = shutdown.await;
    };
    let (outcome, ()) = tokio::join!(
        lead(
            ME, holding, records, controller, &metrics, &health, shutdown
        ),
        steps
    );
    outcome.unwrap();
    assert!(health.is_live());
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_before_its_lease_expires() {
    let fake = Fake::default();
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let (_holding_tx, holding) = watch::channel(true);
    let (records_tx, records) = watch::channel(Record::default());
    let renewed = Instant::now();
    let steps = async {
        // The last renewal read back; none follows, as when the API server is gone.
        records_tx.send_replace(held_by(ME, secs(0)));
        settle().await;
        assert_eq!(fake.running(), 1);
        sleep_until(renewed + secs(9)).await;
        assert_eq!(fake.running(), 1, "still within its term");
        // This controller ignores the stop: it is cancelled once STOP_TIMEOUT is over.
        sleep_until(renewed + LEASE_DURATION - LEAD_MARGIN + STOP_TIMEOUT).await;
        settle().await;
        assert_eq!(fake.running(), 0);
        assert!(!leader_gauge(&metrics));
        assert!(
            renewed.elapsed() < LEASE_DURATION,
            "stopped {:?} after the renewal, when others may take over",
            renewed.elapsed()
        );
        assert_eq!(fake.starts(), 1, "no new term without a new renewal");
    };
    let controller = fake.controller(None);
    tokio::select! {
        outcome = lead(ME, holding, records, controller, &metrics, &health, std::future::pending()) => {
            panic!("lead ended: {outcome:?}")
        }
        () = steps => {}
    }
}

#[tokio::test(start_paused = true)]
async fn a_renewal_read_back_extends_the_term() {
    let fake = Fake::default();
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let (_holding_tx, holding) = watch::channel(true);
    let (records_tx, records) = watch::channel(Record::default());
    let steps = async {
        for _ in 0..6 {
            // Renewed every 5 s, as the lease manager does.
            records_tx.send_replace(held_by(ME, secs(0)));
            sleep(LEASE_DURATION - RENEW_GRACE).await;
        }
        assert_eq!(
            (fake.starts(), fake.running()),
            (1, 1),
            "one term, 30 s long"
        );
    };
    let controller = fake.controller(None);
    tokio::select! {
        outcome = lead(ME, holding, records, controller, &metrics, &health, std::future::pending()) => {
            panic!("lead ended: {outcome:?}")
        }
        () = steps => {}
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_once_the_controller_has_stopped() {
    let fake = Fake::default();
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let (_holding_tx, holding) = watch::channel(true);
    let (records_tx, records) = watch::channel(Record::default());
    let (shutdown_tx, shutdown) = oneshot::channel::<()>();
    let steps = async {
        records_tx.send_replace(held_by(ME, secs(0)));
        settle().await;
        assert_eq!(fake.running(), 1);
        let _ = shutdown_tx.send(());
    };
    // Its reconciliations take a second to finish after the stop.
    let controller = fake.controller(Some(secs(1)));
    let shutdown = async {
        let _ = shutdown.await;
    };
    let (outcome, ()) = tokio::join!(
        lead(
            ME, holding, records, controller, &metrics, &health, shutdown
        ),
        steps
    );
    outcome.unwrap();
    // run() releases the Lease only now: nobody else reconciles before this point.
    assert_eq!(fake.running(), 0);
    assert!(!leader_gauge(&metrics));
}

#[tokio::test(start_paused = true)]
async fn a_controller_that_ends_by_itself_fails_liveness() {
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let (_holding_tx, holding) = watch::channel(true);
    let (records_tx, records) = watch::channel(Record::default());
    records_tx.send_replace(held_by(ME, secs(0)));
    let controller = |_stop: Stop| async { Ok(()) };
    let outcome = lead(
        ME,
        holding,
        records,
        controller,
        &metrics,
        &health,
        std::future::pending(),
    )
    .await;
    assert!(
        matches!(outcome, Err(Error::ControllerEnded)),
        "{outcome:?}"
    );
    assert!(!health.is_live());
    assert!(!leader_gauge(&metrics));
}

#[tokio::test(start_paused = true)]
async fn without_election_the_controller_runs_until_shutdown() {
    let fake = Fake::default();
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let (shutdown_tx, shutdown) = oneshot::channel::<()>();
    let steps = async {
        settle().await;
        assert_eq!(fake.running(), 1);
        assert!(leader_gauge(&metrics));
        let _ = shutdown_tx.send(());
    };
    let shutdown = async {
        let _ = shutdown.await;
    };
    let controller = fake.controller(Some(Duration::from_millis(100)));
    let (outcome, ()) = tokio::join!(run_alone(controller, &metrics, &health, shutdown), steps);
    outcome.unwrap();
    assert_eq!(fake.running(), 0);
    assert!(!leader_gauge(&metrics));
    assert!(health.is_live());
}

/// An API server that keeps one Lease in memory, with what the election relies on: a
/// server-side apply of `holderIdentity` conflicts with the manager that set another
/// one, a strategic merge patch clears fields with `null`. It notes the verbs used.
#[derive(Clone, Default)]
struct LeaseServer(Arc<Mutex<Stored>>);

#[derive(Default)]
struct Stored {
    spec: Option<serde_json::Map<String, Value>>,
    holder_manager: Option<String>,
    verbs: BTreeSet<&'static str>,
}

const NAMESPACE: &str = "shellcar-system";
const LEASE: &str = "shellcar-controller";

impl LeaseServer {
    /// A client of this server, as one replica has.
    fn client(&self) -> Client {
        let (client, mut handle) = mock_api::client();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (code, body) = server.answer(request).await;
                mock_api::reply(send, code, &body);
            }
        });
        client
    }

    async fn answer(&self, request: Request<Body>) -> (u16, Value) {
        let (parts, body) = request.into_parts();
        let body = mock_api::json_body(body).await;
        let collection = format!("/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases");
        let named = parts.uri.path() == format!("{collection}/{LEASE}");
        let manager = parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("fieldManager="))
                .map(str::to_owned)
        });
        let apply = parts.headers.get(header::CONTENT_TYPE)
            == Some(&header::HeaderValue::from_static(
                "application/apply-patch+yaml",
            ));
        let mut stored = self.0.lock().unwrap();
        match (parts.method, named) {
            (Method::GET, true) => {
                stored.verbs.insert("get");
            }
            (Method::POST, false) if parts.uri.path() == collection => {
                stored.verbs.insert("create");
                if stored.spec.is_some() {
                    return status(409, "AlreadyExists");
                }
                stored.spec = Some(serde_json::Map::new());
                return (201, lease(stored.spec.as_ref()));
            }
            (Method::PATCH, true) => {
                stored.verbs.insert("patch");
                let holder_manager = stored.holder_manager.clone();
                let Some(spec) = stored.spec.as_mut() else {
                    return status(404, "NotFound");
                };
                let patch = body["spec"].as_object().cloned().unwrap_or_default();
                if apply && let Some(new) = patch.get("holderIdentity") {
                    let taken = spec.get("holderIdentity").is_some_and(|h| h != new);
                    if taken && holder_manager != manager {
                        return status(409, "Conflict");
                    }
                }
                for (field, value) in patch {
                    if value.is_null() {
                        spec.remove(&field);
                    } else {
                        spec.insert(field, value);
                    }
                }
                let held = spec.contains_key("holderIdentity");
                if apply && held {
                    stored.holder_manager = manager;
                } else if !held {
                    stored.holder_manager = None;
                }
            }
            (method, _) => panic!("unexpected {method} {}", parts.uri),
        }
        match stored.spec.as_ref() {
            Some(spec) => (200, lease(Some(spec))),
            None => status(404, "NotFound"),
        }
    }

    fn holder(&self) -> Option<String> {
        let stored = self.0.lock().unwrap();
        let holder = stored.spec.as_ref()?.get("holderIdentity")?;
        holder.as_str().map(str::to_owned)
    }

    fn verbs(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().verbs.iter().copied().collect()
    }
}

fn lease(spec: Option<&serde_json::Map<String, Value>>) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NAMESPACE, "resourceVersion": "1"},
        "spec": spec,
    })
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    (code, status_body(code, reason, reason))
}

/// One operator process: [`run`] with its own client, identity and metrics.
struct Replica {
    identity: String,
    metrics: Arc<Metrics>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), Error>>,
}

impl Replica {
    fn start(server: &LeaseServer, fake: &Fake, pod: &str) -> Replica {
        let identity = format!("{pod}_{:016x}", 0xa11ce);
        let election = Election {
            namespace: NAMESPACE.to_owned(),
            lease: LEASE.to_owned(),
            identity: identity.clone(),
        };
        let metrics = Arc::new(Metrics::default());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(run(
            server.client(),
            Some(election),
            metrics.clone(),
            Arc::new(Health::default()),
            fake.controller(Some(Duration::from_millis(100))),
            async move {
                let _ = signal.await;
            },
        ));
        Replica {
            identity,
            metrics,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Waits (in real time: the lease manager reads the system clock) until `done`.
async fn eventually(what: &str, within: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn one_replica_leads_and_hands_over_when_it_shuts_down() {
    let server = LeaseServer::default();
    let fake = Fake::default();
    let a = Replica::start(&server, &fake, "shellcar-a");
    let b = Replica::start(&server, &fake, "shellcar-b");
    eventually("one replica leads", secs(5), || fake.running() == 1).await;
    let (leader, standby) = if leader_gauge(&a.metrics) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(leader_gauge(&leader.metrics));
    assert!(!leader_gauge(&standby.metrics));
    assert_eq!(server.holder(), Some(leader.identity.clone()));

    // A rolling update: the leader stops its controller, releases the Lease, exits.
    let shutdown = Instant::now();
    leader.stop().await;
    eventually("the standby leads", secs(3), || {
        leader_gauge(&standby.metrics)
    })
    .await;
    println!("handed over in {:?}", shutdown.elapsed());
    assert_eq!(server.holder(), Some(standby.identity.clone()));
    assert_eq!(fake.running(), 1);
    assert_eq!(
        fake.peak.load(Ordering::SeqCst),
        1,
        "two controllers at once"
    );

    standby.stop().await;
    assert_eq!(fake.running(), 0);
    assert_eq!(server.holder(), None, "released at shutdown");
    // What RBAC must allow on the Lease.
    assert_eq!(server.verbs(), ["create", "get", "patch"]);
}
