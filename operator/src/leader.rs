//! Leader election: which replica reconciles. Every replica serves the admission webhook,
//! `/metrics` and health; only the holder of a `coordination.k8s.io` Lease runs the
//! controller, and it stops before another replica may take the Lease over.
//!
//! Three tasks share the work. `hold` competes for the Lease with `kube-lease-manager`:
//! takes it when it is free, renews it, releases it at shutdown. `observe` reads the Lease
//! every second. `lead` runs a controller term while both say that this replica holds it,
//! and ends the term when either stops saying so, or when the Lease as last read is about
//! to expire.

use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{debug, info, warn};

use crate::context::error_chain;
use crate::controller;
use crate::telemetry::{Health, Metrics};

// Timing. A Lease is valid for LEASE_DURATION after its renewTime: another replica may take
// it once its own clock passes renewTime + 15 s. The holder writes renewTime with its own
// clock and judges it with the same clock, so only the skew between nodes counts:
//
//   renewTime + 5 s   the lease manager renews (RENEW_GRACE before expiry); a failed
//                     renewal is retried every RETRY, at +7 s and +9 s.
//   renewTime + 10 s  without a newer renewTime read back from the API server, this
//                     replica stops its controller (LEAD_MARGIN before expiry) ...
//   renewTime + 12 s  ... and has cancelled whatever was still running (STOP_TIMEOUT).
//   renewTime + 15 s  the earliest another replica takes over: 3 s of clock skew to spare.
//
// Reading the Lease back, not the lease manager's word, decides how long this replica may
// lead, because the manager says neither when a renewal succeeded nor, while the API
// server is unreachable, that the Lease is lost: a renewal that fails is an error to
// retry, and one that hangs can hang for good (kube's client has no read timeout).
//
// At shutdown the controller gets STOP_TIMEOUT, the release RELEASE_TIMEOUT: 5 s, within
// the pod's terminationGracePeriodSeconds (10 s). A standby reads the Lease every POLL and
// takes it as soon as it reads it released, so a rolling update hands over in about one
// POLL plus the new leader's first list of its watches.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_GRACE: Duration = Duration::from_secs(10);
const LEAD_MARGIN: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_secs(1);
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

// A renewal and one retry come before the stand-down; the stand-down ends before expiry.
const _: () = assert!(RENEW_GRACE.as_secs() - RETRY.as_secs() > LEAD_MARGIN.as_secs());
const _: () = assert!(LEAD_MARGIN.as_secs() > STOP_TIMEOUT.as_secs());

/// Where the Lease is, and who this replica is in it.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease: String,
    /// See [`identity`].
    pub identity: String,
}

/// This process's name in the Lease: `<pod>_<random>`. The pod (`POD_NAME`, else the host
/// name) says which replica leads; the random part is new for each process, so that a
/// restarted container is not taken for the one that held the Lease before it.
pub fn identity() -> String {
    let pod = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "shellcar".to_owned());
    // RandomState's keys are random for each process (and differ for each call).
    let random = RandomState::new().build_hasher().finish();
    format!("{pod}_{random:016x}")
}

