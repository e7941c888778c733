//! One judgment of a session against the cluster's rules, for both front doors: in a
//! protected namespace, a DebugPolicy must name the namespace ([`super::namespaces`]); a
//! DebugPolicy (or the built-in default where none selects the namespace) must admit it,
//! within the policy's limit of live sessions when that count is known, and the
//! namespace's Pod Security level must allow its profile.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Policy;
use super::namespaces::Refused;
use super::podsecurity;
use super::policy::{self, Admitted};
use super::validate::{Invalid, Plan};
use crate::crd::{DebugPolicy, DebugSession, DebugSessionSpec, Phase};

/// What decides whether a session in a namespace is allowed, besides the session.
#[derive(Clone, Debug, Default)]
pub struct Surroundings {
    /// Every DebugPolicy.
    pub policies: Vec<Arc<DebugPolicy>>,
    /// The namespace's labels: they select policies and name its Pod Security level.
    pub labels: BTreeMap<String, String>,
    /// Live sessions in the namespace ([`live_before`]) that come before this one: all of
    /// them for the webhook at creation, those created earlier for the reconciler, which
    /// so enforces the limit in creation order even when two webhook replicas admitted the
    /// last slot at once. None: not counted.
    pub live_sessions: Option<usize>,
}

/// Whether `session` counts against a policy's limit: not being deleted, and not yet
/// Expired, Ended or Failed.
pub fn is_live(session: &DebugSession) -> bool {
    session.metadata.deletion_timestamp.is_none()
        && !matches!(
            session.status.as_ref().and_then(|s| s.phase),
            Some(Phase::Expired | Phase::Ended | Phase::Failed)
        )
}

/// The live sessions of `namespace` among `sessions` that were created before `session`
/// (by creation time, then name); with no `session` (one being created, which comes last),
/// all of them.
pub fn live_before<'a>(
    sessions: impl IntoIterator<Item = &'a DebugSession>,
    namespace: &str,
    session: Option<&DebugSession>,
) -> usize {
    let limit = session.map(creation_order);
    sessions
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace) && is_live(s))
        .filter(|s| limit.is_none_or(|limit| creation_order(s) < limit))
        .count()
}

/// Where `session` stands in creation order: its creation time, then its name.
fn creation_order(session: &DebugSession) -> (Option<jiff::Timestamp>, Option<&str>) {
    (
        session.metadata.creation_timestamp.as_ref().map(|t| t.0),
        session.metadata.name.as_deref(),
    )
}

/// The policy that admits the session `spec` (planned as `plan`) in `namespace`, or the
/// refusal. `admitted_before` says that some policy admitted the session earlier: losing
/// that is [`Invalid::PolicyRevoked`], not [`Invalid::PolicyDenied`] (nor
/// [`Invalid::Namespace`] for a protected namespace).
pub fn govern(
    spec: &DebugSessionSpec,
    plan: &Plan,
    namespace: &str,
    around: &Surroundings,
    defaults: &Policy,
    admitted_before: bool,
) -> Result<Admitted, Invalid> {
    let policies = defaults
        .namespaces
        .governing(namespace, &around.labels, &around.policies)
        .map_err(|refused| match refused {
            Refused::Protected { .. } if admitted_before => Invalid::PolicyRevoked {
                message: refused.to_string(),
            },
            refused => Invalid::Namespace(refused),
        })?;
    let ask = policy::Ask::of(spec, plan.mode, &plan.image, plan.ttl, around.live_sessions);
    let admitted =
        policy::admit(&policies, namespace, &around.labels, &ask, defaults).map_err(|refusal| {
            let message = refusal.to_string();
            if admitted_before {
                Invalid::PolicyRevoked { message }
            } else {
                Invalid::PolicyDenied { message }
            }
        })?;
    podsecurity::check(namespace, &around.labels, spec.debugger.profile).map_err(|f| {
        Invalid::PodSecurity {
            message: f.to_string(),
        }
    })?;
    Ok(admitted)
}

#[cfg(test)]
mod tests;
