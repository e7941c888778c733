//! The reconcile pipeline of a DebugSession, top to bottom: fetch, validate, plan, apply
//! the mode, write status. Teardown runs where a session is refused, expires or is deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use crate::approval::{self, Gate};
use crate::context::{Context, Error, error_chain};
use crate::crd::{DebugSession, DebugSessionStatus, Phase, TargetChange};
use crate::modes::{self, Ending, Outcome, Request};
use crate::policy::{self, Admitted};
use crate::status::{self, Facts, Situation};
use crate::validate::{self, Invalid, Plan};
use crate::{access, exposure, podsecurity, workload};
use crate::{naming, ttl};

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
                finalizer::Event::Apply(s) => apply(&s, &ns, &ctx).await,
                finalizer::Event::Cleanup(s) => cleanup(&s, &ns, &ctx).await,
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

/// The facts every status of `session` starts from: what its previous status recorded.
fn facts(session: &DebugSession, old: &DebugSessionStatus, situation: Situation) -> Facts {
    Facts {
        generation: session.metadata.generation,
        now: now(),
        mode: old.mode,
        target: old.target.clone(),
        container: naming::container_name(&session.name_any()),
        expires_at: old.expires_at.as_ref().map(|t| t.0),
        requester: session.spec.requester.as_ref().map(|r| r.username.clone()),
        situation,
        leftovers: Vec::new(),
        policy: None,
        exposure: Vec::new(),
        target_changes: old.target_changes.clone(),
    }
}

/// The refusal if the session's requester may not do directly what the session does for
/// them (the same SubjectAccessReviews as the admission webhook's, cached briefly).
async fn authorize(
    session: &DebugSession,
    plan: &Plan,
    ns: &str,
    ctx: &Context,
) -> Result<Option<Invalid>, Error> {
    let Some(requester) = &session.spec.requester else {
        return Ok(Some(Invalid::NoRequester));
    };
    let checks = access::checks(&session.spec, plan.mode, ns);
    match access::authorize_cached(&ctx.client, &ctx.access, requester, &checks).await {
        Ok(()) => Ok(None),
        Err(access::Error::Denied(denied)) => Ok(Some(Invalid::Forbidden {
            denied: denied.to_string(),
        })),
        Err(e) => Err(Error::Access(e)),
    }
}

/// The policy that admits the session, or the refusal: a DebugPolicy (or the built-in
/// default where none selects the namespace) must allow it, and the namespace's Pod
/// Security level its profile. Read from watch caches: no request.
fn govern(
    session: &DebugSession,
    plan: &Plan,
    ns: &str,
    ctx: &Context,
    old: &DebugSessionStatus,
) -> Result<Result<Admitted, Invalid>, Error> {
    let labels = ctx.caches.namespace_labels(ns)?;
    let policies = ctx.caches.policies.state();
    // The limit of live sessions applies when a session is created (by the webhook).
    let ask = policy::Ask::of(&session.spec, plan.mode, &plan.image, plan.ttl, None);
    let admitted = match policy::admit(&policies, ns, &labels, &ask, &ctx.policy) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let message = refusal.to_string();
            // A session that some policy admitted before has lost it.
            return Ok(Err(if old.policy.is_some() {
                Invalid::PolicyRevoked { message }
            } else {
                Invalid::PolicyDenied { message }
            }));
        }
    };
    if let Err(forbidden) = podsecurity::check(ns, &labels, session.spec.debugger.profile) {
        return Ok(Err(Invalid::PodSecurity {
            message: forbidden.to_string(),
        }));
    }
    Ok(Ok(admitted))
}

fn refused(invalid: &Invalid) -> Situation {
    Situation::Refused {
        reason: invalid.reason(),
        message: invalid.to_string(),
    }
}

/// Ends a session that may not go on: its debugger is removed and status says why.
async fn refuse(
    session: &DebugSession,
    ns: &str,
    ctx: &Context,
    old: &DebugSessionStatus,
    mut facts: Facts,
    invalid: &Invalid,
) -> Result<Action, Error> {
    facts.situation = refused(invalid);
    let left = tear_down(session, ns, ctx, old, Ending::Refused).await?;
    facts.leftovers.extend(left);
    write_status(session, ns, ctx, old, facts).await?;
    Ok(Action::await_change())
}

