//! The modes: how a debugger reaches its target, and how each is undone.
//!
//! One file per mode holds its pure builders beside the I/O that sends them:
//! [`sidecar`] (the workload's pod template), [`ephemeral`] (an ephemeral container in
//! running pods) and [`copy`] (a debuggable copy of a pod). Each mode builds its change
//! once, and sends it two ways: for real in its `apply` (the reconciler), and with
//! `dryRun=All` in its `dry_run` (the admission webhook, through [`dry_run`]). This file
//! holds what they share: the [`Request`] of one apply, its [`Outcome`], the [`DryRun`]
//! verdict, choosing pods, dispatch, and the teardown of every mode.

pub mod copy;
pub mod debugger;
pub mod ephemeral;
pub mod sidecar;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{Api, DynamicObject, EvictParams, ListParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::api_error::ApiError;
use crate::crd::{
    DebugPod, DebugSession, Exposure, PodSelection, ResolvedTarget, Target, TargetChange,
    TargetKind,
};
use crate::crd::{Mode, Resolved};
use crate::k8s::owners::{self, Owners};
use crate::rules::Stopper;
use crate::rules::validate::{Invalid, MAX_PODS, Plan};
use crate::runtime::error_chain;
use crate::session::context::Context;
use crate::session::context::Workloads;
use crate::session::error::Error;
use crate::session::status::Problem;
use crate::{k8s::workload, naming, session::pods};

/// Everything one apply needs to know about its session.
pub struct Request<'a> {
    pub ctx: &'a Context,
    pub session: &'a DebugSession,
    pub ns: &'a str,
    pub name: &'a str,
    /// The user name of who asked for the session, marked on what it changes.
    pub requester: &'a str,
    pub plan: &'a Plan,
    pub container: String,
    pub manager: String,
    /// When the session expires.
    pub expires_at: jiff::Timestamp,
    /// When the session expired according to its status before this reconcile.
    pub previous_expires_at: Option<jiff::Timestamp>,
    pub previous_target: Option<&'a ResolvedTarget>,
    /// When the debugger was first injected, per the status before this reconcile.
    pub started_at: Option<jiff::Timestamp>,
}

impl Request<'_> {
    fn target(&self) -> &Target {
        &self.session.spec.target
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    /// The debugger container of this session, as Sidecar and Copy add it.
    fn debugger(&self) -> Container {
        debugger::container(
            &self.session.spec.debugger,
            &self.container,
            &self.plan.image,
        )
    }

    /// The pods of the namespace that carry this session's debugger and belong to
    /// `owner`, by owner UID.
    async fn debug_pods(&self, owner: Owner<'_>) -> Result<Vec<DebugPod>, Error> {
        let cached = self.ctx.caches.debugged_pods.get();
        let carrying = carrying(&self.pods(), cached, self.ns).await?;
        let owners = match owner {
            Owner::Session => Owners::controller(&self.session.uid().ok_or(Error::NoUid)?),
            Owner::Target(target) => {
                let replica_sets = Some(&self.ctx.caches.workloads.replica_sets);
                owners::of(&self.ctx.client, replica_sets, self.ns, target, &carrying).await?
            }
        };
        Ok(pods::debug_pods(
            &carrying,
            &owners,
            self.ns,
            self.name,
            &self.container,
        ))
    }

    /// The target as a list of its live pods ([`target_pods`]), read through the watch
    /// caches.
    async fn target_pods(&self) -> Result<Option<(ResolvedTarget, Vec<Pod>)>, Error> {
        let replica_sets = Some(&self.ctx.caches.workloads.replica_sets);
        target_pods(&self.ctx.client, replica_sets, self.ns, self.target()).await
    }

    /// The outcome for a target that is not there.
    fn missing(&self) -> Outcome {
        missing(self.target(), self.ns, self.previous_target)
    }
}

/// Whose pods are a session's, by owner UID.
#[derive(Clone, Copy, Debug)]
enum Owner<'a> {
    /// The pods of the resolved target (Sidecar, Ephemeral).
    Target(&'a ResolvedTarget),
    /// The pods the session itself controls (its copy).
    Session,
}

