//! The reconcile pipeline of a DebugSession: decide (validate, govern, approval gate, ttl,
//! authorize; in `reconcile/decide.rs`), act (tear down, or put the debugger in place
//! through its mode), report (the outcome as a status, and the Events of what changed).
//! Teardown runs where a session is refused, expires or is deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use tracing::{instrument, warn};

use crate::crd::{
    DebugPod, DebugSession, DebugSessionStatus, Exposure, Phase, ResolvedTarget, TargetChange,
    TargetKind,
};
use crate::k8s::workload;
use crate::rules::exposure;
use crate::rules::validate::{Invalid, Plan};
use crate::runtime::error_chain;
use crate::session::context::Context;
use crate::session::error::Error;
use crate::session::modes::{self, Ending, Outcome, Request};
use crate::session::report;
use crate::session::status::{self, Facts, Problem, Situation};
use crate::{naming, ttl};
use decide::{Decision, Judged};

mod decide;

/// How long to wait before retrying a session whose target is missing. Watches on the
/// workloads wake the session as soon as the target appears; this is only a safety net.
const MISSING_TARGET_RETRY: Duration = Duration::from_secs(300);

/// Pods are not watched by name, so a missing Pod target is looked for every 30 s.
const MISSING_POD_RETRY: Duration = Duration::from_secs(30);

/// How often a live session checks again that its requester still holds what it stands
/// in for: RBAC revoked mid-session ends the session within about this long.
const AUTHORIZATION_RECHECK: Duration = Duration::from_secs(60);

/// Reasons a session fails for good: it stays Failed whatever happens next, and a new
/// session is the way to try again.
const FINAL_REASONS: [&str; 5] = [
    "Rejected",
    "StartTimeout",
    "NotApproved",
    "ApprovalRejected",
    "PolicyRevoked",
];

