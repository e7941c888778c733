//! Only what the requester could do directly: the permissions a session stands in for, and
//! SubjectAccessReviews that ask the API server whether the requester holds them.
//!
//! [`checks`] is pure; [`authorize`] and [`authorize_cached`] send the reviews.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::crd::{DebugSessionSpec, EphemeralTeardown, Mode, Requester, Resolved, TargetKind};

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

impl Error {
    /// A short, stable category: condition and Event reason, metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Denied(_) => "Forbidden",
            Error::Review { .. } => "AccessReviewFailed",
        }
    }
}

/// Plural resource name of a target kind, and its API group.
fn resource(kind: TargetKind) -> (&'static str, &'static str) {
    match kind {
        TargetKind::Deployment => ("apps", "deployments"),
        TargetKind::StatefulSet => ("apps", "statefulsets"),
        TargetKind::DaemonSet => ("apps", "daemonsets"),
        TargetKind::ReplicaSet => ("apps", "replicasets"),
        TargetKind::Pod => ("", "pods"),
    }
}

/// The permissions a session in `namespace` needs from its requester, in resolved mode
/// `mode`.
///
/// - Sidecar: `patch` on the workload, by name;
/// - Ephemeral: `patch` on `pods/ephemeralcontainers` (by name for a Pod target, else on
///   every pod, as the pods are chosen later), and `create` on `pods/eviction` when
///   `teardown.ephemeral` is Recycle;
/// - Copy: `create` on `pods`;
/// - `get` on each Secret and ConfigMap that `debugger.env[].valueFrom` names.
pub fn checks(spec: &DebugSessionSpec, mode: Resolved, namespace: &str) -> Vec<Check> {
    let target = &spec.target;
    let pod_name = (target.kind == TargetKind::Pod).then(|| target.name.clone());
    let permission = |verb, group, resource, subresource, name: Option<String>| Permission {
        verb,
        group,
        resource,
        subresource,
        name,
        namespace: namespace.to_owned(),
    };
    let by_mode = format!("mode {}", Mode::from(mode));
    let mut out = Vec::new();
    match mode {
        Resolved::Sidecar => {
            let (group, resource) = resource(target.kind);
            out.push(Check {
                permission: permission("patch", group, resource, None, Some(target.name.clone())),
                needed_by: by_mode,
            });
        }
        Resolved::Ephemeral => {
            out.push(Check {
                permission: permission(
                    "patch",
                    "",
                    "pods",
                    Some("ephemeralcontainers"),
                    pod_name.clone(),
                ),
                needed_by: by_mode,
            });
            // Only Ephemeral sessions evict: the teardown policy means nothing to the others.
            if spec.teardown.ephemeral == EphemeralTeardown::Recycle {
                out.push(Check {
                    permission: permission("create", "", "pods", Some("eviction"), pod_name),
                    needed_by: "teardown.ephemeral Recycle".to_owned(),
                });
            }
        }
        Resolved::Copy => out.push(Check {
            permission: permission("create", "", "pods", None, None),
            needed_by: by_mode,
        }),
    }
    for env in spec.debugger.env.iter().flatten() {
        let Some(from) = &env.value_from else {
            continue;
        };
        let refs = [
            from.secret_key_ref.as_ref().map(|r| ("secrets", &r.name)),
            from.config_map_key_ref
                .as_ref()
                .map(|r| ("configmaps", &r.name)),
        ];
        for (resource, name) in refs.into_iter().flatten() {
            let check = Check {
                permission: permission("get", "", resource, None, Some(name.clone())),
                needed_by: format!("debugger.env {}", env.name),
            };
            if !out.iter().any(|c| c.permission == check.permission) {
                out.push(check);
            }
        }
    }
    out
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

fn verdict(denied: Option<Denied>) -> Result<(), Error> {
    denied.map_or(Ok(()), |d| Err(Error::Denied(Box::new(d))))
}

/// Asks, one SubjectAccessReview per check and all at once, whether `requester` passes
/// every check; the first denied one (in order) is the error.
pub async fn authorize(
    client: &Client,
    requester: &Requester,
    checks: &[Check],
) -> Result<(), Error> {
    let answers =
        futures::future::try_join_all(checks.iter().map(|c| ask(client, requester, &c.permission)))
            .await?;
    verdict(first_denied(requester, checks, answers))
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

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`authorize`], reusing answers from `cache` and recording new ones.
pub async fn authorize_cached(
    client: &Client,
    cache: &AccessCache,
    requester: &Requester,
    checks: &[Check],
) -> Result<(), Error> {
    let mut answers = Vec::with_capacity(checks.len());
    for check in checks {
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
    verdict(first_denied(requester, checks, answers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(yaml: &str) -> DebugSessionSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn dev() -> Requester {
        Requester {
            username: "dev".to_owned(),
            uid: Some("u-1".to_owned()),
            groups: vec!["system:authenticated".to_owned()],
            extra: Some([("scopes".to_owned(), vec!["a".to_owned()])].into()),
        }
    }

    /// Each check as `verb resource "name" (needed by ...)`.
    fn described(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .map(|c| format!("{} {} ({})", c.permission.verb, c.permission, c.needed_by))
            .collect()
    }

    #[test]
    fn sidecar_needs_patch_on_that_workload() {
        for (kind, resource) in [
            ("Deployment", "deployments.apps"),
            ("StatefulSet", "statefulsets.apps"),
            ("DaemonSet", "daemonsets.apps"),
            ("ReplicaSet", "replicasets.apps"),
        ] {
            let checks = checks(
                &spec(&format!("target: {{kind: {kind}, name: app}}")),
                Resolved::Sidecar,
                "shop",
            );
            assert_eq!(
                described(&checks),
                [format!("patch {resource} \"app\" (mode Sidecar)")]
            );
            assert_eq!(checks[0].permission.namespace, "shop");
        }
    }

    #[test]
    fn ephemeral_needs_the_subresource_and_recycle_needs_eviction() {
        let pod = spec("{target: {kind: Pod, name: web-1}, teardown: {ephemeral: Recycle}}");
        assert_eq!(
            described(&checks(&pod, Resolved::Ephemeral, "shop")),
            [
                "patch pods/ephemeralcontainers \"web-1\" (mode Ephemeral)",
                "create pods/eviction \"web-1\" (teardown.ephemeral Recycle)",
            ]
        );
        // a workload's pods are chosen later: every pod of the namespace
        let workload = spec("{target: {kind: Deployment, name: web}, mode: Ephemeral}");
        assert_eq!(
            described(&checks(&workload, Resolved::Ephemeral, "shop")),
            ["patch pods/ephemeralcontainers (mode Ephemeral)"]
        );
        // Recycle means nothing to a Sidecar session
        let sidecar =
            spec("{target: {kind: Deployment, name: web}, teardown: {ephemeral: Recycle}}");
        assert_eq!(checks(&sidecar, Resolved::Sidecar, "shop").len(), 1);
    }

    #[test]
    fn copy_needs_create_on_pods() {
        let copy = spec("{target: {kind: Pod, name: web-1}, mode: Copy}");
        assert_eq!(
            described(&checks(&copy, Resolved::Copy, "shop")),
            ["create pods (mode Copy)"]
        );
    }

    #[test]
    fn every_secret_and_config_map_in_env_needs_get_once() {
        let s = spec(
            r#"
target: {kind: Deployment, name: app}
debugger:
  env:
  - {name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}
  - {name: USER, valueFrom: {secretKeyRef: {name: db, key: user}}}
  - {name: LEVEL, valueFrom: {configMapKeyRef: {name: settings, key: level}}}
  - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
  - {name: PLAIN, value: x}
"#,
        );
        assert_eq!(
            described(&checks(&s, Resolved::Sidecar, "shop")),
            [
                "patch deployments.apps \"app\" (mode Sidecar)",
                "get secrets \"db\" (debugger.env PW)",
                "get configmaps \"settings\" (debugger.env LEVEL)",
            ]
        );
    }

    #[test]
    fn the_review_carries_the_whole_identity() {
        let check = &checks(
            &spec("target: {kind: Pod, name: web-1}"),
            Resolved::Ephemeral,
            "shop",
        )[0];
        let review = serde_json::to_value(review(&dev(), &check.permission)).unwrap();
        assert_eq!(
            review["spec"],
            json!({
                "user": "dev",
                "uid": "u-1",
                "groups": ["system:authenticated"],
                "extra": {"scopes": ["a"]},
                "resourceAttributes": {
                    "verb": "patch",
                    "group": "",
                    "resource": "pods",
                    "subresource": "ephemeralcontainers",
                    "name": "web-1",
                    "namespace": "shop",
                },
            })
        );
        assert_eq!(review["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(review["kind"], "SubjectAccessReview");
    }

    #[test]
    fn a_denial_names_user_verb_resource_namespace_and_mode() {
        let checks = checks(
            &spec(
                "{target: {kind: Deployment, name: app}, debugger: {env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}]}}",
            ),
            Resolved::Sidecar,
            "shop",
        );
        let yes = Answer {
            allowed: true,
            reason: None,
        };
        let no = Answer {
            allowed: false,
            reason: Some("no RBAC policy matched".to_owned()),
        };
        let denied = first_denied(&dev(), &checks, vec![no.clone(), no.clone()]).unwrap();
        assert_eq!(
            denied.to_string(),
            r#"user "dev" may not patch deployments.apps "app" in namespace "shop" (needed by mode Sidecar)"#
        );
        assert_eq!(denied.reason.as_deref(), Some("no RBAC policy matched"));
        let denied = first_denied(&dev(), &checks, vec![yes.clone(), no]).unwrap();
        assert_eq!(
            denied.to_string(),
            r#"user "dev" may not get secrets "db" in namespace "shop" (needed by debugger.env PW)"#
        );
        assert_eq!(Error::from(Box::new(denied)).reason(), "Forbidden");
        assert!(first_denied(&dev(), &checks, vec![yes.clone(), yes]).is_none());
    }

    #[test]
    fn the_cache_keeps_answers_for_its_ttl_per_requester() {
        let cache = AccessCache::new(Duration::from_secs(30));
        let permission = checks(
            &spec("target: {kind: Deployment, name: app}"),
            Resolved::Sidecar,
            "shop",
        )
        .remove(0)
        .permission;
        let t0 = Instant::now();
        let yes = Answer {
            allowed: true,
            reason: None,
        };
        assert_eq!(cache.get(&dev(), &permission, t0), None);
        cache.insert(&dev(), &permission, yes.clone(), t0);
        assert_eq!(
            cache.get(&dev(), &permission, t0 + Duration::from_secs(29)),
            Some(yes.clone())
        );
        assert_eq!(
            cache.get(&dev(), &permission, t0 + Duration::from_secs(30)),
            None
        );
        let other = Requester {
            username: "other".to_owned(),
            ..Default::default()
        };
        assert_eq!(cache.get(&other, &permission, t0), None);
        // a later insert drops what expired
        cache.insert(&other, &permission, yes, t0 + Duration::from_secs(31));
        assert_eq!(cache.len(), 1);
    }
}
