//! The decide step of the reconcile pipeline: check the admission stamp, validate the spec,
//! govern it (policy, Pod Security), pass the approval gate, count the ttl and authorize
//! the requester, giving a [`Decision`] before anything is changed.

use std::time::Duration;

use jiff::Timestamp;

use super::Pass;
use crate::crd::{Access, DebugSessionStatus, Mode, Phase};
use crate::k8s::access;
use crate::rules;
use crate::rules::approval::{self, Gate};
use crate::rules::govern::{Surroundings, govern, live_before};
use crate::rules::stamp;
use crate::rules::validate::{self, Invalid, Plan};
use crate::session::error::Error;
use crate::ttl;

/// What the rules decide for a session, before anything is changed.
#[derive(Debug)]
pub(super) enum Decision {
    /// It may not go on: whatever of it is in place is removed, and status says why.
    Refuse(Invalid),
    /// Policy `policy` requires approval, awaited until `due`; nothing of it may be in
    /// place meanwhile.
    Await { policy: String, due: Timestamp },
    /// Its ttl ran out: it is torn down for good.
    Expire,
    /// Its debugger should be in place as `plan` says until `expires_at`, `remaining`
    /// from now.
    Run {
        plan: Plan,
        expires_at: Timestamp,
        remaining: Duration,
    },
}

/// What was judged on the way to a [`Decision`], which the status records whatever the
/// decision is.
pub(super) struct Judged {
    /// The mode the plan chose; the previous one while the spec is invalid.
    pub(super) mode: Option<Mode>,
    /// The policy that admits the session, once one does.
    pub(super) policy: Option<String>,
    /// When the session expires, once its ttl counts from the approval gate; the previous
    /// time for a valid spec refused by its policy or the gate; none for an invalid spec
    /// or while approval is awaited.
    pub(super) expires_at: Option<Timestamp>,
    /// The approval gate opened on this pass for a session that was waiting for it.
    pub(super) approved: bool,
}

impl Judged {
    /// Nothing judged yet: what the previous status says.
    pub(super) fn before(old: &DebugSessionStatus) -> Judged {
        Judged {
            mode: old.mode,
            policy: None,
            expires_at: old.expires_at.as_ref().map(|t| t.0),
            approved: false,
        }
    }
}

impl Pass<'_> {
    /// What the rules decide, and what was judged on the way. Reads watch caches; the
    /// requests it may send are discovery (once) and the requester's access reviews.
    pub(super) async fn decide(&self) -> Result<(Decision, Judged), Error> {
        let (session, ctx, old) = (self.session, self.ctx, &self.old);
        let mut judged = Judged::before(old);
        // Who asked, as admission recorded it: nothing else counts without that.
        if let Some(refusal) = self.admitted() {
            judged.expires_at = None;
            return Ok((Decision::Refuse(refusal), judged));
        }
        let caps = ctx.capabilities().await?;
        let plan = match validate::spec(&session.spec, &ctx.policy, caps) {
            Ok(plan) => plan,
            Err(invalid) => {
                // An invalid spec has no ttl that counts.
                judged.expires_at = None;
                return Ok((Decision::Refuse(invalid), judged));
            }
        };
        judged.mode = Some(plan.mode.into());
        // The limit of live sessions, in creation order: a session that two webhook
        // replicas admitted into the last slot at once is refused here.
        let sessions = ctx.caches.sessions.state();
        let around = Surroundings {
            policies: ctx.caches.policies.state(),
            labels: ctx.caches.namespace_labels(self.ns)?,
            live_sessions: Some(live_before(
                sessions.iter().map(AsRef::as_ref),
                self.ns,
                Some(session),
            )),
        };
        let admitted_before = old.policy.is_some();
        let admitted = match govern(
            &session.spec,
            &plan,
            self.ns,
            &around,
            &ctx.policy,
            admitted_before,
        ) {
            Ok(admitted) => admitted,
            Err(invalid) => return Ok((Decision::Refuse(invalid), judged)),
        };
        judged.policy = Some(admitted.policy.clone());
        let created = session.metadata.creation_timestamp.as_ref();
        let created = created.map_or(self.now, |t| t.0);
        let start =
            match approval::gate(&admitted, session.spec.approval.as_ref(), created, self.now) {
                Gate::Open { start } => start,
                Gate::Awaiting { due } => {
                    judged.expires_at = None;
                    let policy = admitted.policy;
                    return Ok((Decision::Await { policy, due }, judged));
                }
                Gate::Closed(invalid) => return Ok((Decision::Refuse(invalid), judged)),
            };
        judged.approved = old.phase == Some(Phase::AwaitingApproval);
        let expires_at = ttl::expires_at(start, plan.ttl);
        judged.expires_at = Some(expires_at);
        let Some(remaining) = ttl::remaining(self.now, expires_at) else {
            return Ok((Decision::Expire, judged));
        };
        // Nothing the requester could not do directly, checked before each change.
        if let Some(refusal) = self.authorize(&plan, admitted.access).await? {
            return Ok((Decision::Refuse(refusal), judged));
        }
        let run = Decision::Run {
            plan,
            expires_at,
            remaining,
        };
        Ok((run, judged))
    }

    /// The refusal if the session has no requester, or if shellcar's webhook did not record
    /// its requester and approval as they are now (its admission stamp).
    fn admitted(&self) -> Option<Invalid> {
        if self.session.spec.requester.is_none() {
            return Some(Invalid::NoRequester);
        }
        stamp::verify(&self.ctx.stamp, self.session)
            .err()
            .map(Invalid::NotAdmitted)
    }

    /// The refusal if the session's requester does not hold what the admitting policy's
    /// `access` asks of them: the power to make the change themselves, or the verb `debug`
    /// on the target (the same SubjectAccessReviews as the admission webhook's, cached
    /// briefly).
    async fn authorize(&self, plan: &Plan, access: Access) -> Result<Option<Invalid>, Error> {
        let Some(requester) = &self.session.spec.requester else {
            return Ok(Some(Invalid::NoRequester));
        };
        let required = rules::access::required(&self.session.spec, plan.mode, self.ns, access);
        let ctx = self.ctx;
        match access::authorize_cached(&ctx.client, &ctx.access, requester, &required).await {
            Ok(()) => Ok(None),
            Err(access::Error::Denied(denied)) => Ok(Some(Invalid::Forbidden {
                denied: denied.to_string(),
            })),
            Err(e) => Err(Error::Access(e)),
        }
    }
}
