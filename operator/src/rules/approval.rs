//! Approvals, pure: whether a session may start, given the approval its policy asks for
//! (the gate every reconcile passes before it changes anything); who may decide on a
//! session ([`may_decide`]); and whether an approver's annotation ([`Seen`]) binds the
//! decision to the session as the approver saw it ([`Seen::binds`]).
//!
//! The decision itself is recorded in `spec.approval` by the admission webhook
//! ([`crate::admission`]), which checks the approver with these rules; `shellcar approve`
//! ([`crate::client::approve`]) writes the annotation.

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::crd::{Approval, Approvers, DebugSession, Decision, Requester, Seen};
use crate::rules::policy::Admitted;
use crate::rules::validate::Invalid;
use crate::ttl;

/// How far ahead of this replica's clock an approval's time may be: the webhook that
/// recorded it may run on another node whose clock is a little ahead.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(60);

/// The start of every ServiceAccount's user name, as the API server authenticates it.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// A decision that names another session than the stored one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error(
        "the decision names session {name} with uid {seen}, which no longer exists: a session of that name was created again since; look at it again (shellcar approve {name})"
    )]
    Recreated { name: String, seen: String },
    #[error(
        "session {name} changed after it was seen (generation {seen}, now {now}); look at it again (shellcar approve {name})"
    )]
    Changed { name: String, seen: i64, now: i64 },
}

/// Binding a decision to the session: a rule, beside the annotation format in [`crate::crd`].
impl Seen {
    /// Whether this is what `stored` is now: the same object, unchanged since.
    pub fn binds(&self, stored: &DebugSession) -> Result<(), Stale> {
        let name = stored.name_any();
        if stored.metadata.uid.as_deref() != Some(self.uid.as_str()) {
            return Err(Stale::Recreated {
                name,
                seen: self.uid.clone(),
            });
        }
        match stored.metadata.generation {
            Some(now) if now == self.generation => Ok(()),
            now => Err(Stale::Changed {
                name,
                seen: self.generation,
                now: now.unwrap_or_default(),
            }),
        }
    }
}

/// Why someone may not decide on a session under its policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotApprover {
    #[error(
        "user \"{user}\" may not {verb} session {session}: a ServiceAccount decides only where the session's DebugPolicy names it in approval.approvers.users, and policy {policy} does not (group membership does not count)"
    )]
    ServiceAccount {
        user: String,
        verb: &'static str,
        session: String,
        policy: String,
    },
    #[error(
        "user \"{user}\" may not {verb} session {session}: policy {policy} names who may in approval.approvers, and neither the user nor any of their groups is among them"
    )]
    Unlisted {
        user: String,
        verb: &'static str,
        session: String,
        policy: String,
    },
}

/// True for a ServiceAccount's user name.
pub fn is_service_account(username: &str) -> bool {
    username.starts_with(SERVICE_ACCOUNT_PREFIX)
}

/// Whether `who` may `verb` (approve, reject) session `session`, held for approval by
/// `policy` whose `approval.approvers` are `approvers`. The requester is refused before
/// this, and the verb is checked besides (a SubjectAccessReview).
///
/// Listed approvers: a user named in `users`, or a member of a group in `groups`.
/// None listed: anyone. Either way a ServiceAccount only when `users` names it: its
/// groups (`system:serviceaccounts`, ...) never count, so that binding a role to a
/// ServiceAccount one controls does not make an approver.
pub fn may_decide(
    approvers: Option<&Approvers>,
    policy: &str,
    who: &Requester,
    verb: &'static str,
    session: &str,
) -> Result<(), NotApprover> {
    let named = approvers.is_some_and(|a| a.users.contains(&who.username));
    if named {
        return Ok(());
    }
    if is_service_account(&who.username) {
        return Err(NotApprover::ServiceAccount {
            user: who.username.clone(),
            verb,
            session: session.to_owned(),
            policy: policy.to_owned(),
        });
    }
    match approvers {
        None => Ok(()),
        Some(a) if who.groups.iter().any(|g| a.groups.contains(g)) => Ok(()),
        Some(_) => Err(NotApprover::Unlisted {
            user: who.username.clone(),
            verb,
            session: session.to_owned(),
            policy: policy.to_owned(),
        }),
    }
}

/// What the approval rule says about a session now.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// It may run; its ttl counts from `start` (its approval, or its creation).
    Open { start: Timestamp },
    /// It waits for a decision until `due`, changing nothing.
    Awaiting { due: Timestamp },
    /// It was rejected, or nobody decided in time.
    Closed(Invalid),
}

/// The gate for a session created at `created`, admitted by `admitted`, with the decision
/// `approval` (if any), at `now`.
///
/// A rejection closes the gate whatever the policy says now; an approval opens it and its
/// time starts the ttl, even if the policy no longer asks for one. An approval dated in
/// the future (beyond [`CLOCK_SKEW`]) was not made by anyone: it closes the gate, since it
/// would stretch the ttl.
pub fn gate(
    admitted: &Admitted,
    approval: Option<&Approval>,
    created: Timestamp,
    now: Timestamp,
) -> Gate {
    match (approval, admitted.approval) {
        (Some(a), _) if a.decision == Decision::Rejected => {
            Gate::Closed(Invalid::ApprovalRejected {
                approver: a.approver.clone(),
                reason: a.reason.clone(),
            })
        }
        (Some(a), _) if a.time.0.duration_since(now) > CLOCK_SKEW => {
            Gate::Closed(Invalid::ApprovalInFuture {
                time: a.time.0.to_string(),
            })
        }
        (Some(a), _) => Gate::Open { start: a.time.0 },
        (None, None) => Gate::Open { start: created },
        (None, Some(deadline)) => {
            let due = ttl::expires_at(created, deadline);
            if ttl::remaining(now, due).is_some() {
                Gate::Awaiting { due }
            } else {
                Gate::Closed(Invalid::NotApproved {
                    policy: admitted.policy.clone(),
                    deadline: ttl::format(deadline),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
