//! The webhook over HTTPS: `/mutate` stamps and restores the requester, `/validate` refuses
//! changed specs, sessions the requester could not carry out by hand and changes the API
//! server would reject, and warns about what the debugger will see.
//!
//! The decisions ([`mutate`], [`validate`]) take their I/O through [`Io`], so they are
//! tested with a fake; [`KubeIo`] is the real one.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::{Client, Resource, ResourceExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::tls::ServingCert;
use super::{approval, immutable, requester, warnings};
use crate::access::{self, Check};
use crate::context::{Capabilities, Policy, error_chain};
use crate::crd::Resolved;
use crate::crd::{DebugPolicy, DebugSession, Phase, Requester};
use crate::modes::{self, copy, ephemeral, sidecar};
use crate::validate::{self, Invalid, Plan};
use crate::{debugger, naming, podsecurity, policy, workload};

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

/// The webhook's I/O.
pub trait Io: Send + Sync + 'static {
    /// Whether `requester` passes every check (SubjectAccessReviews).
    fn authorize(
        &self,
        requester: &Requester,
        checks: &[Check],
    ) -> impl Future<Output = Result<(), access::Error>> + Send;

    /// The pod spec of the session's target (a Pod's spec, a workload's template), or
    /// `None` if the target does not exist yet.
    fn target_pod_spec(
        &self,
        session: &DebugSession,
    ) -> impl Future<Output = Result<Option<PodSpec>, kube::Error>> + Send;

    /// What decides whether a session in `namespace` is allowed: the policies, the
    /// namespace's labels, and how many live sessions it has.
    fn surroundings(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<Surroundings, kube::Error>> + Send;

    /// The exact change the session would make, sent with `dryRun=All`.
    fn dry_run(
        &self,
        session: &DebugSession,
        plan: &Plan,
    ) -> impl Future<Output = Result<DryRun, kube::Error>> + Send;
}

/// What decides whether a session in a namespace is allowed, besides the session.
#[derive(Clone, Debug, Default)]
pub struct Surroundings {
    pub policies: Vec<Arc<DebugPolicy>>,
    /// The namespace's labels: they select policies and name its Pod Security level.
    pub labels: BTreeMap<String, String>,
    /// Sessions in the namespace not yet Expired, Ended or Failed (nor being deleted).
    pub live_sessions: usize,
}

/// What the validating webhook needs besides its I/O: the operator's own policy and what
/// the cluster can do, as the reconciler sees them.
pub struct Webhook<I> {
    pub io: I,
    pub policy: Policy,
    pub capabilities: Capabilities,
}

/// `/mutate`: on CREATE, `spec.requester` is the user who sent the request; on UPDATE, it
/// is what the stored object has. `spec.approval` is what the stored object has, unless
/// the update carries an approver's annotation that passes [`approval::judge`] and a
/// SubjectAccessReview: then it records their decision.
pub async fn mutate<I: Io>(
    webhook: &Webhook<I>,
    req: &AdmissionRequest<DebugSession>,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    let ops = match (&req.operation, &req.object, &req.old_object) {
        (Operation::Create, Some(new), _) => match approval::requested(new) {
            Err(message) => return response.deny(message),
            Ok(Some(_)) => {
                return response.deny(
                    "a session cannot be approved as it is created: its requester may not approve it; an approver annotates it once it is AwaitingApproval",
                );
            }
            Ok(None) => requester::stamp(&req.user_info).and_then(|mut ops| {
                ops.extend(approval::restore(None, new.spec.approval.as_ref())?);
                Ok(ops)
            }),
        },
        (Operation::Update, Some(new), Some(old)) => {
            let decided = match approval::requested(new) {
                Err(message) => return response.deny(message),
                Ok(None) => {
                    approval::restore(old.spec.approval.as_ref(), new.spec.approval.as_ref())
                }
                Ok(Some(request)) => match decide(webhook, req, old, &request).await {
                    Ok(ops) => ops,
                    Err(message) => return response.deny(message),
                },
            };
            requester::restore(&old.spec, &new.spec).and_then(|mut ops| {
                ops.extend(decided?);
                Ok(ops)
            })
        }
        _ => return response,
    };
    let ops = match ops {
        Ok(ops) if ops.is_empty() => return response,
        Ok(ops) => ops,
        Err(e) => return response.deny(format!("building the patch: {e}")),
    };
    match response.clone().with_patch(json_patch::Patch(ops)) {
        Ok(patched) => patched,
        Err(e) => response.deny(e),
    }
}