/// Why the controller stopped without being asked to; the process then exits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the controller stopped without being asked to")]
    ControllerEnded,
    #[error("the controller failed")]
    Controller(#[source] controller::Error),
    #[error("the controller panicked")]
    ControllerPanicked(#[source] JoinError),
    #[error("the task that competes for the Lease ended")]
    LeaseTaskEnded,
}

/// What a controller term gets to know when to stop: it resolves when the term is over.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// Runs `controller` while this replica leads (always, without an `election`) and serves
/// nothing itself; returns at `shutdown`, once the controller has stopped and then the
/// Lease was released. A controller that ends by itself fails liveness and is an error.
pub async fn run<C, F>(
    client: Client,
    election: Option<Election>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    controller: C,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error>
where
    C: FnMut(Stop) -> F,
    F: Future<Output = Result<(), controller::Error>> + Send + 'static,
{
    let Some(election) = election else {
        info!("no leader election: reconciling unconditionally");
        return run_alone(controller, &metrics, &health, shutdown).await;
    };
    info!(
        lease = %election.lease,
        namespace = %election.namespace,
        identity = %election.identity,
        "competing for the leader's Lease"
    );
    let api = Api::<Lease>::namespaced(client.clone(), &election.namespace);
    let (records_tx, records) = watch::channel(Record::default());
    let (holding_tx, holding) = watch::channel(false);
    let observer = tokio::spawn(observe(
        api,
        election.lease.clone(),
        records_tx,
        holding.clone(),
    ));
    let (release, released) = oneshot::channel();
    let holder = tokio::spawn(hold(
        client,
        election.clone(),
        records.clone(),
        holding_tx,
        released,
    ));
    let outcome = lead(
        &election.identity,
        holding,
        records,
        controller,
        &metrics,
        &health,
        shutdown,
    )
    .await;
    // The controller has stopped: only now may another replica take over.
    let _ = release.send(());
    if timeout(RELEASE_TIMEOUT, holder).await.is_err() {
        warn!("the Lease was not released in time; it expires by itself");
    }
    observer.abort();
    outcome
}

/// Without an election: one term, from start to shutdown.
async fn run_alone<C, F>(
    mut controller: C,
    metrics: &Arc<Metrics>,
    health: &Health,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error>
where
    C: FnMut(Stop) -> F,
    F: Future<Output = Result<(), controller::Error>> + Send + 'static,
{
    let mut term = Some(Term::start(&mut controller, metrics));
    tokio::select! {
        () = shutdown => {
            if let Some(term) = term.take() {
                term.stop().await;
            }
            Ok(())
        }
        ended = ended(&mut term) => Err(ended_by_itself(ended, metrics, health)),
    }
}

/// The Lease as last read: who holds it, when they last renewed it, for how long.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renewed: Option<SystemTime>,
    duration: Option<Duration>,
}

impl Record {
    /// What `lease` says; no Lease at all is a free one.
    fn of(lease: Option<&Lease>) -> Record {
        let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
            return Record::default();
        };
        Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renewed: spec.renew_time.as_ref().map(|t| SystemTime::from(t.0)),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }

    /// Nobody holds the Lease: released, or never taken.
    fn is_free(&self) -> bool {
        self.holder.is_none()
    }

    /// How much longer `identity` may reconcile after `now`, by this record: until
    /// [`LEAD_MARGIN`] before the Lease expires.
    fn lead_for(&self, identity: &str, now: SystemTime) -> Option<Duration> {
        if self.holder.as_deref() != Some(identity) {
            return None;
        }
        let valid = self.duration?.checked_sub(LEAD_MARGIN)?;
        let left = self.renewed?.checked_add(valid)?.duration_since(now).ok()?;
        // A renewTime ahead of this clock (it was set back) buys no more than one renewal.
        Some(left.min(valid)).filter(|left| !left.is_zero())
    }
}

/// Until when this replica may reconcile: while the lease manager says it holds the Lease
/// (`holding`) and the Lease, as last read, agrees.
fn deadline(holding: bool, record: &Record, identity: &str) -> Option<Instant> {
    if !holding {
        return None;
    }
    let left = record.lead_for(identity, SystemTime::now())?;
    Some(Instant::now() + left)
}

/// Runs a controller term whenever this replica may lead, until `shutdown`; returns once
/// the running term (if any) has stopped.
async fn lead<C, F>(
    identity: &str,
    mut holding: watch::Receiver<bool>,
    mut records: watch::Receiver<Record>,
    mut controller: C,
    metrics: &Arc<Metrics>,
    health: &Health,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error>
where
    C: FnMut(Stop) -> F,
    F: Future<Output = Result<(), controller::Error>> + Send + 'static,
{
    let mut shutdown = pin!(shutdown);
    let mut term: Option<Term> = None;
    // Recomputed only when the lease manager or the Lease says something new: the deadline
    // passing means that the record it came from is too old.
    let mut until: Option<Instant> = None;
    let outcome = loop {
        let leading = until.is_some_and(|until| Instant::now() < until);
        if leading && term.is_none() {
            info!(%identity, "leading: starting the controller");
            term = Some(Term::start(&mut controller, metrics));
        } else if !leading && let Some(ending) = term.take() {
            info!(
                holding = *holding.borrow(),
                holder = ?records.borrow().holder,
                "no longer leading: stopping the controller"
            );
            ending.stop().await;
        }
        tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            ended = ended(&mut term) => {
                // Its task is over: there is nothing left to stop.
                term = None;
                break Err(ended_by_itself(ended, metrics, health));
            }
            () = sleep_until(until.unwrap_or_else(Instant::now)), if leading => {
                warn!("the Lease's renewal was not read back in time: standing down before it expires");
                until = None;
            }
            changed = holding.changed() => {
                if changed.is_err() {
                    break Err(Error::LeaseTaskEnded);
                }
                until = deadline(*holding.borrow_and_update(), &records.borrow(), identity);
            }
            changed = records.changed() => {
                if changed.is_err() {
                    break Err(Error::LeaseTaskEnded);
                }
                until = deadline(*holding.borrow(), &records.borrow_and_update(), identity);
            }
        }
    };
    if let Some(ending) = term.take() {
        ending.stop().await;
    }
    outcome
}

/// One run of the controller, from taking the lead to giving it up. Each term starts with
/// fresh watches, caches and context.
struct Term {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), controller::Error>>,
    metrics: Arc<Metrics>,
}

