//! SubjectAccessReviews: whether a requester holds a [`Permission`], asked of the API
//! server ([`authorize`]) or answered from a short cache ([`authorize_cached`]). Which
//! permissions a session stands in for is a rule: [`crate::rules::access::required`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::crd::Requester;

/// One RBAC permission in one namespace: what a SubjectAccessReview asks about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Permission {
    pub verb: &'static str,
    /// API group; empty for the core group.
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    /// The object's name; `None` asks about every object of the resource.
    pub name: Option<String>,
    pub namespace: String,
}

impl Permission {
    /// The attributes of a SubjectAccessReview for this permission.
    pub fn attributes(&self) -> ResourceAttributes {
        ResourceAttributes {
            verb: Some(self.verb.to_owned()),
            group: Some(self.group.to_owned()),
            resource: Some(self.resource.to_owned()),
            subresource: self.subresource.map(str::to_owned),
            name: self.name.clone(),
            namespace: Some(self.namespace.clone()),
            ..Default::default()
        }
    }
}

/// The resource as kubectl names it: `deployments.apps "app"`, `pods/ephemeralcontainers`.
impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource)?;
        if let Some(sub) = self.subresource {
            write!(f, "/{sub}")?;
        }
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        Ok(())
    }
}

/// A permission the requester needs, and what in the session needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Check {
    pub permission: Permission,
    /// What needs it, for people: `mode Sidecar`, `debugger.env PW`.
    pub needed_by: String,
}

/// The requester lacks a permission the session needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "user {user:?} may not {verb} {permission} in namespace {namespace:?} (needed by {needed_by})",
    user = requester.username,
    verb = check.permission.verb,
    permission = check.permission,
    namespace = check.permission.namespace,
    needed_by = check.needed_by
)]
pub struct Denied {
    pub requester: Requester,
    pub check: Check,
    /// The authorizer's own explanation, if it gave one (for logs).
    pub reason: Option<String>,
}

/// Errors of an authorization.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Permanent until RBAC changes.
    #[error(transparent)]
    Denied(#[from] Box<Denied>),
    /// Transient: the review could not be asked.
    #[error("asking the API server whether {user:?} may {what}")]
    Review {
        user: String,
        /// Verb and resource, as in a denial.
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// The SubjectAccessReview that asks whether `requester` holds `permission`.
pub fn review(requester: &Requester, permission: &Permission) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(requester.username.clone()),
            uid: requester.uid.clone(),
            groups: (!requester.groups.is_empty()).then(|| requester.groups.clone()),
            extra: requester.extra.clone(),
            resource_attributes: Some(permission.attributes()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The authorizer's answer on one permission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub allowed: bool,
    pub reason: Option<String>,
}

/// Asks the API server, as `requester`, about `permission`.
pub async fn ask(
    client: &Client,
    requester: &Requester,
    permission: &Permission,
) -> Result<Answer, Error> {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review(requester, permission))
        .await
        .map_err(|source| Error::Review {
            user: requester.username.clone(),
            what: format!("{} {}", permission.verb, permission),
            source,
        })?;
    let status = answer.status.unwrap_or_default();
    Ok(Answer {
        allowed: status.allowed && status.denied != Some(true),
        reason: status.reason.filter(|r| !r.is_empty()),
    })
}

/// The first check, in order, whose answer is not allowed.
pub fn first_denied(
    requester: &Requester,
    checks: &[Check],
    answers: Vec<Answer>,
) -> Option<Denied> {
    checks
        .iter()
        .zip(answers)
        .find(|(_, a)| !a.allowed)
        .map(|(check, answer)| Denied {
            requester: requester.clone(),
            check: check.clone(),
            reason: answer.reason,
        })
}

/// Whether `requester` passes every check of any one of `alternatives`, given the answers
/// to every check of every alternative in order. The error is the first alternative's
/// first denied check: the way the policy names first.
pub fn verdict(
    requester: &Requester,
    alternatives: &[Vec<Check>],
    mut answers: Vec<Answer>,
) -> Result<(), Error> {
    let mut first = None;
    for checks in alternatives {
        let rest = answers.split_off(checks.len().min(answers.len()));
        match first_denied(requester, checks, std::mem::replace(&mut answers, rest)) {
            None => return Ok(()),
            Some(denied) => {
                first.get_or_insert(denied);
            }
        }
    }
    first.map_or(Ok(()), |d| Err(Error::Denied(Box::new(d))))
}

/// Asks, one SubjectAccessReview per check and all at once, whether `requester` passes
/// every check of any one of `alternatives` ([`verdict`]).
pub async fn authorize(
    client: &Client,
    requester: &Requester,
    alternatives: &[Vec<Check>],
) -> Result<(), Error> {
    let asked = alternatives
        .iter()
        .flatten()
        .map(|c| ask(client, requester, &c.permission));
    let answers = futures::future::try_join_all(asked).await?;
    verdict(requester, alternatives, answers)
}

/// Recent answers, so that a reconciler in steady state sends no reviews.
///
/// Answers are kept for a fixed time: a revoked permission is noticed at most that late.
/// Denials are kept too, so a session refused for lack of one does not ask again on every
/// retry.
pub struct AccessCache {
    ttl: Duration,
    entries: Mutex<HashMap<(Requester, Permission), (Instant, Answer)>>,
}

impl AccessCache {
    /// Answers are reused for `ttl` (30 seconds is a good default).
    pub fn new(ttl: Duration) -> Self {
        AccessCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The answer recorded at or after `now - ttl`.
    pub fn get(
        &self,
        requester: &Requester,
        permission: &Permission,
        now: Instant,
    ) -> Option<Answer> {
        let entries = self.entries.lock().ok()?;
        let key = (requester.clone(), permission.clone());
        entries
            .get(&key)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(_, answer)| answer.clone())
    }

    /// Records `answer` as of `now`, and forgets answers that are too old.
    pub fn insert(
        &self,
        requester: &Requester,
        permission: &Permission,
        answer: Answer,
        now: Instant,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.ttl);
        entries.insert((requester.clone(), permission.clone()), (now, answer));
    }
}

/// [`authorize`], reusing answers from `cache` and recording new ones.
pub async fn authorize_cached(
    client: &Client,
    cache: &AccessCache,
    requester: &Requester,
    alternatives: &[Vec<Check>],
) -> Result<(), Error> {
    let mut answers = Vec::new();
    for check in alternatives.iter().flatten() {
        let now = Instant::now();
        let answer = match cache.get(requester, &check.permission, now) {
            Some(answer) => answer,
            None => {
                let answer = ask(client, requester, &check.permission).await?;
                cache.insert(requester, &check.permission, answer.clone(), now);
                answer
            }
        };
        answers.push(answer);
    }
    verdict(requester, alternatives, answers)
}

#[cfg(test)]
mod tests;