/// Checks the approver of `request` and returns the operations that record the decision,
/// or the refusal.
async fn decide<I: Io>(
    webhook: &Webhook<I>,
    req: &AdmissionRequest<DebugSession>,
    old: &DebugSession,
    request: &approval::Request,
) -> Result<Result<Vec<json_patch::PatchOperation>, serde_json::Error>, String> {
    let approver = requester::from_user_info(&req.user_info);
    let namespace = req.namespace.clone().unwrap_or_default();
    let check = approval::judge(request, old, &approver.username, &namespace)?;
    match webhook.io.authorize(&approver, &[check]).await {
        Ok(()) => {}
        Err(access::Error::Denied(denied)) => return Err(denied.to_string()),
        Err(e) => return Err(error_chain(&e)),
    }
    Ok(approval::record(
        request,
        &approver.username,
        jiff::Timestamp::now(),
    ))
}

/// The pure half of validating a CREATE: the session's plan and the permissions its
/// requester needs, or the refusal message.
pub fn plan_create(
    session: &DebugSession,
    namespace: &str,
    policy: &Policy,
    capabilities: Capabilities,
) -> Result<(Plan, Requester, Vec<Check>), String> {
    let Some(requester) = session.spec.requester.clone() else {
        return Err(
            "spec.requester is not set: shellcar's mutating webhook did not run; check its MutatingWebhookConfiguration"
                .to_owned(),
        );
    };
    let plan = validate::spec(&session.spec, policy, capabilities).map_err(|e| e.to_string())?;
    let checks = access::checks(&session.spec, plan.mode, namespace);
    Ok((plan, requester, checks))
}

/// `/validate`. UPDATE: only `spec.ttl` may change (no access checks, so that the
/// operator's own updates, such as removing its finalizer, always pass). CREATE: the
/// session must be valid, its requester must hold every permission it stands in for, and
/// the API server must accept its change in a dry run; exposure warnings are added.
pub async fn validate<I: Io>(
    webhook: &Webhook<I>,
    req: &AdmissionRequest<DebugSession>,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    match (&req.operation, &req.object, &req.old_object) {
        (Operation::Update, Some(new), Some(old)) => {
            if let Err(changed) = immutable::check(&old.spec, &new.spec) {
                return response.deny(changed);
            }
            match approval::ttl_change(&old.spec, &new.spec) {
                Ok(()) => response,
                Err(refused) => response.deny(refused),
            }
        }
        (Operation::Create, Some(session), _) => validate_create(webhook, req, session).await,
        _ => response,
    }
}

async fn validate_create<I: Io>(
    webhook: &Webhook<I>,
    req: &AdmissionRequest<DebugSession>,
    session: &DebugSession,
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(req);
    let namespace = req.namespace.clone().unwrap_or_default();
    let (plan, requester, checks) =
        match plan_create(session, &namespace, &webhook.policy, webhook.capabilities) {
            Ok(planned) => planned,
            Err(message) => return response.deny(message),
        };
    let around = match webhook.io.surroundings(&namespace).await {
        Ok(around) => around,
        Err(e) => {
            return response.deny(format!(
                "reading the DebugPolicies and namespace {namespace}: {}",
                error_chain(&e)
            ));
        }
    };
    if let Err(refusal) = govern(session, &plan, &namespace, &around, &webhook.policy) {
        return response.deny(refusal.to_string());
    }
    match webhook.io.authorize(&requester, &checks).await {
        Ok(()) => {}
        Err(access::Error::Denied(denied)) => return response.deny(denied),
        Err(e) => return response.deny(error_chain(&e)),
    }
    match webhook.io.dry_run(session, &plan).await {
        Ok(DryRun::Rejected(message)) => {
            return response.deny(format!(
                "the API server refuses the change this session makes to {} {}: {message}",
                session.spec.target.kind, session.spec.target.name
            ));
        }
        Ok(DryRun::Accepted | DryRun::Skipped(_)) => {}
        Err(e) => {
            return response.deny(format!(
                "dry run of the session's change failed: {}",
                error_chain(&e)
            ));
        }
    }
    // Warnings are best effort: not being able to read the target refuses nothing.
    match webhook.io.target_pod_spec(session).await {
        Ok(Some(spec)) => {
            let found = warnings::exposure(&spec);
            if !found.is_empty() {
                response.warnings = Some(found);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "reading the target for admission warnings"),
    }
    response
}

/// The refusal if no DebugPolicy (nor the built-in default) admits the session, or the
/// namespace's Pod Security level forbids its profile: the reconciler's own rules, with the
/// sessions limit, which applies only here, at creation.
fn govern(
    session: &DebugSession,
    plan: &Plan,
    namespace: &str,
    around: &Surroundings,
    defaults: &Policy,
) -> Result<(), Invalid> {
    let ask = policy::Ask::of(
        &session.spec,
        plan.mode,
        &plan.image,
        plan.ttl,
        Some(around.live_sessions),
    );
    policy::admit(&around.policies, namespace, &around.labels, &ask, defaults).map_err(|r| {
        Invalid::PolicyDenied {
            message: r.to_string(),
        }
    })?;
    podsecurity::check(namespace, &around.labels, session.spec.debugger.profile).map_err(|f| {
        Invalid::PodSecurity {
            message: f.to_string(),
        }
    })
}

/// What to answer a review whose object is not a DebugSession as the operator reads it.
#[derive(Clone, Copy)]
enum Unreadable {
    /// Allow it unchanged: the mutating webhook runs before schema validation, which
    /// refuses such an object with the API server's own message.
    Allow,
    /// Refuse it: nothing the operator cannot read gets past validation.
    Deny,
}

/// The review in `body`, or the response to give instead: one that carries the request's
/// uid whenever the body has one, as the API server requires.
fn parse(
    body: &[u8],
    unreadable: Unreadable,
) -> Result<AdmissionRequest<DebugSession>, Box<AdmissionResponse>> {
    let generic: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| Box::new(AdmissionResponse::invalid(e.to_string())))?;
    let generic: AdmissionRequest<DynamicObject> = generic
        .try_into()
        .map_err(|e| Box::new(AdmissionResponse::invalid(e)))?;
    let typed = serde_json::from_slice::<AdmissionReview<DebugSession>>(body)
        .map_err(|e| e.to_string())
        .and_then(|review| {
            TryInto::<AdmissionRequest<DebugSession>>::try_into(review).map_err(|e| e.to_string())
        });
    typed.map_err(|e| {
        let response = AdmissionResponse::from(&generic);
        Box::new(match unreadable {
            Unreadable::Allow => response,
            Unreadable::Deny => response.deny(format!("not a valid DebugSession: {e}")),
        })
    })
}

