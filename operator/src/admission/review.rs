//! The webhook's answers: `/mutate` stamps and restores the requester and records an
//! approver's decision; `/validate` refuses changed specs, sessions in a namespace the
//! operator does not watch, sessions the rules refuse (the reconciler's own [`govern`],
//! which also guards the protected namespaces), sessions the requester could not carry out by hand and
//! changes the API server would reject (the mode's own dry run), and warns about what the
//! debugger will see.
//!
//! The decisions ([`mutate`], [`validate()`]) take their I/O through [`Io`], so they are
//! tested with a fake; [`super::io::KubeIo`] is the real one. [`super::http`] serves them.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

use super::io::Io;
use super::{approval, immutable, requester, stamp, warnings};
use crate::crd::{DebugSession, Requester};
use crate::k8s::access;
use crate::k8s::capabilities::Capabilities;
use crate::rules::Policy;
use crate::rules::access as access_rules;
use crate::rules::govern::govern;
use crate::rules::stamp::Key;
use crate::rules::validate::{self, Plan};
use crate::runtime::error_chain;
use crate::session::modes::DryRun;

/// What the validating webhook needs besides its I/O: the operator's own policy and what
/// the cluster can do, as the reconciler sees them.
pub struct Webhook<I> {
    /// How the webhook asks the API server.
    pub io: I,
    /// The operator's flags, as the reconciler reads them.
    pub policy: Policy,
    /// What the cluster serves (ephemeral containers), which decides `mode: Auto`.
    pub capabilities: Capabilities,
    /// The key that seals what `/mutate` records ([`stamp`]).
    pub stamp: Key,
}

/// `/mutate`: on CREATE, `spec.requester` is the user who sent the request; on UPDATE, it
/// is what the stored object has. `spec.approval` is what the stored object has, unless
/// the update carries an approver's annotation that passes [`approval::judge`] and a
/// SubjectAccessReview: then it records their decision. Both are then sealed in the
/// admission stamp ([`stamp::ops`]).
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
    let mut ops = match ops {
        Ok(ops) => ops,
        Err(e) => return response.deny(format!("building the patch: {e}")),
    };
    // Then the stamp seals the requester and approval as they now stand.
    if let Some(object) = &req.object {
        let namespace = req.namespace.as_deref().unwrap_or_default();
        match stamp::ops(
            &webhook.stamp,
            namespace,
            req.old_object.as_ref(),
            object,
            &ops,
        ) {
            Ok(stamped) => ops.extend(stamped),
            Err(e) => return response.deny(format!("stamping the session: {}", error_chain(&e))),
        }
    }
    if ops.is_empty() {
        return response;
    }
    match response.clone().with_patch(json_patch::Patch(ops)) {
        Ok(patched) => patched,
        Err(e) => response.deny(e),
    }
}

/// Checks the approver of `request` against the stored session `old` and the policy that
/// holds it for approval (read afresh), and returns the operations that record the
/// decision, or the refusal.
async fn decide<I: Io>(
    webhook: &Webhook<I>,
    req: &AdmissionRequest<DebugSession>,
    old: &DebugSession,
    request: &approval::Request,
) -> Result<Result<Vec<json_patch::PatchOperation>, serde_json::Error>, String> {
    let approver = requester::from_user_info(&req.user_info);
    let namespace = req.namespace.clone().unwrap_or_default();
    let around = webhook.io.surroundings(&namespace).await.map_err(|e| {
        format!(
            "reading the DebugPolicies and namespace {namespace}: {}",
            error_chain(&e)
        )
    })?;
    let check = approval::judge(
        request,
        old,
        &approver,
        &around,
        &webhook.policy,
        &namespace,
    )?;
    match webhook.io.authorize(&approver, &[vec![check]]).await {
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

/// The pure half of validating a CREATE: the session's plan and its requester, or the
/// refusal message.
fn plan_create(
    session: &DebugSession,
    policy: &Policy,
    capabilities: Capabilities,
) -> Result<(Plan, Requester), String> {
    let Some(requester) = session.spec.requester.clone() else {
        return Err(
            "spec.requester is not set: shellcar's mutating webhook did not run; check its MutatingWebhookConfiguration"
                .to_owned(),
        );
    };
    let plan = validate::spec(&session.spec, policy, capabilities).map_err(|e| e.to_string())?;
    Ok((plan, requester))
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
    // First: outside the watched namespaces the operator may not even read the namespace.
    if let Err(refused) = webhook.policy.namespaces.watches(&namespace) {
        return response.deny(refused);
    }
    let (plan, requester) = match plan_create(session, &webhook.policy, webhook.capabilities) {
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
    // With the sessions limit, which applies only here, at creation: `around` counts them.
    let admitted = match govern(
        &session.spec,
        &plan,
        &namespace,
        &around,
        &webhook.policy,
        false,
    ) {
        Ok(admitted) => admitted,
        Err(refusal) => return response.deny(refusal.to_string()),
    };
    // What the requester must hold: the admitting policy's access model decides.
    let required = access_rules::required(&session.spec, plan.mode, &namespace, admitted.access);
    match webhook.io.authorize(&requester, &required).await {
        Ok(()) => {}
        Err(access::Error::Denied(denied)) => return response.deny(denied),
        Err(e) => return response.deny(error_chain(&e)),
    }
    match webhook.io.try_change(session, &plan).await {
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

#[cfg(test)]
mod tests;