/// The session waits for approval until `due`: nothing of it may be in place meanwhile,
/// and status shows approvers what the debugger would be able to read.
async fn await_approval(
    session: &DebugSession,
    ns: &str,
    ctx: &Context,
    old: &DebugSessionStatus,
    mut facts: Facts,
    due: jiff::Timestamp,
) -> Result<Action, Error> {
    // A policy that came to require approval for a running session stops it first.
    if old.started_at.is_some() && old.ended_at.is_none() {
        facts.leftovers = tear_down(session, ns, ctx, old, Ending::Done).await?;
    }
    let target = &session.spec.target;
    facts.exposure = workload::pod_spec(&ctx.client, ns, target.kind, &target.name)
        .await?
        .as_ref()
        .map(exposure::report)
        .unwrap_or_default();
    let policy = facts.policy.clone().unwrap_or_default();
    facts.expires_at = None;
    facts.situation = Situation::AwaitingApproval { policy, due };
    write_status(session, ns, ctx, old, facts).await?;
    let wait = ttl::remaining(now(), due).unwrap_or_default();
    Ok(Action::requeue(wait.min(AUTHORIZATION_RECHECK)))
}

/// Removes everything of the session ([`modes::teardown`]); the time it took goes into
/// the teardown histogram when a debugger was in place (not for a session that never got
/// that far, or a refusal repeated).
async fn tear_down(
    session: &DebugSession,
    ns: &str,
    ctx: &Context,
    old: &DebugSessionStatus,
    ending: Ending,
) -> Result<Vec<String>, Error> {
    let started = Instant::now();
    let leftovers =
        modes::teardown(&ctx.client, &ctx.caches.workloads, session, ns, ending).await?;
    if matches!(old.phase, Some(Phase::Injecting | Phase::Active)) {
        ctx.metrics.teardown(started.elapsed());
    }
    Ok(leftovers)
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

/// Publishes a TargetChanged Event for each field manager that changed the target's
/// template since the last reconcile.
async fn report_changes(
    session: &DebugSession,
    ctx: &Context,
    old: &DebugSessionStatus,
    changes: &[TargetChange],
) {
    for change in changes {
        if old.target_changes.contains(change) {
            continue;
        }
        let note = format!(
            "{} changed the pod template of the target at {}; teardown removes only shellcar's fields and keeps that change",
            change.manager, change.time.0
        );
        ctx.publish(session, EventType::Warning, "TargetChanged", note)
            .await;
    }
}

/// The session's debugger should be in place (unless refused, unapproved or expired).
async fn apply(session: &DebugSession, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let old = session.status.clone().unwrap_or_default();
    // An expired session is an audit record: nothing more happens to it.
    if old.phase == Some(Phase::Expired) {
        return Ok(Action::await_change());
    }
    // So is one that ended for good: trying again would inject, fail and tear down again.
    if old.phase == Some(Phase::Failed)
        && status::condition(&old, status::READY)
            .is_some_and(|c| FINAL_REASONS.contains(&c.reason.as_str()))
    {
        return Ok(Action::await_change());
    }

    // validate (pure, given what the cluster can do)
    let caps = ctx.capabilities().await?;
    let plan = match validate::spec(&session.spec, &ctx.policy, caps) {
        Ok(plan) => plan,
        Err(invalid) => {
            let mut facts = facts(session, &old, refused(&invalid));
            facts.expires_at = None;
            return refuse(session, ns, ctx, &old, facts, &invalid).await;
        }
    };
    let mut facts = facts(session, &old, Situation::Expired);
    facts.mode = Some(plan.mode.into());

    // policy: a DebugPolicy admits it, Pod Security allows it, and it is approved if need be
    let admitted = match govern(session, &plan, ns, ctx, &old)? {
        Ok(admitted) => admitted,
        Err(invalid) => return refuse(session, ns, ctx, &old, facts, &invalid).await,
    };
    facts.policy = Some(admitted.policy.clone());
    let created = session
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(facts.now, |t| t.0);
    let start = match approval::gate(
        &admitted,
        session.spec.approval.as_ref(),
        created,
        facts.now,
    ) {
        Gate::Open { start } => start,
        Gate::Awaiting { due } => {
            return await_approval(session, ns, ctx, &old, facts, due).await;
        }
        Gate::Closed(invalid) => return refuse(session, ns, ctx, &old, facts, &invalid).await,
    };
    if old.phase == Some(Phase::AwaitingApproval)
        && let Some(approval) = &session.spec.approval
    {
        let why = if approval.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", approval.reason)
        };
        let note = format!("approved by {}{why}", approval.approver);
        ctx.publish(session, EventType::Normal, "Approved", note)
            .await;
    }

    let expires_at = ttl::expires_at(start, plan.ttl);
    facts.expires_at = Some(expires_at);
    let Some(remaining) = ttl::remaining(facts.now, expires_at) else {
        facts.leftovers = tear_down(session, ns, ctx, &old, Ending::Done).await?;
        write_status(session, ns, ctx, &old, facts).await?;
        return Ok(Action::await_change());
    };
    // Wake up exactly at expiry, unless something else wakes the session first.
    let at_expiry = Action::requeue(remaining);

    // authorize: nothing the requester could not do directly, checked before each change
    if let Some(refusal) = authorize(session, &plan, ns, ctx).await? {
        return refuse(session, ns, ctx, &old, facts, &refusal).await;
    }

    // A session whose mode changed starts again from a clean target.
    if old.mode.is_some_and(|m| m != plan.mode.into()) {
        facts.leftovers = tear_down(session, ns, ctx, &old, Ending::Done).await?;
    }

    // fetch, validate against the target, build, apply: the mode's work
    let name = session.name_any();
    let request = Request {
        ctx,
        session,
        ns,
        name: &name,
        requester: session
            .spec
            .requester
            .as_ref()
            .map_or("", |r| r.username.as_str()),
        plan: &plan,
        container: facts.container.clone(),
        manager: naming::field_manager(&name),
        expires_at,
        previous_expires_at: old.expires_at.as_ref().map(|t| t.0),
        previous_target: old.target.as_ref(),
        started_at: old.started_at.as_ref().map(|t| t.0),
    };
    let outcome = match modes::apply(&request).await {
        Ok(outcome) => outcome,
        // A change the API server refuses for good ends the session instead of a retry
        // loop that only the operator's log would show.
        Err(e) => match e.rejection() {
            Some(message) => Outcome::Refused(Invalid::Rejected { message }),
            None => return Err(e),
        },
    };

    // status
    let action = match outcome {
        Outcome::Applied {
            target,
            pods,
            note,
            exposure,
            blocked,
            changes,
        } => {
            facts.target = Some(target);
            facts.exposure = exposure;
            report_changes(session, ctx, &old, &changes).await;
            facts.target_changes = changes;
            let mut wait = remaining.min(AUTHORIZATION_RECHECK);
            if !pods.iter().any(|p| p.ready) {
                let deadline = ctx.policy.start_deadline;
                let since = waiting_since(&old, facts.now);
                match ttl::remaining(facts.now, ttl::expires_at(since, deadline)) {
                    Some(left) => wait = wait.min(left),
                    None => {
                        let last = blocked.as_ref().map(|b| b.message.clone()).or_else(|| {
                            pods.iter().find_map(|p| {
                                let reason = p.reason.as_deref()?;
                                Some(match &p.message {
                                    Some(m) => format!("pod {}: {reason}: {m}", p.name),
                                    None => format!("pod {}: {reason}", p.name),
                                })
                            })
                        });
                        let timeout = Invalid::StartTimeout {
                            deadline: ttl::format(deadline),
                            last,
                        };
                        refuse(session, ns, ctx, &old, facts, &timeout).await?;
                        return Ok(at_expiry);
                    }
                }
            }
            facts.situation = Situation::Injected {
                pods,
                note,
                blocked,
            };
            Action::requeue(wait)
        }
        Outcome::Missing { message } => {
            facts.situation = Situation::TargetMissing { message };
            // Workloads are watched; a missing Pod target is looked for again sooner.
            let retry = if session.spec.target.kind.is_workload() {
                MISSING_TARGET_RETRY
            } else {
                MISSING_POD_RETRY
            };
            Action::requeue(remaining.min(retry))
        }
        Outcome::Refused(invalid) => {
            // Added to what a change of mode may already have left behind above.
            refuse(session, ns, ctx, &old, facts, &invalid).await?;
            return Ok(at_expiry);
        }
    };
    write_status(session, ns, ctx, &old, facts).await?;
    Ok(action)
}