/// The review as the API server reads it. kube serializes `response.patch` (bytes) as a
/// JSON array of numbers (kube-rs issue #1781); the API documents a base64 string, which is
/// what Go's `[]byte` decoding expects, so the patch is re-encoded as one.
fn body(review: &AdmissionReview<DynamicObject>) -> Vec<u8> {
    let mut value = match serde_json::to_value(review) {
        Ok(value) => value,
        Err(_) => return Vec::new(),
    };
    if let Some(patch) = value.pointer_mut("/response/patch")
        && let Ok(bytes) = serde_json::from_value::<Vec<u8>>(patch.clone())
        && let Ok(encoded) = serde_json::to_value(k8s_openapi::ByteString(bytes))
    {
        *patch = encoded;
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

fn reply(review: AdmissionReview<DynamicObject>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body(&review))
}

async fn mutate_handler<I: Io>(
    State(webhook): State<Arc<Webhook<I>>>,
    body: Bytes,
) -> impl IntoResponse {
    let response = match parse(&body, Unreadable::Allow) {
        Ok(req) => mutate(&webhook, &req).await,
        Err(invalid) => *invalid,
    };
    reply(response.into_review())
}

async fn validate_handler<I: Io>(
    State(webhook): State<Arc<Webhook<I>>>,
    body: Bytes,
) -> impl IntoResponse {
    let response = match parse(&body, Unreadable::Deny) {
        Ok(req) => validate(&webhook, &req).await,
        Err(invalid) => *invalid,
    };
    reply(response.into_review())
}

/// The webhook's routes: `POST /mutate` and `POST /validate`.
pub fn router<I: Io>(webhook: Arc<Webhook<I>>) -> Router {
    Router::new()
        .route("/mutate", post(mutate_handler::<I>))
        .route("/validate", post(validate_handler::<I>))
        .with_state(webhook)
}

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the webhook certificate")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("building the TLS configuration")]
    Rustls(#[from] rustls::Error),
}

/// A rustls server configuration serving `cert`, with the ring provider (as kube uses).
pub fn rustls_config(cert: &ServingCert) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain =
        CertificateDer::pem_slice_iter(cert.cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(cert.key.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the webhook on `addr` over HTTPS until the process ends. Renewing the
/// certificate is `tls.reload_from_config(rustls_config(&new)?)` on the same `tls`.
pub async fn serve<I: Io>(
    addr: SocketAddr,
    tls: RustlsConfig,
    webhook: Arc<Webhook<I>>,
) -> std::io::Result<()> {
    tracing::info!(%addr, "serving the admission webhook");
    axum_server::bind_rustls(addr, tls)
        .serve(router(webhook).into_make_service())
        .await
}

/// The webhook's I/O against the API server.
pub struct KubeIo {
    pub client: Client,
}

/// How a refused write reads, or `None` when the failure is not the API server judging
/// the change (then it is an error, not a refusal).
fn rejection(error: &kube::Error) -> Option<String> {
    match error {
        kube::Error::Api(status) if matches!(status.code, 400 | 409 | 422) => {
            Some(status.message.clone())
        }
        _ => None,
    }
}

fn outcome(result: Result<(), kube::Error>) -> Result<DryRun, kube::Error> {
    match result {
        Ok(()) => Ok(DryRun::Accepted),
        Err(e) => match rejection(&e) {
            Some(message) => Ok(DryRun::Rejected(message)),
            None => Err(e),
        },
    }
}

impl KubeIo {
    fn namespace(session: &DebugSession) -> String {
        session.namespace().unwrap_or_default()
    }

    /// The pod the session would debug or copy first, chosen as the operator chooses it;
    /// or why the dry run is skipped (no such pod yet: the session will wait for one).
    async fn first_pod(&self, session: &DebugSession) -> Result<Pod, DryRun> {
        let ns = Self::namespace(session);
        let name = session.name_any();
        let container = naming::container_name(&name);
        let target = &session.spec.target;
        match modes::first_pod(&self.client, &ns, &session.spec, &name, &container).await {
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

    fn requester(session: &DebugSession) -> &str {
        session
            .spec
            .requester
            .as_ref()
            .map_or("", |r| r.username.as_str())
    }

    async fn dry_run_sidecar(
        &self,
        session: &DebugSession,
        plan: &Plan,
    ) -> Result<DryRun, kube::Error> {
        let ns = Self::namespace(session);
        let target = &session.spec.target;
        let name = session.name_any();
        let fetched = workload::fetch(&self.client, &ns, target.kind, &target.name).await;
        let found = match fetched {
            Ok(found) => found,
            Err(workload::Error::Kube { source, .. }) => return Err(source),
            Err(e @ workload::Error::NoTemplate { .. }) => {
                return Ok(DryRun::Rejected(e.to_string()));
            }
        };
        let (Some(found), Some(api)) = (found, workload::api(&self.client, &ns, target.kind))
        else {
            return Ok(DryRun::Skipped(format!(
                "{} {} not found",
                target.kind, target.name
            )));
        };
        let debugger = debugger::container(
            &session.spec.debugger,
            &naming::container_name(&name),
            &plan.image,
        );
        let claim = sidecar::claims_share_process_namespace(
            found
                .template
                .spec
                .as_ref()
                .and_then(|s| s.share_process_namespace),
            &found.managed_fields,
        );
        let requester = Self::requester(session);
        let intent = sidecar::sidecar_intent(
            target.kind,
            &found.name,
            (&name, requester),
            &debugger,
            claim,
        );
        let params = PatchParams::apply(&naming::field_manager(&name)).dry_run();
        outcome(
            api.patch(&found.name, &params, &kube::api::Patch::Apply(&intent))
                .await
                .map(|_| ()),
        )
    }

    async fn dry_run_copy(
        &self,
        session: &DebugSession,
        plan: &Plan,
    ) -> Result<DryRun, kube::Error> {
        let name = session.name_any();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &Self::namespace(session));
        let source = match self.first_pod(session).await {
            Ok(source) => source,
            Err(skipped) => return Ok(skipped),
        };
        let container = naming::container_name(&name);
        let debugger = debugger::container(&session.spec.debugger, &container, &plan.image);
        // The validating webhook sees the uid the API server gave the session.
        let mut owner = session
            .controller_owner_ref(&())
            .unwrap_or_else(|| OwnerReference {
                api_version: "debug.shellcar.dev/v1alpha1".to_owned(),
                kind: "DebugSession".to_owned(),
                name: name.clone(),
                uid: "00000000-0000-0000-0000-000000000000".to_owned(),
                controller: Some(true),
                block_owner_deletion: None,
            });
        if owner.uid.is_empty() {
            owner.uid = "00000000-0000-0000-0000-000000000000".to_owned();
        }
        owner.block_owner_deletion = None;
        let marks = (name.as_str(), Self::requester(session));
        let pod = copy::build(&source, marks, &naming::copy_name(&name), &debugger, owner);
        let params = PostParams {
            dry_run: true,
            ..Default::default()
        };
        outcome(pods.create(&params, &pod).await.map(|_| ()))
    }

    async fn dry_run_ephemeral(
        &self,
        session: &DebugSession,
        plan: &Plan,
    ) -> Result<DryRun, kube::Error> {
        let target = &session.spec.target;
        let name = session.name_any();
        let pod = match self.first_pod(session).await {
            Ok(pod) => pod,
            Err(skipped) => return Ok(skipped),
        };
        let base = debugger::container(
            &session.spec.debugger,
            &naming::container_name(&name),
            &plan.image,
        );
        let deadline = jiff::Timestamp::now().as_second()
            + i64::try_from(plan.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let wanted = target.container.as_deref();
        let container = match ephemeral::for_pod(&base, &pod, wanted, deadline) {
            Ok(container) => container,
            Err(invalid) => return Ok(DryRun::Rejected(invalid.to_string())),
        };
        outcome(
            ephemeral::write(&self.client, &pod, &container, true)
                .await
                .map(|_| ()),
        )
    }
}

impl Io for KubeIo {
    async fn authorize(
        &self,
        requester: &Requester,
        checks: &[Check],
    ) -> Result<(), access::Error> {
        access::authorize(&self.client, requester, checks).await
    }

    async fn target_pod_spec(
        &self,
        session: &DebugSession,
    ) -> Result<Option<PodSpec>, kube::Error> {
        let target = &session.spec.target;
        let ns = Self::namespace(session);
        match workload::pod_spec(&self.client, &ns, target.kind, &target.name).await {
            Ok(spec) => Ok(spec),
            Err(workload::Error::Kube { source, .. }) => Err(source),
            Err(workload::Error::NoTemplate { .. }) => Ok(None),
        }
    }

    async fn surroundings(&self, namespace: &str) -> Result<Surroundings, kube::Error> {
        let policies = Api::<DebugPolicy>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let ns = Api::<Namespace>::all(self.client.clone())
            .get(namespace)
            .await?;
        let sessions = Api::<DebugSession>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await?;
        let live_sessions = sessions
            .items
            .iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .filter(|s| {
                !matches!(
                    s.status.as_ref().and_then(|st| st.phase),
                    Some(Phase::Expired | Phase::Ended | Phase::Failed)
                )
            })
            .count();
        Ok(Surroundings {
            policies: policies.items.into_iter().map(Arc::new).collect(),
            labels: ns.labels().clone(),
            live_sessions,
        })
    }

    async fn dry_run(&self, session: &DebugSession, plan: &Plan) -> Result<DryRun, kube::Error> {
        match plan.mode {
            Resolved::Sidecar => self.dry_run_sidecar(session, plan).await,
            Resolved::Copy => self.dry_run_copy(session, plan).await,
            Resolved::Ephemeral => self.dry_run_ephemeral(session, plan).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::sync::Mutex;
    use std::time::Duration;

    /// Canned answers, and a record of what was asked.
    #[derive(Default)]
    struct FakeIo {
        denied: Option<&'static str>,
        dry_run: Option<DryRun>,
        pod_spec: Option<PodSpec>,
        around: Surroundings,
        asked: Mutex<Vec<String>>,
    }

    impl Io for FakeIo {
        async fn authorize(
            &self,
            requester: &Requester,
            checks: &[Check],
        ) -> Result<(), access::Error> {
            let mut asked = self.asked.lock().unwrap();
            let answers = checks
                .iter()
                .map(|c| {
                    asked.push(format!("{} {}", c.permission.verb, c.permission));
                    access::Answer {
                        allowed: Some(c.permission.resource) != self.denied,
                        reason: None,
                    }
                })
                .collect();
            match access::first_denied(requester, checks, answers) {
                Some(d) => Err(access::Error::Denied(Box::new(d))),
                None => Ok(()),
            }
        }

        async fn target_pod_spec(&self, _: &DebugSession) -> Result<Option<PodSpec>, kube::Error> {
            Ok(self.pod_spec.clone())
        }

        async fn dry_run(&self, _: &DebugSession, _: &Plan) -> Result<DryRun, kube::Error> {
            Ok(self.dry_run.clone().unwrap_or(DryRun::Accepted))
        }

        async fn surroundings(&self, _: &str) -> Result<Surroundings, kube::Error> {
            Ok(self.around.clone())
        }
    }

    fn webhook(io: FakeIo) -> Webhook<FakeIo> {
        Webhook {
            io,
            policy: Policy {
                default_image: "busybox".to_owned(),
                max_ttl: Duration::from_secs(24 * 3600),
                allowed_images: vec![],
                start_deadline: Duration::from_secs(300),
            },
            capabilities: Capabilities {
                ephemeral_containers: true,
            },
        }
    }

    fn review(
        operation: &str,
        object: Value,
        old: Option<Value>,
    ) -> AdmissionRequest<DebugSession> {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "r-1",
                "kind": {"group": "debug.shellcar.dev", "version": "v1alpha1", "kind": "DebugSession"},
                "resource": {"group": "debug.shellcar.dev", "version": "v1alpha1", "resource": "debugsessions"},
                "name": "dbg",
                "namespace": "shop",
                "operation": operation,
                "userInfo": {"username": "dev", "uid": "u-1", "groups": ["devs", "system:authenticated"]},
                "object": object,
                "oldObject": old,
                "dryRun": false,
            }
        });
        parse(&serde_json::to_vec(&body).unwrap(), Unreadable::Deny).unwrap()
    }

    fn session(spec: &str) -> Value {
        json!({
            "apiVersion": "debug.shellcar.dev/v1alpha1",
            "kind": "DebugSession",
            "metadata": {"name": "dbg", "namespace": "shop", "uid": "s-1"},
            "spec": serde_yaml::from_str::<Value>(spec).unwrap(),
        })
    }

    /// The response as the handler sends it.
    fn as_json(response: AdmissionResponse) -> Value {
        let sent: Value = serde_json::from_slice(&body(&response.into_review())).unwrap();
        assert_eq!(sent["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(sent["kind"], "AdmissionReview");
        sent["response"].clone()
    }

    /// The JSON Patch in a response, which is sent base64-encoded.
    fn patch_of(response: &Value) -> Value {
        let bytes: k8s_openapi::ByteString =
            serde_json::from_value(response["patch"].clone()).unwrap();
        serde_json::from_slice(&bytes.0).unwrap()
    }

    #[tokio::test]
    async fn mutate_stamps_on_create_and_restores_on_update() {
        let webhook = webhook(FakeIo::default());
        let created = as_json(
            mutate(
                &webhook,
                &review(
                    "CREATE",
                    session(
                        "{target: {kind: Deployment, name: app}, requester: {username: admin}}",
                    ),
                    None,
                ),
            )
            .await,
        );
        assert_eq!(created["allowed"], true);
        assert_eq!(created["patchType"], "JSONPatch");
        assert_eq!(
            patch_of(&created),
            json!([{"op": "add", "path": "/spec/requester", "value": {
                "username": "dev", "uid": "u-1", "groups": ["devs", "system:authenticated"]
            }}])
        );
        let stored = session("{target: {kind: Deployment, name: app}, requester: {username: dev}}");
        let updated = as_json(
            mutate(
                &webhook,
                &review(
                    "UPDATE",
                    session("{target: {kind: Deployment, name: app}, ttl: 2h}"),
                    Some(stored.clone()),
                ),
            )
            .await,
        );
        assert_eq!(
            patch_of(&updated),
            json!([{"op": "add", "path": "/spec/requester", "value": {"username": "dev"}}])
        );
        let unchanged =
            as_json(mutate(&webhook, &review("UPDATE", stored.clone(), Some(stored))).await);
        assert!(unchanged.get("patch").is_none());
        assert_eq!(unchanged["uid"], "r-1");
    }

    const STAMPED: &str = "{target: {kind: Deployment, name: app}, requester: {username: dev, groups: [devs]}, debugger: {env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}]}}";

    #[tokio::test]
    async fn a_permitted_create_is_allowed_with_warnings() {
        let io = FakeIo {
            pod_spec: Some(
                serde_yaml::from_str("{automountServiceAccountToken: false, containers: [{name: app, env: [{name: K, valueFrom: {secretKeyRef: {name: s, key: k}}}]}]}")
                    .unwrap(),
            ),
            ..Default::default()
        };
        let webhook = webhook(io);
        let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(
            response["warnings"],
            json!([
                "the debugger shares the process namespace and can read env K of container app (from Secret s)"
            ])
        );
        assert_eq!(
            *webhook.io.asked.lock().unwrap(),
            ["patch deployments.apps \"app\"", "get secrets \"db\""]
        );
    }

    #[tokio::test]
    async fn a_create_the_requester_may_not_make_is_denied_naming_the_permission() {
        let webhook = webhook(FakeIo {
            denied: Some("secrets"),
            ..Default::default()
        });
        let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
        assert_eq!(response["allowed"], false);
        assert_eq!(
            response["status"]["message"],
            r#"user "dev" may not get secrets "db" in namespace "shop" (needed by debugger.env PW)"#
        );
    }

    #[tokio::test]
    async fn a_create_without_requester_or_with_a_bad_spec_is_denied() {
        let webhook = webhook(FakeIo::default());
        let none = as_json(
            validate(
                &webhook,
                &review(
                    "CREATE",
                    session("{target: {kind: Deployment, name: app}}"),
                    None,
                ),
            )
            .await,
        );
        assert_eq!(none["allowed"], false);
        assert!(
            none["status"]["message"]
                .as_str()
                .unwrap()
                .contains("mutating webhook")
        );
        let long = as_json(
            validate(
                &webhook,
                &review(
                    "CREATE",
                    session("{target: {kind: Deployment, name: app}, ttl: 48h, requester: {username: dev}}"),
                    None,
                ),
            )
            .await,
        );
        assert_eq!(long["allowed"], false);
        assert!(
            webhook.io.asked.lock().unwrap().is_empty(),
            "refused before asking"
        );
    }

    #[tokio::test]
    async fn a_dry_run_rejection_is_the_api_servers_message() {
        let webhook = webhook(FakeIo {
            dry_run: Some(DryRun::Rejected(
                "Deployment.apps \"app\" is invalid: spec.template.spec.containers[1].env[0].name: Invalid value: \"1x\"".to_owned(),
            )),
            ..Default::default()
        });
        let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
        assert_eq!(response["allowed"], false);
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.starts_with("the API server refuses the change this session makes to Deployment app: Deployment.apps \"app\" is invalid"), "{message}");
    }

    #[tokio::test]
    async fn an_update_may_change_only_the_ttl_and_asks_nothing() {
        let webhook = webhook(FakeIo {
            denied: Some("deployments"),
            ..Default::default()
        });
        let extended = as_json(
            validate(
                &webhook,
                &review(
                    "UPDATE",
                    session(&STAMPED.replace("requester", "ttl: 3h, requester")),
                    Some(session(STAMPED)),
                ),
            )
            .await,
        );
        assert_eq!(extended["allowed"], true, "{extended}");
        let moved = as_json(
            validate(
                &webhook,
                &review(
                    "UPDATE",
                    session(&STAMPED.replace("name: app", "name: other")),
                    Some(session(STAMPED)),
                ),
            )
            .await,
        );
        assert_eq!(moved["allowed"], false);
        assert_eq!(
            moved["status"]["message"],
            "spec.target.name is immutable after creation; only spec.ttl may change: create a new DebugSession instead"
        );
        assert!(webhook.io.asked.lock().unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_review_is_answered_as_invalid() {
        let response = match parse(b"{}", Unreadable::Allow) {
            Ok(_) => panic!("parsed"),
            Err(r) => as_json(*r),
        };
        assert_eq!(response["allowed"], false);
    }

    #[test]
    fn an_object_the_schema_will_refuse_keeps_the_request_uid() {
        let mut cron = session("{target: {kind: Deployment, name: web}}");
        cron["spec"]["target"]["kind"] = json!("CronJob");
        let body = serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0f1e", "kind": {"group": "debug.shellcar.dev", "version": "v1alpha1", "kind": "DebugSession"},
                "resource": {"group": "debug.shellcar.dev", "version": "v1alpha1", "resource": "debugsessions"},
                "operation": "CREATE", "userInfo": {"username": "dev"}, "object": cron,
            }
        }))
        .unwrap();
        let allowed = as_json(*parse(&body, Unreadable::Allow).unwrap_err());
        assert_eq!(
            (&allowed["uid"], &allowed["allowed"]),
            (&json!("0f1e"), &json!(true))
        );
        let denied = as_json(*parse(&body, Unreadable::Deny).unwrap_err());
        assert_eq!(
            (&denied["uid"], &denied["allowed"]),
            (&json!("0f1e"), &json!(false))
        );
    }

    #[test]
    fn the_tls_configuration_serves_the_generated_certificate() {
        let cert = super::super::tls::generate(
            &super::super::tls::dns_names("shellcar-webhook", "shellcar-system"),
            std::time::SystemTime::now(),
        )
        .unwrap();
        let config = rustls_config(&cert).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }

    /// A session of requester `dev` in phase `phase`, with `annotations`.
    fn stored_in(phase: &str, annotations: Value) -> Value {
        let mut s = session("{target: {kind: Deployment, name: app}, requester: {username: jane}}");
        s["metadata"]["annotations"] = annotations;
        s["status"] = json!({"phase": phase});
        s
    }

    #[tokio::test]
    async fn an_approval_is_recorded_only_for_someone_else_with_the_verb() {
        let annotated = json!({"debug.shellcar.dev/approve": "incident 42"});
        // The reviewing user is "dev"; the requester is "jane".
        let approving = webhook(FakeIo::default());
        let response = as_json(
            mutate(
                &approving,
                &review(
                    "UPDATE",
                    stored_in("AwaitingApproval", annotated.clone()),
                    Some(stored_in("AwaitingApproval", json!({}))),
                ),
            )
            .await,
        );
        assert_eq!(response["allowed"], true, "{response}");
        let ops = patch_of(&response);
        assert_eq!(ops[0]["path"], "/spec/approval");
        assert_eq!(ops[0]["value"]["approver"], "dev");
        assert_eq!(ops[0]["value"]["decision"], "Approved");
        assert_eq!(ops[0]["value"]["reason"], "incident 42");
        assert_eq!(
            ops[1],
            json!({"op": "remove", "path": "/metadata/annotations/debug.shellcar.dev~1approve"})
        );
        assert_eq!(
            *approving.io.asked.lock().unwrap(),
            ["approve debugsessions.debug.shellcar.dev \"dbg\""]
        );

        let without_verb = webhook(FakeIo {
            denied: Some("debugsessions"),
            ..Default::default()
        });
        let response = as_json(
            mutate(
                &without_verb,
                &review(
                    "UPDATE",
                    stored_in("AwaitingApproval", annotated.clone()),
                    Some(stored_in("AwaitingApproval", json!({}))),
                ),
            )
            .await,
        );
        assert_eq!(response["allowed"], false);
        assert!(
            response["status"]["message"].as_str().unwrap().starts_with(
                r#"user "dev" may not approve debugsessions.debug.shellcar.dev "dbg""#
            ),
            "{response}"
        );

        // Created with the annotation: the requester would approve their own session.
        let mut created = session("{target: {kind: Deployment, name: app}}");
        created["metadata"]["annotations"] = annotated;
        let response = as_json(mutate(&approving, &review("CREATE", created, None)).await);
        assert_eq!(response["allowed"], false);
    }

    #[tokio::test]
    async fn an_approval_written_by_hand_is_dropped() {
        let webhook = webhook(FakeIo::default());
        let mut forged = session("{target: {kind: Deployment, name: app}}");
        forged["spec"]["approval"] =
            json!({"decision": "Approved", "approver": "boss", "time": "2026-11-24T10:00:00Z"});
        let response = as_json(mutate(&webhook, &review("CREATE", forged.clone(), None)).await);
        let ops = patch_of(&response);
        assert_eq!(ops[1], json!({"op": "remove", "path": "/spec/approval"}));
        let stored = stored_in("AwaitingApproval", json!({}));
        let mut update = stored.clone();
        update["spec"]["approval"] = forged["spec"]["approval"].clone();
        let response = as_json(mutate(&webhook, &review("UPDATE", update, Some(stored))).await);
        assert_eq!(
            patch_of(&response),
            json!([{"op": "remove", "path": "/spec/approval"}])
        );
    }

    #[tokio::test]
    async fn a_create_no_policy_allows_is_denied_with_the_rule_and_policy() {
        let policy: DebugPolicy = serde_json::from_value(json!({
            "apiVersion": "debug.shellcar.dev/v1alpha1",
            "kind": "DebugPolicy",
            "metadata": {"name": "prod"},
            "spec": {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "maxSessionsPerNamespace": 1},
        }))
        .unwrap();
        let labels: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
        let webhook = webhook(FakeIo {
            around: Surroundings {
                policies: vec![Arc::new(policy)],
                labels: labels.clone(),
                live_sessions: 0,
            },
            ..Default::default()
        });
        let sysadmin = "{target: {kind: Deployment, name: app}, requester: {username: dev}, debugger: {profile: SysAdmin}}";
        let response =
            as_json(validate(&webhook, &review("CREATE", session(sysadmin), None)).await);
        assert_eq!(response["allowed"], false);
        assert!(
            response["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with("no DebugPolicy allows this session: profile SysAdmin is not allowed by policies [prod]"),
            "{response}"
        );
        // Nothing was asked of the API server for a session no policy allows.
        assert!(webhook.io.asked.lock().unwrap().is_empty());

        let full = webhook_with(Surroundings {
            policies: webhook.io.around.policies.clone(),
            labels,
            live_sessions: 1,
        });
        let response = as_json(validate(&full, &review("CREATE", session(STAMPED), None)).await);
        assert!(
            response["status"]["message"]
                .as_str()
                .unwrap()
                .contains("the namespace already has 1 live sessions"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn a_create_pod_security_forbids_is_denied_naming_the_level() {
        let webhook = webhook_with(Surroundings {
            labels: [(podsecurity::ENFORCE_LABEL.to_owned(), "baseline".to_owned())].into(),
            ..Default::default()
        });
        let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
        assert_eq!(response["allowed"], false);
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.contains("\"baseline\""), "{message}");
        assert!(
            message.contains("profiles that fit: Baseline, Restricted"),
            "{message}"
        );
    }

    fn webhook_with(around: Surroundings) -> Webhook<FakeIo> {
        webhook(FakeIo {
            around,
            ..Default::default()
        })
    }
}