impl Term {
    fn start<C, F>(controller: &mut C, metrics: &Arc<Metrics>) -> Term
    where
        C: FnMut(Stop) -> F,
        F: Future<Output = Result<(), controller::Error>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller(Box::pin(async move {
            let _ = stopped.await;
        })));
        metrics.set_leader(true);
        Term {
            stop,
            task,
            metrics: metrics.clone(),
        }
    }

    /// Asks the controller to stop and lets the reconciliations under way finish for up to
    /// [`STOP_TIMEOUT`], then cancels the rest: reconciliation is idempotent, so the next
    /// leader redoes whatever they left half done.
    async fn stop(mut self) {
        let _ = self.stop.send(());
        match timeout(STOP_TIMEOUT, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %error_chain(&e), "the controller ended with an error"),
            Ok(Err(e)) => warn!(error = %e, "the controller panicked"),
            Err(_) => {
                warn!(after = ?STOP_TIMEOUT, "cancelling the reconciliations still running");
                self.task.abort();
                let _ = self.task.await;
            }
        }
        self.metrics.set_leader(false);
    }
}

/// Resolves when the term's controller ends by itself; never without a term.
async fn ended(term: &mut Option<Term>) -> Result<Result<(), controller::Error>, JoinError> {
    match term {
        Some(term) => (&mut term.task).await,
        None => std::future::pending().await,
    }
}

/// A controller that ended without being asked to: the replica is not live any more.
fn ended_by_itself(
    ended: Result<Result<(), controller::Error>, JoinError>,
    metrics: &Metrics,
    health: &Health,
) -> Error {
    metrics.set_leader(false);
    health.set_stopped();
    match ended {
        Ok(Ok(())) => Error::ControllerEnded,
        Ok(Err(e)) => Error::Controller(e),
        Err(e) => Error::ControllerPanicked(e),
    }
}