/// What applying a mode found.
#[derive(Debug)]
pub enum Outcome {
    /// The debugger is in place (or on its way) in these pods.
    Applied {
        target: ResolvedTarget,
        pods: Vec<DebugPod>,
        note: Option<String>,
        /// What the debugger can read in the pods it joins.
        exposure: Vec<Exposure>,
        /// Why no pod can run the debugger, when the workload says so.
        blocked: Option<Problem>,
        /// Changes other field managers made to the template during the session.
        changes: Vec<TargetChange>,
    },
    /// The target (or a pod of it) is not there.
    Missing { message: String },
    /// The session cannot be carried out against this target.
    Refused(Invalid),
}

impl From<Invalid> for Outcome {
    fn from(invalid: Invalid) -> Self {
        Outcome::Refused(invalid)
    }
}

/// Puts the session's debugger in place in the mode its plan chose.
pub async fn apply(req: &Request<'_>) -> Result<Outcome, Error> {
    match req.plan.mode {
        Resolved::Sidecar => sidecar::apply(req).await,
        Resolved::Ephemeral => ephemeral::apply(req).await,
        Resolved::Copy => copy::apply(req).await,
    }
}

/// What the API server said to the dry run of the session's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DryRun {
    /// The change would be accepted.
    Accepted,
    /// Not tried, and why: the target is missing (the session waits for it), or the pods
    /// are only chosen when the operator reconciles.
    Skipped(String),
    /// The API server refused the change, in its own words.
    Rejected(String),
}

/// Sends the change the session's mode would make with `dryRun=All`, built by the same
/// code as [`apply`]: what the webhook admits is what the reconciler will do. For the
/// admission webhook, which sees the session as it is created (so with no status).
pub async fn dry_run(
    client: &Client,
    session: &DebugSession,
    plan: &Plan,
) -> Result<DryRun, Error> {
    let name = session.name_any();
    let trial = Trial {
        client,
        session,
        plan,
        ns: session.namespace().unwrap_or_default(),
        container: naming::container_name(&name),
        requester: session
            .spec
            .requester
            .as_ref()
            .map_or("", |r| r.username.as_str()),
        name,
    };
    match plan.mode {
        Resolved::Sidecar => sidecar::dry_run(&trial).await,
        Resolved::Copy => copy::dry_run(&trial).await,
        Resolved::Ephemeral => ephemeral::dry_run(&trial).await,
    }
}

/// What one dry run knows about its session: the names an apply would use.
struct Trial<'a> {
    client: &'a Client,
    session: &'a DebugSession,
    plan: &'a Plan,
    ns: String,
    name: String,
    container: String,
    requester: &'a str,
}

impl Trial<'_> {
    fn target(&self) -> &Target {
        &self.session.spec.target
    }

    /// The marks of what the session changes: its name and its requester.
    fn marks(&self) -> (&str, &str) {
        (&self.name, self.requester)
    }

    /// The debugger container of this session, as Sidecar and Copy add it.
    fn debugger(&self) -> Container {
        debugger::container(
            &self.session.spec.debugger,
            &self.container,
            &self.plan.image,
        )
    }

    /// The pod the session would debug or copy first, chosen as its apply chooses it; or
    /// why the dry run is skipped (no such pod yet: the session will wait for one).
    async fn first_pod(&self) -> Result<Pod, DryRun> {
        let target = self.target();
        match first_pod(
            self.client,
            &self.ns,
            &self.session.spec,
            &self.name,
            &self.container,
        )
        .await
        {
            Ok(Some(pod)) => Ok(pod),
            Ok(None) => Err(DryRun::Skipped(format!(
                "{} {} has no running pod yet",
                target.kind, target.name
            ))),
            Err(e) => Err(DryRun::Skipped(format!(
                "reading the pods of {} {}: {}",
                target.kind,
                target.name,
                error_chain(&e)
            ))),
        }
    }
}

