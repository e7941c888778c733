//! What the shared process namespace exposes to the debugger, as admission warnings that
//! kubectl prints as `Warning:` lines.
//!
//! Renders [`crate::rules::exposure::report`]: one line per Secret env var, `envFrom` Secret and
//! mounted Secret or hostPath volume, privileged container and added capabilities, one line
//! per ServiceAccount token naming the containers that hold it, and one for the node's
//! namespaces the pod joins. Names, never values.

use k8s_openapi::api::core::v1::PodSpec;

use crate::crd::{Exposure, TokenMount};

const PREFIX: &str = "the debugger shares the process namespace and can read";

/// Warnings on what a debugger beside a pod with spec `spec` can read.
pub fn exposure(spec: &PodSpec) -> Vec<String> {
    let report = crate::rules::exposure::report(spec);
    let mut out = Vec::new();
    for e in &report {
        let c = &e.container;
        for env in &e.secret_env {
            out.push(format!(
                "{PREFIX} env {} of container {c} (from Secret {})",
                env.name, env.secret
            ));
        }
        for secret in &e.secret_env_from {
            out.push(format!(
                "{PREFIX} the env of container {c} from every key of Secret {secret}"
            ));
        }
        for m in &e.secret_volumes {
            out.push(format!(
                "{PREFIX} {} (volume {}) at {} in container {c}",
                m.source, m.volume, m.path
            ));
        }
        for m in &e.host_paths {
            out.push(format!(
                "{PREFIX} hostPath {} (volume {}) at {} in container {c}",
                m.source, m.volume, m.path
            ));
        }
        if e.privileged {
            out.push(format!(
                "{PREFIX} and signal the processes of privileged container {c}"
            ));
        }
        if !e.added_capabilities.is_empty() {
            out.push(format!(
                "{PREFIX} and signal the processes of container {c}, which adds capabilities {}",
                e.added_capabilities.join(", ")
            ));
        }
    }
    // The same for every container of the pod: said once.
    if let Some(e) = report.iter().find(|e| !e.host_namespaces.is_empty()) {
        out.push(format!(
            "the debugger shares the process namespace with a pod that joins the node's namespaces: {}",
            e.host_namespaces.join(", ")
        ));
    }
    for (token, containers) in tokens(&report) {
        let noun = if containers.len() == 1 {
            "container"
        } else {
            "containers"
        };
        out.push(format!(
            "{PREFIX} the token of ServiceAccount {} at {} in {noun} {}",
            token.service_account,
            token.path,
            containers.join(", ")
        ));
    }
    out
}

/// Each distinct token, with the containers that hold it, in the report's order.
fn tokens(report: &[Exposure]) -> Vec<(&TokenMount, Vec<&str>)> {
    let mut out: Vec<(&TokenMount, Vec<&str>)> = Vec::new();
    for e in report {
        let Some(token) = &e.service_account_token else {
            continue;
        };
        match out.iter_mut().find(|(t, _)| *t == token) {
            Some((_, containers)) => containers.push(&e.container),
            None => out.push((token, vec![&e.container])),
        }
    }
    out
}

#[cfg(test)]
mod tests;