/// Competes for the Lease until `release`, then releases it if held: the lease manager
/// takes it when free and renews it while held; `holding` says what the manager believes.
async fn hold(
    client: Client,
    election: Election,
    mut records: watch::Receiver<Record>,
    holding: watch::Sender<bool>,
    mut release: oneshot::Receiver<()>,
) {
    loop {
        let manager = tokio::select! {
            biased;
            _ = &mut release => return,
            manager = lease_manager(&client, &election) => manager,
        };
        believe(&holding, false);
        let mut pause = None;
        loop {
            tokio::select! {
                biased;
                _ = &mut release => {
                    match manager.release().await {
                        Ok(()) => info!("released the Lease"),
                        Err(e) => warn!(error = %error_chain(&e), "releasing the Lease; it expires by itself"),
                    }
                    return;
                }
                // A waiting lease manager reads the Lease again only when the holder it
                // saw would expire. A new one reads it at once, and takes it when the
                // holder has released it, as a leader does when it shuts down. (At most
                // one new manager for each read of the Lease.)
                Ok(()) = records.changed(), if !*holding.borrow() => {
                    if records.borrow_and_update().is_free() {
                        debug!("the Lease is free: competing for it now");
                        break;
                    }
                }
                held = async {
                    if let Some(pause) = pause.take() {
                        sleep(pause).await;
                    }
                    manager.changed().await
                } => match held {
                    Ok(held) => {
                        if held {
                            info!("took the Lease");
                        } else {
                            info!("lost the Lease");
                        }
                        believe(&holding, held);
                    }
                    Err(LeaseManagerError::NonexistentLease(_)) => {
                        warn!("the Lease is gone: creating it again");
                        break;
                    }
                    Err(e) => {
                        warn!(error = %error_chain(&e), retry_in = ?RETRY, "taking or renewing the Lease");
                        pause = Some(RETRY);
                    }
                }
            }
        }
    }
}

/// Publishes whether the lease manager holds the Lease, waking [`lead`] and [`observe`]
/// only when that changes.
fn believe(holding: &watch::Sender<bool>, held: bool) {
    holding.send_if_modified(|last| std::mem::replace(last, held) != held);
}

/// A lease manager for the Lease, which it creates if missing; retried until it works.
async fn lease_manager(client: &Client, election: &Election) -> LeaseManager {
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &election.lease)
            .with_namespace(&election.namespace)
            .with_identity(&election.identity)
            // Its default is random for each manager; this names the process in
            // managedFields, and a rebuilt manager of the same process stays the same one.
            .with_field_manager(format!("shellcar-{}", election.identity))
            .with_duration(LEASE_DURATION.as_secs())
            .with_grace(RENEW_GRACE.as_secs())
            .build()
            .await;
        match built {
            Ok(manager) => return manager,
            Err(e) => {
                warn!(error = %error_chain(&e), retry_in = ?RETRY, "reading or creating the Lease")
            }
        }
        sleep(RETRY).await;
    }
}

/// Reads the Lease every [`POLL`], and at once when the lease manager's belief changes (a
/// new leader need not wait for the next read), and publishes each read. A failed read
/// keeps the last record: a leader that cannot read its Lease back stands down when that
/// record runs out.
async fn observe(
    api: Api<Lease>,
    name: String,
    records: watch::Sender<Record>,
    mut holding: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        match timeout(READ_TIMEOUT, api.get_opt(&name)).await {
            Ok(Ok(lease)) => {
                if std::mem::take(&mut failing) {
                    info!("reading the Lease again");
                }
                // Every read, changed or not: a standby that reads the Lease free competes
                // for it again, even if it never saw it held.
                records.send_replace(Record::of(lease.as_ref()));
            }
            Ok(Err(e)) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(error = %error_chain(&e), "reading the Lease");
                }
            }
            Err(_) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(timeout = ?READ_TIMEOUT, "reading the Lease: no answer");
                }
            }
        }
        tokio::select! {
            () = sleep(POLL) => {}
            Ok(()) = holding.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::BoxFuture;
    use http::{Method, Request, Response, header};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;

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
        let emptied: Lease = serde_yaml::from_str(
            "metadata: {name: shellcar-controller}\nspec: {holderIdentity: ''}",
        )
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
        ) -> impl FnMut(Stop) -> BoxFuture<'static, Result<(), controller::Error>> + use<> {
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
            let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
            let server = self.clone();
            tokio::spawn(async move {
                while let Some((request, send)) = handle.next_request().await {
                    let (code, body) = server.answer(request).await;
                    let response = Response::builder()
                        .status(code)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap();
                    send.send_response(response);
                }
            });
            Client::new(service, "default")
        }

        async fn answer(&self, request: Request<Body>) -> (u16, Value) {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
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
        let body = json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": reason, "reason": reason, "code": code,
        });
        (code, body)
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
}
