//! One judgment of a session against the cluster's rules, for both front doors: a
//! DebugPolicy (or the built-in default where none selects the namespace) must admit it,
//! within the policy's limit of live sessions when that count is known, and the
//! namespace's Pod Security level must allow its profile.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Policy;
use super::podsecurity;
use super::policy::{self, Admitted};
use super::validate::{Invalid, Plan};
use crate::crd::{DebugPolicy, DebugSessionSpec};

/// What decides whether a session in a namespace is allowed, besides the session.
#[derive(Clone, Debug, Default)]
pub struct Surroundings {
    /// Every DebugPolicy.
    pub policies: Vec<Arc<DebugPolicy>>,
    /// The namespace's labels: they select policies and name its Pod Security level.
    pub labels: BTreeMap<String, String>,
    /// Sessions in the namespace not yet Expired, Ended or Failed (nor being deleted), when
    /// counted: the webhook counts them at creation, where the limit applies; the reconciler
    /// does not.
    pub live_sessions: Option<usize>,
}

/// The policy that admits the session `spec` (planned as `plan`) in `namespace`, or the
/// refusal. `admitted_before` says that some policy admitted the session earlier: losing
/// that is [`Invalid::PolicyRevoked`], not [`Invalid::PolicyDenied`].
pub fn govern(
    spec: &DebugSessionSpec,
    plan: &Plan,
    namespace: &str,
    around: &Surroundings,
    defaults: &Policy,
    admitted_before: bool,
) -> Result<Admitted, Invalid> {
    let ask = policy::Ask::of(spec, plan.mode, &plan.image, plan.ttl, around.live_sessions);
    let admitted = policy::admit(&around.policies, namespace, &around.labels, &ask, defaults)
        .map_err(|refusal| {
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
