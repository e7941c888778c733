//! Which namespaces shellcar works in: those it watches (`--watch-namespaces`, or every
//! one), and among them the protected ones, `kube-system` and the operator's own, where a
//! session needs a DebugPolicy that names the namespace. Both front doors ask here: the
//! webhook at `kubectl apply`, the reconciler (through [`super::govern`]) at every pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

use crate::crd::DebugPolicy;

/// The namespace of the cluster's own components, protected wherever shellcar runs.
pub const SYSTEM_NAMESPACE: &str = "kube-system";

/// The label the API server gives every namespace, holding its name: the only label a
/// policy can name one namespace by.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The namespaces the operator works in, from its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespaces {
    /// Where a session needs a policy that names the namespace; sorted.
    protected: Vec<String>,
    /// The namespaces watched; empty: every namespace.
    watched: Vec<String>,
}

impl Namespaces {
    /// `kube-system` and `own` (the operator's namespace) protected; `watched` (blank
    /// entries and repeats dropped, as a comma-separated flag may hold them) or, empty,
    /// every namespace watched.
    pub fn new(own: &str, watched: Vec<String>) -> Namespaces {
        let mut protected = vec![SYSTEM_NAMESPACE.to_owned(), own.to_owned()];
        protected.sort();
        protected.dedup();
        let mut watched: Vec<String> = watched
            .into_iter()
            .map(|ns| ns.trim().to_owned())
            .filter(|ns| !ns.is_empty())
            .collect();
        watched.sort();
        watched.dedup();
        Namespaces { protected, watched }
    }

    /// The namespaces watched, sorted; empty: every namespace.
    pub fn watched(&self) -> &[String] {
        &self.watched
    }

    /// Whether sessions in `namespace` need a policy that names it.
    pub fn is_protected(&self, namespace: &str) -> bool {
        self.protected.iter().any(|p| p == namespace)
    }

    /// Whether the operator watches `namespace`: nothing acts on a session elsewhere.
    pub fn watches(&self, namespace: &str) -> Result<(), Refused> {
        if self.watched.is_empty() || self.watched.iter().any(|w| w == namespace) {
            return Ok(());
        }
        Err(Refused::NotWatched {
            namespace: namespace.to_owned(),
            watched: self.watched.clone(),
        })
    }

    /// The policies that may govern a session in `namespace` (whose labels are `labels`):
    /// all of `policies`, or in a protected namespace only those that name it and select
    /// it, and at least one of those. So the built-in default never applies there, and a
    /// policy that selects every namespace lifts nothing.
    pub fn governing(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        policies: &[Arc<DebugPolicy>],
    ) -> Result<Vec<Arc<DebugPolicy>>, Refused> {
        if !self.is_protected(namespace) {
            return Ok(policies.to_vec());
        }
        let naming: Vec<Arc<DebugPolicy>> = policies
            .iter()
            .filter(|p| {
                let selector = p.spec.namespace_selector.as_ref();
                selector.is_some_and(|s| names(s, namespace)) && selects(selector, labels)
            })
            .cloned()
            .collect();
        if naming.is_empty() {
            return Err(Refused::Protected {
                namespace: namespace.to_owned(),
            });
        }
        Ok(naming)
    }
}

/// Whether `selector` names `namespace` by [`NAME_LABEL`]: in `matchLabels`, or in a
/// `matchExpressions` entry with operator `In` that lists it.
pub fn names(selector: &LabelSelector, namespace: &str) -> bool {
    let by_label = selector
        .match_labels
        .as_ref()
        .and_then(|labels| labels.get(NAME_LABEL))
        .is_some_and(|name| name == namespace);
    let by_expression = selector.match_expressions.iter().flatten().any(|e| {
        e.key == NAME_LABEL
            && e.operator == "In"
            && e.values.iter().flatten().any(|v| v == namespace)
    });
    by_label || by_expression
}

/// Whether `selector` matches `labels`. One that cannot be read counts as matching, so that
/// the policy's own judgment refuses the session as malformed (it fails closed).
fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(selector.cloned().unwrap_or_default()).map_or(true, |s| s.matches(labels))
}

/// Why a session may not be in its namespace.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "this shellcar watches only namespaces {} (--watch-namespaces), so nothing would act on a session in namespace {namespace}; create it in one of those",
        watched.join(", ")
    )]
    NotWatched {
        namespace: String,
        watched: Vec<String>,
    },
    #[error(
        "namespace {namespace} is protected: shellcar changes nothing in kube-system or in its own namespace unless a DebugPolicy names the namespace in its namespaceSelector, as matchLabels {{{NAME_LABEL}: {namespace}}} or a matchExpressions entry on {NAME_LABEL} with operator In; a policy that selects every namespace does not count"
    )]
    Protected { namespace: String },
}

impl Refused {
    /// The condition reason, Event reason and metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::NotWatched { .. } => "NamespaceNotWatched",
            Refused::Protected { .. } => "NamespaceProtected",
        }
    }
}

#[cfg(test)]
mod tests;