/// Reconciles one session.
#[instrument(skip_all, fields(session = %session.name_any(), namespace = session.namespace().unwrap_or_default()))]
pub async fn reconcile(session: Arc<DebugSession>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = session.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<DebugSession> = Api::namespaced(ctx.client.clone(), &ns);
    let key = ObjectRef::from_obj(session.as_ref());
    let result = async {
        let session = with_finalizer(&api, session).await?;
        finalizer(&api, naming::FINALIZER, session, |event| async {
            match event {
                finalizer::Event::Apply(s) => Pass::of(&s, &ns, &ctx).apply().await,
                finalizer::Event::Cleanup(s) => Pass::of(&s, &ns, &ctx).cleanup().await,
            }
        })
        .await
    }
    .await
    .map_err(|e| match e {
        // Our own errors keep their category and chain.
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        e => Error::Finalizer(Box::new(e)),
    });
    ctx.metrics.reconciled(started.elapsed());
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// The session with its finalizer: added first if a live session lacks it, so that the
/// same pass goes on to apply (kube's [`finalizer`] alone stops after adding it and waits
/// for the next event: a whole round trip before the first change). The finalizer is in
/// place before anything is changed: the apply starts only once the API server took it.
async fn with_finalizer(
    api: &Api<DebugSession>,
    session: Arc<DebugSession>,
) -> Result<Arc<DebugSession>, finalizer::Error<Error>> {
    let has = session.finalizers().iter().any(|f| f == naming::FINALIZER);
    if has || session.metadata.deletion_timestamp.is_some() {
        return Ok(session);
    }
    // For a live session without the finalizer, kube's helper only adds it (a JSON patch
    // that tests the list it read) and does not call back.
    finalizer(api, naming::FINALIZER, session.clone(), |_| async {
        Ok::<_, Error>(Action::await_change())
    })
    .await?;
    let mut added = (*session).clone();
    added.finalizers_mut().push(naming::FINALIZER.to_owned());
    Ok(Arc::new(added))
}

/// Retries a failed reconciliation with exponential backoff.
pub fn error_policy(session: Arc<DebugSession>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.category());
    let delay = ctx.backoff(ObjectRef::from_obj(session.as_ref()));
    warn!(
        session = %session.name_any(),
        category = error.category(),
        error = %error_chain(error),
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// What acting on a decision did.
enum Acted {
    /// The situation is known, and when to look again.
    Settled(Situation, Action),
    /// The mode ran, with `remaining` of the ttl left; its outcome is read in the report.
    Applied {
        outcome: Outcome,
        remaining: Duration,
    },
}

/// What acting found, besides the situation: what the status records of it.
#[derive(Debug, Default)]
struct Done {
    /// What teardown left behind.
    leftovers: Vec<String>,
    /// The target as the mode found it; `None` keeps the previous one.
    target: Option<ResolvedTarget>,
    /// What the debugger can read in the target's pods.
    exposure: Vec<Exposure>,
    /// Changes others made to the target's template; `None` keeps the previous ones.
    changes: Option<Vec<TargetChange>>,
}

/// One reconcile pass over a session: what every step reads.
struct Pass<'a> {
    session: &'a DebugSession,
    /// The status before this pass, read here and nowhere else.
    old: DebugSessionStatus,
    ns: &'a str,
    ctx: &'a Context,
    /// The time of this pass, to the second.
    now: Timestamp,
}

impl<'a> Pass<'a> {
    fn of(session: &'a DebugSession, ns: &'a str, ctx: &'a Context) -> Self {
        Pass {
            session,
            old: session.status.clone().unwrap_or_default(),
            ns,
            ctx,
            now: report::now(),
        }
    }

    /// The session's debugger should be in place (unless refused, unapproved or expired).
    async fn apply(self) -> Result<Action, Error> {
        if settled(&self.old) {
            return Ok(Action::await_change());
        }
        // decide: validate, govern, approval gate, ttl, authorize
        let (decision, judged) = self.decide().await?;

        // act: tear down, or put the debugger in place through its mode
        let mut done = Done::default();
        let acted = self.act(decision, &mut done).await?;

        // report: the outcome as a situation, the start deadline included, into status
        self.report(acted, judged, done).await
    }

    /// Reports what acting did: reads the mode's outcome as a situation (a debugger that
    /// no pod ran within the start deadline is refused), removes what a refusal may not
    /// keep, publishes the Events and writes the status. Returns when to look again.
    async fn report(&self, acted: Acted, judged: Judged, mut done: Done) -> Result<Action, Error> {
        let (situation, action) = match acted {
            Acted::Settled(situation, action) => (situation, action),
            Acted::Applied { outcome, remaining } => {
                if let Outcome::Applied { changes, .. } = &outcome {
                    self.report_changes(changes).await;
                }
                let deadline = self.ctx.policy.start_deadline;
                let kind = self.session.spec.target.kind;
                settle(
                    outcome, &self.old, self.now, remaining, deadline, kind, &mut done,
                )
            }
        };
        // A refused session keeps nothing of its debugger, whatever refused it.
        if matches!(situation, Situation::Refused { .. }) {
            let left = self.tear_down(Ending::Refused).await?;
            done.leftovers.extend(left);
        }
        if judged.approved {
            self.announce_approval().await;
        }
        let facts = self.facts(judged, situation, done);
        self.write_status(facts).await?;
        Ok(action)
    }

    /// The session is being deleted: remove its debugger, then let it go.
    async fn cleanup(self) -> Result<Action, Error> {
        let leftovers = self.tear_down(Ending::Done).await?;
        if self.old.phase != Some(Phase::Expired) {
            let done = Done {
                leftovers,
                ..Done::default()
            };
            let facts = self.facts(Judged::before(&self.old), Situation::Ended, done);
            self.write_status(facts).await?;
        }
        let key = format!("{}/{}", self.ns, self.session.name_any());
        self.ctx.metrics.session_phase(key, None);
        Ok(Action::await_change())
    }

    /// Carries out `decision`: tears down what may not stay, or runs the mode.
    async fn act(&self, decision: Decision, done: &mut Done) -> Result<Acted, Error> {
        Ok(match decision {
            // Teardown follows in the report, as for every refusal.
            Decision::Refuse(invalid) => Acted::Settled(refused(&invalid), Action::await_change()),
            Decision::Await { policy, due } => {
                // A policy that came to require approval for a running session stops it.
                if self.old.started_at.is_some() && self.old.ended_at.is_none() {
                    done.leftovers = self.tear_down(Ending::Done).await?;
                }
                // Approvers see what the debugger would be able to read.
                let target = &self.session.spec.target;
                let client = &self.ctx.client;
                done.exposure = workload::pod_spec(client, self.ns, target.kind, &target.name)
                    .await?
                    .as_ref()
                    .map(exposure::report)
                    .unwrap_or_default();
                let wait = ttl::remaining(self.now, due).unwrap_or_default();
                let action = Action::requeue(wait.min(AUTHORIZATION_RECHECK));
                Acted::Settled(Situation::AwaitingApproval { policy, due }, action)
            }
            Decision::Expire => {
                done.leftovers = self.tear_down(Ending::Done).await?;
                Acted::Settled(Situation::Expired, Action::await_change())
            }
            Decision::Run {
                plan,
                expires_at,
                remaining,
            } => Acted::Applied {
                outcome: self.run(&plan, expires_at, done).await?,
                remaining,
            },
        })
    }

    /// Puts the debugger in place through the plan's mode ([`modes::apply`]).
    async fn run(
        &self,
        plan: &Plan,
        expires_at: Timestamp,
        done: &mut Done,
    ) -> Result<Outcome, Error> {
        let (session, old) = (self.session, &self.old);
        // A session whose mode changed starts again from a clean target.
        if old.mode.is_some_and(|m| m != plan.mode.into()) {
            done.leftovers = self.tear_down(Ending::Done).await?;
        }
        let name = session.name_any();
        let request = Request {
            ctx: self.ctx,
            session,
            ns: self.ns,
            name: &name,
            requester: session
                .spec
                .requester
                .as_ref()
                .map_or("", |r| r.username.as_str()),
            plan,
            container: naming::container_name(&name),
            manager: naming::field_manager(&name),
            expires_at,
            previous_expires_at: old.expires_at.as_ref().map(|t| t.0),
            previous_target: old.target.as_ref(),
            started_at: old.started_at.as_ref().map(|t| t.0),
        };
        match modes::apply(&request).await {
            Ok(outcome) => Ok(outcome),
            // A change the API server refuses for good ends the session instead of a retry
            // loop that only the operator's log would show.
            Err(e) => match e.rejection() {
                Some(message) => Ok(Outcome::Refused(Invalid::Rejected { message })),
                None => Err(e),
            },
        }
    }

    /// Removes everything of the session ([`modes::teardown`]); the time it took goes into
    /// the teardown histogram when a debugger was in place (not for a session that never
    /// got that far, or a refusal repeated).
    async fn tear_down(&self, ending: Ending) -> Result<Vec<String>, Error> {
        let started = Instant::now();
        let ctx = self.ctx;
        let leftovers = modes::teardown(
            &ctx.client,
            &ctx.caches.workloads,
            self.session,
            self.ns,
            ending,
            ctx.policy.stopper.as_ref(),
        )
        .await?;
        if matches!(self.old.phase, Some(Phase::Injecting | Phase::Active)) {
            ctx.metrics.teardown(started.elapsed());
        }
        Ok(leftovers)
    }

    /// Publishes an Approved Event naming who approved the session, and why.
    async fn announce_approval(&self) {
        let Some(approval) = &self.session.spec.approval else {
            return;
        };
        let why = if approval.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", approval.reason)
        };
        let note = format!("approved by {}{why}", approval.approver);
        self.ctx
            .publish(self.session, EventType::Normal, "Approved", note)
            .await;
    }

    /// Publishes a TargetChanged Event for each field manager that changed the target's
    /// template since the last reconcile.
    async fn report_changes(&self, changes: &[TargetChange]) {
        for change in changes {
            if self.old.target_changes.contains(change) {
                continue;
            }
            let note = format!(
                "{} changed the pod template of the target at {}; teardown removes only shellcar's fields and keeps that change",
                change.manager, change.time.0
            );
            self.ctx
                .publish(self.session, EventType::Warning, "TargetChanged", note)
                .await;
        }
    }

    /// The facts the next status follows from: what was judged, the situation, and what
    /// acting found, over what the previous status recorded.
    fn facts(&self, judged: Judged, situation: Situation, done: Done) -> Facts {
        let (session, old) = (self.session, &self.old);
        Facts {
            generation: session.metadata.generation,
            now: self.now,
            mode: judged.mode,
            target: done.target.or_else(|| old.target.clone()),
            container: naming::container_name(&session.name_any()),
            expires_at: judged.expires_at,
            requester: session.spec.requester.as_ref().map(|r| r.username.clone()),
            situation,
            leftovers: done.leftovers,
            policy: judged.policy,
            exposure: done.exposure,
            target_changes: done.changes.unwrap_or_else(|| old.target_changes.clone()),
        }
    }

    /// Writes the next status if it differs from the current one, and publishes the Event
    /// of the transition.
    async fn write_status(&self, facts: Facts) -> Result<(), Error> {
        let (session, ctx, old) = (self.session, self.ctx, &self.old);
        let new = status::next(old, facts);
        let name = session.name_any();
        ctx.metrics
            .session_phase(format!("{}/{name}", self.ns), new.phase);
        if &new == old {
            return Ok(());
        }
        let api: Api<DebugSession> = Api::namespaced(ctx.client.clone(), self.ns);
        report::write_status(&api, &name, &new).await?;
        // What teardown could not remove is said once, as a Warning, never as removed.
        for line in new.leftovers.iter().filter(|l| !old.leftovers.contains(l)) {
            let note = line.trim_end().to_owned();
            ctx.publish(session, EventType::Warning, "LeftBehind", note)
                .await;
        }
        let Some(t) = status::transition(old, &new) else {
            return Ok(());
        };
        if new.phase == Some(Phase::Failed) {
            ctx.metrics.refused(&t.reason);
        }
        if new.phase == Some(Phase::Active) && old.phase != Some(Phase::Active) {
            // From creation, or from the approval that started the ttl.
            let start = session
                .spec
                .approval
                .as_ref()
                .map(|a| a.time.0)
                .or_else(|| session.metadata.creation_timestamp.as_ref().map(|t| t.0));
            if let Some(start) = start
                && let Ok(elapsed) = Duration::try_from(Timestamp::now().duration_since(start))
            {
                ctx.metrics.time_to_ready(elapsed);
            }
        }
        let type_ = if t.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(session, type_, &t.reason, t.note).await;
        Ok(())
    }
}