/// The session is being deleted: remove its debugger, then let it go.
async fn cleanup(session: &DebugSession, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let old = session.status.clone().unwrap_or_default();
    let leftovers = tear_down(session, ns, ctx, &old, Ending::Done).await?;
    if old.phase != Some(Phase::Expired) {
        let mut facts = facts(session, &old, Situation::Ended);
        facts.leftovers = leftovers;
        write_status(session, ns, ctx, &old, facts).await?;
    }
    ctx.metrics
        .session_phase(format!("{ns}/{}", session.name_any()), None);
    Ok(Action::await_change())
}

/// Writes the next status if it differs from the current one, and publishes the Event of
/// the transition.
async fn write_status(
    session: &DebugSession,
    ns: &str,
    ctx: &Context,
    old: &DebugSessionStatus,
    facts: Facts,
) -> Result<(), Error> {
    let new = status::next(old, facts);
    let name = session.name_any();
    ctx.metrics.session_phase(format!("{ns}/{name}"), new.phase);
    if &new == old {
        return Ok(());
    }
    let api: Api<DebugSession> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": DebugSession::api_version(&()),
        "kind": DebugSession::kind(&()),
        "status": new,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(naming::CONTROLLER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    if let Some(t) = status::transition(old, &new) {
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
    }
    Ok(())
}

/// The current time to the second, as the API server stores times; finer times would make
/// every status look changed after a round trip.
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

#[cfg(test)]
mod tests {
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
}
