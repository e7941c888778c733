//! The reconcile pipeline of a DebugSession: fetch, validate, build, apply, status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::crd::{DebugSession, DebugSessionStatus, Phase, ResolvedTarget, TargetKind};
use crate::status::{self, Facts, Situation};
use crate::telemetry::Metrics;
use crate::validate::{self, Invalid, Policy};
use crate::workload::{self, Rollout, Workload};
use crate::{inject, naming, ttl};

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
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, policy: Policy, metrics: Arc<Metrics>) -> Self {
        Context {
            client,
            recorder,
            policy,
            metrics,
            failures: Mutex::default(),
        }
    }
}

/// How long to wait before retrying a session whose target is missing. Watches on the
/// workloads wake the session as soon as the target appears; this is only a safety net.
const MISSING_TARGET_RETRY: Duration = Duration::from_secs(300);

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
    let container = naming::container_name(&name);
    let manager = naming::field_manager(&name);
    let now = now();
    let mut facts = Facts {
        generation: session.metadata.generation,
        now,
        mode: old.mode,
        target: old.target.clone(),
        container: container.clone(),
        expires_at: None,
        situation: Situation::Expired,
    };

    // An expired session is an audit record: nothing more happens to it.
    if old.phase == Some(Phase::Expired) {
        return Ok(Action::await_change());
    }

    // validate (pure)
    let plan = match validate::spec(spec, &ctx.policy) {
        Ok(plan) => plan,
        Err(invalid) => {
            teardown(ctx, ns, spec.target.kind, &spec.target.name, &manager).await?;
            facts.situation = refused(&invalid);
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
        teardown(ctx, ns, spec.target.kind, &spec.target.name, &manager).await?;
        facts.situation = Situation::Expired;
        write_status(session, ns, ctx, &old, facts).await?;
        return Ok(Action::await_change());
    };
    // Wake up exactly at expiry, unless something else wakes the session first.
    let at_expiry = Action::requeue(remaining);

    // fetch
    let kind = spec.target.kind;
    let workload = workload::fetch(&ctx.client, ns, kind, &spec.target.name).await?;
    let Some(workload) = workload.filter(|w| !w.deleting) else {
        let message = match &old.target {
            Some(t) if t.uid.is_some() => format!(
                "{kind} {} was deleted; the session waits for it to be created again",
                spec.target.name
            ),
            _ => format!("{kind} {} not found in namespace {ns}", spec.target.name),
        };
        facts.situation = Situation::TargetMissing { message };
        write_status(session, ns, ctx, &old, facts).await?;
        return Ok(Action::requeue(remaining.min(MISSING_TARGET_RETRY)));
    };
    facts.target = Some(ResolvedTarget {
        kind,
        name: workload.name.clone(),
        uid: workload.uid.clone(),
    });
    if let Some(previous) = old.target.as_ref().and_then(|t| t.uid.as_ref())
        && workload.uid.as_ref() != Some(previous)
    {
        publish(
            ctx,
            session,
            EventType::Warning,
            "TargetRecreated",
            format!(
                "{kind} {} was deleted and created again; injecting into the new one",
                workload.name
            ),
        )
        .await;
    }
    if let Err(invalid) = validate::target(spec, &workload) {
        teardown(ctx, ns, kind, &workload.name, &manager).await?;
        facts.situation = refused(&invalid);
        write_status(session, ns, ctx, &old, facts).await?;
        return Ok(at_expiry);
    }

    // build (pure)
    let debugger = inject::debugger_container(&spec.debugger, &container, &plan.image);
    let template_spec = workload.template.spec.as_ref();
    let claim_sharing = inject::claims_share_process_namespace(
        template_spec.and_then(|s| s.share_process_namespace),
        &workload.managed_fields,
    );
    let intent = inject::sidecar_intent(kind, &workload.name, &name, &debugger, claim_sharing);

    // apply
    let api = workload_api(ctx, ns, kind);
    match api
        .patch(
            &workload.name,
            &PatchParams::apply(&manager),
            &Patch::Apply(&intent),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            facts.situation = Situation::Refused {
                reason: "Conflict",
                message: format!(
                    "{kind} {}: another field manager owns a field the debugger needs: {}",
                    workload.name, status.message
                ),
            };
            write_status(session, ns, ctx, &old, facts).await?;
            return Ok(at_expiry);
        }
        Err(source) => {
            return Err(Error::Apply {
                kind,
                name: workload.name.clone(),
                source,
            });
        }
    }

    // status
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(naming::DEBUGGED_LABEL))
        .await
        .map_err(Error::Pods)?;
    let pods = status::debug_pods(&pods.items, ns, &name, &container);
    facts.situation = Situation::Injected {
        note: rollout_note(&workload, pods.is_empty()),
        pods,
    };
    write_status(session, ns, ctx, &old, facts).await?;
    Ok(at_expiry)
}

/// The session is being deleted: remove its debugger, then let it go.
async fn cleanup(session: &DebugSession, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let name = session.name_any();
    let spec = &session.spec;
    let manager = naming::field_manager(&name);
    teardown(ctx, ns, spec.target.kind, &spec.target.name, &manager).await?;
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
        };
        write_status(session, ns, ctx, &old, facts).await?;
    }
    ctx.metrics.session_phase(format!("{ns}/{name}"), None);
    Ok(Action::await_change())
}

/// Removes everything `manager` owns on the target, if the target exists and the manager
/// owns anything. Idempotent: after a crash at any point, running it again is safe.
async fn teardown(
    ctx: &Context,
    ns: &str,
    kind: TargetKind,
    name: &str,
    manager: &str,
) -> Result<(), Error> {
    let Some(workload) = workload::fetch(&ctx.client, ns, kind, name).await? else {
        return Ok(());
    };
    if !inject::has_fields(&workload.managed_fields, manager) {
        return Ok(());
    }
    workload_api(ctx, ns, kind)
        .patch(
            name,
            &PatchParams::apply(manager),
            &Patch::Apply(inject::empty_intent(kind, name)),
        )
        .await
        .map_err(|source| Error::Teardown {
            kind,
            name: name.to_owned(),
            source,
        })?;
    info!(%kind, %name, %manager, "removed the debugger");
    Ok(())
}

fn workload_api(ctx: &Context, ns: &str, kind: TargetKind) -> Api<DynamicObject> {
    match workload::api_resource(kind) {
        Some(resource) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
        // Pods are refused by validation before anything is applied to them.
        None => Api::namespaced_with(
            ctx.client.clone(),
            ns,
            &kube::api::ApiResource::erase::<Pod>(&()),
        ),
    }
}

fn refused(invalid: &Invalid) -> Situation {
    Situation::Refused {
        reason: invalid.reason(),
        message: invalid.to_string(),
    }
}

/// What a person should know when the template changed but pods may not follow.
fn rollout_note(workload: &Workload, no_pods: bool) -> Option<String> {
    (workload.rollout == Rollout::OnDelete && no_pods).then(|| {
        format!(
            "{} {} replaces pods only when they are deleted: delete a pod to get the debugger",
            workload.kind, workload.name
        )
    })
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
async fn publish(
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