/// True for a session that is an audit record, to which nothing more happens: one that
/// expired, or one that failed for good (trying again would inject, fail and tear down
/// again).
fn settled(old: &DebugSessionStatus) -> bool {
    let failed_for_good = old.phase == Some(Phase::Failed)
        && status::condition(old, status::READY)
            .is_some_and(|c| FINAL_REASONS.contains(&c.reason.as_str()));
    old.phase == Some(Phase::Expired) || failed_for_good
}

fn refused(invalid: &Invalid) -> Situation {
    Situation::Refused {
        reason: invalid.reason(),
        message: invalid.to_string(),
    }
}

/// The situation the mode's `outcome` leaves the session in, and when to look again:
/// never later than `remaining`, the ttl left. A debugger that no pod has run for longer
/// than the start `deadline` since [`waiting_since`] is refused. What the outcome found
/// goes into `done`.
fn settle(
    outcome: Outcome,
    old: &DebugSessionStatus,
    now: Timestamp,
    remaining: Duration,
    deadline: Duration,
    kind: TargetKind,
    done: &mut Done,
) -> (Situation, Action) {
    // Wake up exactly at expiry, unless something else wakes the session first.
    let at_expiry = Action::requeue(remaining);
    match outcome {
        Outcome::Applied {
            target,
            pods,
            note,
            exposure,
            blocked,
            changes,
        } => {
            done.target = Some(target);
            done.exposure = exposure;
            done.changes = Some(changes);
            let mut wait = remaining.min(AUTHORIZATION_RECHECK);
            if !pods.iter().any(|p| p.ready) {
                let since = waiting_since(old, now);
                match ttl::remaining(now, ttl::expires_at(since, deadline)) {
                    Some(left) => wait = wait.min(left),
                    None => {
                        let timeout = start_timeout(deadline, &pods, blocked.as_ref());
                        return (refused(&timeout), at_expiry);
                    }
                }
            }
            let injected = Situation::Injected {
                pods,
                note,
                blocked,
            };
            (injected, Action::requeue(wait))
        }
        Outcome::Missing { message } => {
            // Workloads are watched; a missing Pod target is looked for again sooner.
            let retry = if kind.is_workload() {
                MISSING_TARGET_RETRY
            } else {
                MISSING_POD_RETRY
            };
            let missing = Situation::TargetMissing { message };
            (missing, Action::requeue(remaining.min(retry)))
        }
        Outcome::Refused(invalid) => (refused(&invalid), at_expiry),
    }
}

/// The refusal of a debugger no pod ran within `deadline`, with the last reason known:
/// the workload's, else the first pod's.
fn start_timeout(deadline: Duration, pods: &[DebugPod], blocked: Option<&Problem>) -> Invalid {
    let last = blocked.map(|b| b.message.clone()).or_else(|| {
        pods.iter().find_map(|p| {
            let reason = p.reason.as_deref()?;
            Some(match &p.message {
                Some(m) => format!("pod {}: {reason}: {m}", p.name),
                None => format!("pod {}: {reason}", p.name),
            })
        })
    });
    Invalid::StartTimeout {
        deadline: ttl::format(deadline),
        last,
    }
}

/// Since when the session has gone without a running debugger: its injection, or the
/// moment Ready last turned False, whichever is later.
fn waiting_since(old: &DebugSessionStatus, now: Timestamp) -> Timestamp {
    let injected = old.started_at.as_ref().map_or(now, |t| t.0);
    let not_ready = match status::condition(old, status::READY) {
        Some(ready) if ready.status == "False" => ready.last_transition_time.0,
        _ => now,
    };
    injected.max(not_ready)
}

#[cfg(test)]
mod tests;
