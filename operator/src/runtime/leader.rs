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

use crate::runtime::telemetry::{Health, Metrics};
use crate::runtime::{error_chain, retry_every};

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

/// Why a controller term failed, as the controller says: this module runs any controller
/// and knows none of its errors.
pub type TermError = Box<dyn std::error::Error + Send + Sync>;

/// What a controller term resolves to.
type Outcome = Result<(), TermError>;

/// Why the controller stopped without being asked to; the process then exits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the controller stopped without being asked to")]
    ControllerEnded,
    #[error("the controller failed")]
    Controller(#[source] TermError),
    #[error("the controller panicked")]
    ControllerPanicked(#[source] JoinError),
    #[error("the task that competes for the Lease ended")]
    LeaseTaskEnded,
}

/// What a controller term gets to know when to stop: it resolves when the term is over.
type Stop = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

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
    F: Future<Output = Outcome> + Send + 'static,
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
    F: Future<Output = Outcome> + Send + 'static,
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
    F: Future<Output = Outcome> + Send + 'static,
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
    task: JoinHandle<Outcome>,
    metrics: Arc<Metrics>,
}

impl Term {
    fn start<C, F>(controller: &mut C, metrics: &Arc<Metrics>) -> Term
    where
        C: FnMut(Stop) -> F,
        F: Future<Output = Outcome> + Send + 'static,
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
            Ok(Ok(Err(e))) => {
                warn!(error = %error_chain(&*e), "the controller ended with an error")
            }
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
async fn ended(term: &mut Option<Term>) -> Result<Outcome, JoinError> {
    match term {
        Some(term) => (&mut term.task).await,
        None => std::future::pending().await,
    }
}

/// A controller that ended without being asked to: the replica is not live any more.
fn ended_by_itself(ended: Result<Outcome, JoinError>, metrics: &Metrics, health: &Health) -> Error {
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

/// A lease manager for the Lease, which it creates if missing; retried every [`RETRY`]
/// until it works.
async fn lease_manager(client: &Client, election: &Election) -> LeaseManager {
    retry_every("reading or creating the Lease", RETRY, || {
        LeaseManagerBuilder::new(client.clone(), &election.lease)
            .with_namespace(&election.namespace)
            .with_identity(&election.identity)
            // Its default is random for each manager; this names the process in
            // managedFields, and a rebuilt manager of the same process stays the same one.
            .with_field_manager(format!("shellcar-{}", election.identity))
            .with_duration(LEASE_DURATION.as_secs())
            .with_grace(RENEW_GRACE.as_secs())
            .build()
    })
    .await
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
mod tests;