/// The dry run's verdict on the API server's answer: a change it finds invalid (400,
/// 422) or conflicting (409) is refused in its words; any other failure did not judge
/// the change, so it is an error, made by `error`.
fn verdict(
    sent: Result<(), kube::Error>,
    error: impl FnOnce(kube::Error) -> Error,
) -> Result<DryRun, Error> {
    let Err(e) = sent else {
        return Ok(DryRun::Accepted);
    };
    match ApiError::of(&e) {
        ApiError::Refused {
            code: 400 | 422,
            message,
        }
        | ApiError::Conflict(message) => Ok(DryRun::Rejected(message)),
        _ => Err(error(e)),
    }
}

/// Why a session is torn down; decides whether `teardown.ephemeral: Recycle` may evict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The session ran its course: expired or deleted.
    Done,
    /// The session was refused: nothing is evicted for a session that was not allowed.
    Refused,
}

/// Removes whatever any mode of the session put in place; returns what remains and why.
///
/// Every mode is undone, whichever the session uses now: teardown needs no memory of what
/// was done, so it is complete after a crash or a change of mode. Each step is idempotent.
pub async fn teardown(
    client: &Client,
    cached: &Workloads,
    session: &DebugSession,
    ns: &str,
    ending: Ending,
    stopper: Option<&Stopper>,
) -> Result<Vec<String>, Error> {
    let name = session.name_any();
    let manager = naming::field_manager(&name);
    let container = naming::container_name(&name);
    // The spec's target, and every target status says the session ever changed.
    let mut workloads: Vec<(TargetKind, &str)> = Vec::new();
    let target = &session.spec.target;
    let touched = session.status.iter().flat_map(|s| &s.targets);
    for (kind, name) in std::iter::once((target.kind, target.name.as_str()))
        .chain(touched.map(|t| (t.kind, t.name.as_str())))
    {
        if kind.is_workload() && !workloads.contains(&(kind, name)) {
            workloads.push((kind, name));
        }
    }
    let mut leftovers = Vec::new();
    for (kind, name) in workloads {
        let seen = sidecar::teardown(client, cached, ns, kind, name, &manager).await?;
        if let Some(workload) = seen {
            let recycle = ending == Ending::Done
                && session.spec.teardown.sidecar == crate::crd::SidecarTeardown::Recycle;
            let left = sidecar_leftovers(client, cached, ns, &workload, &container, recycle);
            leftovers.extend(left.await?);
        }
    }
    if sidecar_only(session) {
        return Ok(leftovers);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    copy::teardown(&pods, &name, session.uid().as_deref()).await?;
    let recycle = ending == Ending::Done
        && session.spec.teardown.ephemeral == crate::crd::EphemeralTeardown::Recycle;
    let ephemeral = ephemeral::Teardown {
        session: &name,
        container: &container,
        manager: &manager,
        policy: session.spec.teardown.ephemeral,
        recycle,
        stopper,
    };
    let debugged = ephemeral::debugged(&pods, &container).await?;
    if debugged.is_empty() {
        return Ok(leftovers);
    }
    let owners = teardown_owners(client, cached, session, ns, &debugged).await?;
    leftovers
        .extend(ephemeral::teardown(&pods, owners::owned(debugged, &owners), &ephemeral).await?);
    Ok(leftovers)
}

/// The pods of `workload` that still run debugger `container` once its template is
/// restored, where the workload does not replace them by itself ([`sidecar::leftovers`]):
/// with `recycle`, evicted where their controller replaces them from the restored
/// template. Pods are listed only for such workloads.
async fn sidecar_leftovers(
    client: &Client,
    cached: &Workloads,
    ns: &str,
    workload: &workload::Workload,
    container: &str,
    recycle: bool,
) -> Result<Vec<String>, Error> {
    if workload.rollout == workload::Rollout::Automatic {
        return Ok(Vec::new());
    }
    let pods = workload_pods(client, Some(&cached.replica_sets), ns, workload).await?;
    if !recycle || workload.rollout != workload::Rollout::OnDelete {
        return Ok(sidecar::leftovers(workload, &pods, container));
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut lines = Vec::new();
    for pod in sidecar::carrying(&pods, container) {
        let name = pod.name_any();
        match api.evict(&name, &EvictParams::default()).await {
            Ok(_) => lines.push(format!(
                "pod {name} was evicted to drop the debugger {container}: {} {} replaces it from the restored template",
                workload.kind, workload.name
            )),
            Err(e) if ApiError::of(&e) == ApiError::NotFound => {}
            // A PodDisruptionBudget or the API server said no: the pod stays, and says so.
            Err(e) => {
                let why = match &e {
                    kube::Error::Api(status) => status.message.clone(),
                    other => other.to_string(),
                };
                lines.push(format!(
                    "pod {name} still runs the debugger {container}: evicting it was refused ({why})"
                ));
            }
        }
    }
    Ok(lines)
}

/// The owners of the pods whose ephemeral debugger `debugged` a session's teardown may
/// stop: those of every target its status resolved (with a UID), or, when it records
/// none (a crash between the first change and the first status), of its target as it
/// is now.
async fn teardown_owners(
    client: &Client,
    cached: &Workloads,
    session: &DebugSession,
    ns: &str,
    debugged: &[Pod],
) -> Result<Owners, Error> {
    let status = session.status.as_ref();
    let mut recorded: Vec<ResolvedTarget> = status
        .into_iter()
        .flat_map(|s| s.target.iter().chain(&s.targets))
        .filter(|t| t.uid.is_some())
        .cloned()
        .collect();
    if recorded.is_empty() {
        recorded.extend(resolve(client, cached, ns, &session.spec.target).await?);
    }
    let mut owners = Owners::default();
    for target in &recorded {
        let found = owners::of(client, Some(&cached.replica_sets), ns, target, debugged).await?;
        owners.extend(found);
    }
    Ok(owners)
}

/// `target` as it is now in namespace `ns`, with its UID; `None` when it is not there.
async fn resolve(
    client: &Client,
    cached: &Workloads,
    ns: &str,
    target: &Target,
) -> Result<Option<ResolvedTarget>, Error> {
    if target.kind == TargetKind::Pod {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pod = pods
            .get_opt(&target.name)
            .await
            .map_err(Error::pod("reading", &target.name))?;
        return Ok(pod.map(|p| resolved(TargetKind::Pod, &target.name, p.uid())));
    }
    let found = cached.read(client, ns, target.kind, &target.name).await?;
    Ok(found.map(|w| resolved(w.kind, &w.name, w.uid)))
}

/// True when the session can have changed nothing but workloads, so teardown need not
/// look for copies and ephemeral containers (two requests): its status records mode
/// Sidecar. That status is written only after the Sidecar apply, and a session whose
/// mode changes is torn down in full before its new mode is applied and recorded, so
/// no copy or ephemeral container of it can exist, even after a crash.
fn sidecar_only(session: &DebugSession) -> bool {
    session.status.as_ref().and_then(|s| s.mode) == Some(Mode::Sidecar)
}

/// The pods of `namespace` labelled as debugged (by any session, or by anyone who set
/// the label): from the watch cache of debugged pods once it is synced, else listed.
async fn carrying(
    pods: &Api<Pod>,
    cached: Option<&Store<Pod>>,
    namespace: &str,
) -> Result<Vec<Pod>, Error> {
    Ok(match cached {
        Some(store) => store
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .map(|p| Pod::clone(p))
            .collect(),
        None => {
            pods.list(&ListParams::default().labels(naming::DEBUGGED_LABEL))
                .await
                .map_err(Error::Pods)?
                .items
        }
    })
}

fn resolved(kind: TargetKind, name: &str, uid: Option<String>) -> ResolvedTarget {
    ResolvedTarget {
        kind,
        name: name.to_owned(),
        uid,
    }
}

/// The outcome for a `target` that is not in namespace `ns`; `previous` is the target as
/// status last saw it.
fn missing(target: &Target, ns: &str, previous: Option<&ResolvedTarget>) -> Outcome {
    let message = match previous {
        Some(t) if t.uid.is_some() => format!(
            "{} {} was deleted; the session waits for it to be created again",
            target.kind, target.name
        ),
        _ => format!(
            "{} {} not found in namespace {ns}",
            target.kind, target.name
        ),
    };
    Outcome::Missing { message }
}

/// The target as a list of live pods: the Pod itself, or the pods the workload owns by
/// owner UID ([`owners::of`], ReplicaSets read from `replica_sets` where it knows them).
/// A pod that only matches the workload's selector is not one of them.
async fn target_pods(
    client: &Client,
    replica_sets: Option<&Store<DynamicObject>>,
    ns: &str,
    target: &Target,
) -> Result<Option<(ResolvedTarget, Vec<Pod>)>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if target.kind == TargetKind::Pod {
        let pod = pods
            .get_opt(&target.name)
            .await
            .map_err(Error::pod("reading", &target.name))?;
        return Ok(pod.map(|p| (resolved(TargetKind::Pod, &target.name, p.uid()), vec![p])));
    }
    let Some(workload) = workload::fetch(client, ns, target.kind, &target.name).await? else {
        return Ok(None);
    };
    let resolved = resolved(target.kind, &workload.name, workload.uid.clone());
    let owned = workload_pods(client, replica_sets, ns, &workload).await?;
    Ok(Some((resolved, owned)))
}

/// The pods of `workload`, by owner UID ([`owners::of`]).
async fn workload_pods(
    client: &Client,
    replica_sets: Option<&Store<DynamicObject>>,
    ns: &str,
    workload: &workload::Workload,
) -> Result<Vec<Pod>, Error> {
    // Without a selector the workload owns no pods we can find; never list them all.
    let Some(selector) = &workload.selector else {
        return Ok(Vec::new());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let found = pods
        .list(&ListParams::default().labels_from(selector))
        .await
        .map_err(Error::Pods)?
        .items;
    let resolved = resolved(workload.kind, &workload.name, workload.uid.clone());
    let owners = owners::of(client, replica_sets, ns, &resolved, &found).await?;
    Ok(owners::owned(found, &owners))
}

/// The target's pod that session `session` (debugger `container`) would debug or copy
/// first, as [`target_pods`] and [`select`] choose it; `None` when the target or a running
/// pod of it is missing. For the dry run.
async fn first_pod(
    client: &Client,
    ns: &str,
    spec: &crate::crd::DebugSessionSpec,
    session: &str,
    container: &str,
) -> Result<Option<Pod>, Error> {
    let Some((_, pods)) = target_pods(client, None, ns, &spec.target).await? else {
        return Ok(None);
    };
    Ok(select(pods, spec.pods, session, container)
        .into_iter()
        .next())
}

/// The pods to debug: those already debugged by session `session` (whose debugger is
/// `container`) first, so the choice is stable across reconciles, then running pods by
/// name, up to what `selection` asks for.
fn select(pods: Vec<Pod>, selection: PodSelection, session: &str, container: &str) -> Vec<Pod> {
    let count = match selection {
        PodSelection::One => 1,
        PodSelection::All => MAX_PODS,
    };
    let annotation = naming::session_annotation(container);
    let mine = |p: &Pod| p.annotations().get(&annotation).map(String::as_str) == Some(session);
    let running = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let mut live: Vec<Pod> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    live.sort_by_key(|p| (!mine(p), p.name_any()));
    live.into_iter()
        .filter(|p| mine(p) || running(p))
        .take(count)
        .collect()
}

/// True when `manager` owns any field of the object, i.e. a session has something to undo.
fn owns_fields(managed: &[ManagedFieldsEntry], manager: &str) -> bool {
    managed.iter().any(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0.as_object().is_some_and(|o| !o.is_empty()))
    })
}

#[cfg(test)]
mod tests;
