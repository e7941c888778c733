//! The reconcile pipeline of a DebugSession: fetch, validate, build, apply, status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::OnceCell;
use tracing::{instrument, warn};

use crate::crd::{DebugSession, DebugSessionStatus, Mode, Phase, TargetKind};
use crate::modes::{self, Outcome};
use crate::status::{self, Facts, Situation};
use crate::telemetry::Metrics;
use crate::validate::{self, Capabilities, Policy};
use crate::workload;
use crate::{naming, ttl};

/// Errors of one reconciliation. All of them are transient: the session is retried with
/// backoff. Problems with the spec are not errors but a Failed status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the DebugSession has no namespace")]
    NoNamespace,
    #[error("reading the target")]
    Workload(#[from] workload::Error),
    #[error("applying the debugger to {kind} {name}")]
    Apply {
        kind: TargetKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("removing the debugger from {kind} {name}")]
    Teardown {
        kind: TargetKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing the debugged pods")]
    Pods(#[source] kube::Error),
    #[error("writing the status")]
    Status(#[source] kube::Error),
    #[error("{action} pod {pod}")]
    Pod {
        action: &'static str,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("running a command in the debugger of pod {pod}: {message}")]
    Stop { pod: String, message: String },
    #[error("discovering what the cluster serves")]
    Discovery(#[source] kube::Error),
    #[error("managing the finalizer")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A short, stable category: the metrics label and log field.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NoNamespace => "NoNamespace",
            Error::Workload(_) => "TargetReadFailed",
            Error::Apply { .. } => "ApplyFailed",
            Error::Teardown { .. } => "TeardownFailed",
            Error::Pods(_) => "PodListFailed",
            Error::Status(_) => "StatusWriteFailed",
            Error::Pod { .. } => "PodOperationFailed",
            Error::Stop { .. } => "StopFailed",
            Error::Discovery(_) => "DiscoveryFailed",
            Error::Finalizer(_) => "FinalizerFailed",
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per session, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<DebugSession>, u32>>,
    /// What the cluster serves, discovered on first use.
    capabilities: OnceCell<Capabilities>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, policy: Policy, metrics: Arc<Metrics>) -> Self {
        Context {
            client,
            recorder,
            policy,
            metrics,
            failures: Mutex::default(),
            capabilities: OnceCell::new(),
        }
    }

    /// What the cluster serves; discovered once, retried until discovery succeeds.
    pub async fn capabilities(&self) -> Result<Capabilities, Error> {
        self.capabilities
            .get_or_try_init(|| modes::discover(&self.client))
            .await
            .copied()
    }
}

/// How long to wait before retrying a session whose target is missing. Watches on the
/// workloads wake the session as soon as the target appears; this is only a safety net.
const MISSING_TARGET_RETRY: Duration = Duration::from_secs(300);

/// Pods are not watched by name, so a missing Pod target is looked for every 30 s.
const MISSING_POD_RETRY: Duration = Duration::from_secs(30);

/// Reconciles one session.
#[instrument(skip_all, fields(session = %session.name_any(), namespace = session.namespace().unwrap_or_default()))]
pub async fn reconcile(session: Arc<DebugSession>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = session.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<DebugSession> = Api::namespaced(ctx.client.clone(), &ns);
    let key = ObjectRef::from_obj(session.as_ref());
    let result = finalizer(&api, naming::FINALIZER, session, |event| async {
        match event {
            finalizer::Event::Apply(s) => apply(&s, &ns, &ctx).await,
            finalizer::Event::Cleanup(s) => cleanup(&s, &ns, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        // Our own errors keep their category and chain.
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        e => Error::Finalizer(Box::new(e)),
    });
    ctx.metrics.reconciled(started.elapsed());
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&key);
    }
    result
}

/// Retries a failed reconciliation with exponential backoff: 2 s doubling to 5 min.
pub fn error_policy(session: Arc<DebugSession>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.category());
    let attempts = ctx.failures.lock().map_or(1, |mut failures| {
        let n = failures
            .entry(ObjectRef::from_obj(session.as_ref()))
            .or_insert(0);
        *n = n.saturating_add(1);
        *n
    });
    let delay =
        Duration::from_secs(2u64.saturating_pow(attempts.min(9))).min(Duration::from_secs(300));
    warn!(
        session = %session.name_any(),
        category = error.category(),
        error = %error_chain(error),
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// `error` and its sources, joined with ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The session's debugger should be in place (unless refused or expired).
async fn apply(session: &DebugSession, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let name = session.name_any();
    let old = session.status.clone().unwrap_or_default();
    let spec = &session.spec;
    let now = now();
    let mut facts = Facts {
        generation: session.metadata.generation,
        now,
        mode: old.mode,
        target: old.target.clone(),
        container: naming::container_name(&name),
        expires_at: None,
        situation: Situation::Expired,
        leftovers: Vec::new(),
    };

    // An expired session is an audit record: nothing more happens to it.
    if old.phase == Some(Phase::Expired) {
        return Ok(Action::await_change());
    }

    // validate (pure, given what the cluster can do)
    let caps = ctx.capabilities().await?;
    let plan = match validate::spec(spec, &ctx.policy, caps) {
        Ok(plan) => plan,
        Err(invalid) => {
            facts.leftovers = modes::teardown(ctx, session, ns).await?;
            facts.situation = Situation::Refused {
                reason: invalid.reason(),
                message: invalid.to_string(),
            };
            write_status(session, ns, ctx, &old, facts).await?;
            return Ok(Action::await_change());
        }
    };
    facts.mode = Some(plan.mode);
    let created = session
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let expires_at = ttl::expires_at(created, plan.ttl);
    facts.expires_at = Some(expires_at);
    let Some(remaining) = ttl::remaining(now, expires_at) else {
        facts.leftovers = modes::teardown(ctx, session, ns).await?;
        facts.situation = Situation::Expired;
        write_status(session, ns, ctx, &old, facts).await?;
        return Ok(Action::await_change());
    };
    // Wake up exactly at expiry, unless something else wakes the session first.
    let at_expiry = Action::requeue(remaining);

    // A session whose mode changed starts again from a clean target.
    if old.mode.is_some_and(|m| m != plan.mode) {
        facts.leftovers = modes::teardown(ctx, session, ns).await?;
    }

    // fetch, validate against the target, build, apply
    let request = modes::Request {
        ctx,
        session,
        ns,
        name: name.clone(),
        plan: &plan,
        container: facts.container.clone(),
        manager: naming::field_manager(&name),
        expires_at,
        previous_expires_at: old.expires_at.as_ref().map(|t| t.0),
        previous_target: old.target.as_ref(),
    };
    let outcome = match plan.mode {
        Mode::Auto | Mode::Sidecar => modes::sidecar(&request).await?,
        Mode::Ephemeral => modes::ephemeral(&request, caps).await?,
        Mode::Copy => modes::copy(&request).await?,
    };

    // status
    let action = match outcome {
        Outcome::Applied { target, pods, note } => {
            facts.target = Some(target);
            facts.situation = Situation::Injected { pods, note };
            at_expiry
        }
        Outcome::Missing { message } => {
            facts.situation = Situation::TargetMissing { message };
            // Workloads are watched; a missing Pod target is looked for again sooner.
            let retry = if spec.target.kind.is_workload() {
                MISSING_TARGET_RETRY
            } else {
                MISSING_POD_RETRY
            };
            Action::requeue(remaining.min(retry))
        }
        Outcome::Refused { reason, message } => {
            // Added to what a change of mode may already have left behind above.
            facts
                .leftovers
                .extend(modes::teardown(ctx, session, ns).await?);
            facts.situation = Situation::Refused { reason, message };
            at_expiry
        }
    };
    write_status(session, ns, ctx, &old, facts).await?;
    Ok(action)
}

/// The session is being deleted: remove its debugger, then let it go.
async fn cleanup(session: &DebugSession, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let name = session.name_any();
    let leftovers = modes::teardown(ctx, session, ns).await?;
    let old = session.status.clone().unwrap_or_default();
    if old.phase != Some(Phase::Expired) {
        let facts = Facts {
            generation: session.metadata.generation,
            now: now(),
            mode: old.mode,
            target: old.target.clone(),
            container: naming::container_name(&name),
            expires_at: old.expires_at.as_ref().map(|t| t.0),
            situation: Situation::Ended,
            leftovers,
        };
        write_status(session, ns, ctx, &old, facts).await?;
    }
    ctx.metrics.session_phase(format!("{ns}/{name}"), None);
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
        let type_ = if t.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, session, type_, &t.reason, t.note).await;
    }
    Ok(())
}

/// Publishes an Event on the session; a failure to do so is logged, not fatal.
pub async fn publish(
    ctx: &Context,
    session: &DebugSession,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &session.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish an event");
    }
}

/// The current time to the second, as the API server stores times; finer times would make
/// every status look changed after a round trip.
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}
