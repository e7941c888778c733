//! What the shared process namespace reveals to a debugger, per container of the target.
//!
//! Whoever shares a pod's process namespace (with enough privilege) reads every process's
//! environment through `/proc/<pid>/environ` and its root filesystem through
//! `/proc/<pid>/root`, so the debugger sees every Secret the target's containers hold.
//! The target's own privileges count too: the node's namespaces it joins, privileged
//! containers and added capabilities reach the debugger through the processes it can
//! signal and inspect. Pure: from the target's pod spec, a template or a running pod
//! alike. The report names Secrets, env vars and paths, never their values.

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

use crate::crd::{Exposure, Mount, SecretEnvVar, TokenMount};

/// Where the ServiceAccount token is mounted when it is automounted.
const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Start of the names of shellcar's own debugger containers, as
/// [`crate::naming::container_name`] builds them.
const DEBUGGER_PREFIX: &str = "shellcar-";

/// Start of the name of the volume through which the API server mounts the automounted
/// token into a running pod.
const API_ACCESS_PREFIX: &str = "kube-api-access-";

/// What a debugger beside a pod with spec `spec` can read, per container: init containers
/// first, then containers, in spec order. Containers that expose nothing, and shellcar's
/// own debuggers, are left out.
pub fn report(spec: &PodSpec) -> Vec<Exposure> {
    let token = automounted_token(spec);
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter(|c| !c.name.starts_with(DEBUGGER_PREFIX))
        .map(|c| container(spec, c, token.as_ref()))
        .filter(|e| !is_empty(e))
        .collect()
}

/// The automounted token, or `None` when the pod opts out.
///
/// A pod template has no `kube-api-access-*` volume yet (the API server adds it on
/// creation), so the answer comes from the spec's fields alone and is the same for a
/// template and the pods made from it. A ServiceAccount that itself opts out is not seen
/// here: the token is then reported although it is absent, which errs on the safe side.
fn automounted_token(spec: &PodSpec) -> Option<TokenMount> {
    if spec.automount_service_account_token == Some(false) {
        return None;
    }
    let account = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    Some(TokenMount {
        service_account: account.to_owned(),
        path: TOKEN_PATH.to_owned(),
    })
}

fn container(spec: &PodSpec, c: &Container, token: Option<&TokenMount>) -> Exposure {
    let mut out = Exposure {
        container: c.name.clone(),
        ..Default::default()
    };
    for env in c.env.iter().flatten() {
        if let Some(secret) = env
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            out.secret_env.push(SecretEnvVar {
                name: env.name.clone(),
                secret: secret.name.clone(),
            });
        }
    }
    out.secret_env_from = c
        .env_from
        .iter()
        .flatten()
        .filter_map(|from| from.secret_ref.as_ref().map(|s| s.name.clone()))
        .collect();
    // The API server does not automount the token where the container mounts something
    // else at its path; that mount is then reported as what it is.
    let mut token_path_taken = false;
    for mount in c.volume_mounts.iter().flatten() {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            continue;
        };
        let held = match held(volume, token.is_some()) {
            Held::ApiToken => continue,
            Held::Nothing => None,
            Held::Secrets(source) => Some((&mut out.secret_volumes, source)),
            Held::HostPath(path) => Some((&mut out.host_paths, path)),
        };
        if mount.mount_path.trim_end_matches('/') == TOKEN_PATH {
            token_path_taken = true;
        }
        if let Some((list, source)) = held {
            list.push(Mount {
                volume: volume.name.clone(),
                path: mount.mount_path.clone(),
                source,
            });
        }
    }
    if !token_path_taken {
        out.service_account_token = token.cloned();
    }
    out.host_namespaces = host_namespaces(spec);
    let security = c.security_context.as_ref();
    out.privileged = security.and_then(|s| s.privileged) == Some(true);
    out.added_capabilities = security
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|caps| caps.add.clone())
        .unwrap_or_default();
    out
}

/// The node's namespaces a pod with `spec` joins, by the field that asks for each.
fn host_namespaces(spec: &PodSpec) -> Vec<String> {
    [
        ("hostPID", spec.host_pid),
        ("hostNetwork", spec.host_network),
        ("hostIPC", spec.host_ipc),
    ]
    .into_iter()
    .filter(|(_, on)| *on == Some(true))
    .map(|(field, _)| field.to_owned())
    .collect()
}

/// What a volume holds, as far as the report cares.
enum Held {
    /// The API server's own token volume, reported as the container's token.
    ApiToken,
    /// Secrets or a ServiceAccount token, described as in [`Mount::source`].
    Secrets(String),
    /// The node's path.
    HostPath(String),
    Nothing,
}

fn held(volume: &Volume, token_automounted: bool) -> Held {
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.as_deref().unwrap_or(&volume.name);
        return Held::Secrets(format!("Secret {name}"));
    }
    if let Some(host) = &volume.host_path {
        return Held::HostPath(host.path.clone());
    }
    let Some(projected) = &volume.projected else {
        return Held::Nothing;
    };
    let sources = || projected.sources.iter().flatten();
    let secrets: Vec<&str> = sources()
        .filter_map(|s| s.secret.as_ref().map(|s| s.name.as_str()))
        .collect();
    let has_token = sources().any(|s| s.service_account_token.is_some());
    let trust_bundle = sources().any(|s| s.cluster_trust_bundle.is_some());
    if token_automounted
        && has_token
        && secrets.is_empty()
        && !trust_bundle
        && volume.name.starts_with(API_ACCESS_PREFIX)
    {
        return Held::ApiToken;
    }
    let mut parts = Vec::new();
    match secrets.as_slice() {
        [] => {}
        [one] => parts.push(format!("Secret {one}")),
        many => parts.push(format!("Secrets {}", many.join(", "))),
    }
    if has_token {
        parts.push("a ServiceAccount token".to_owned());
    }
    if parts.is_empty() {
        Held::Nothing
    } else {
        Held::Secrets(parts.join(" and "))
    }
}

fn is_empty(e: &Exposure) -> bool {
    e.secret_env.is_empty()
        && e.secret_env_from.is_empty()
        && e.secret_volumes.is_empty()
        && e.service_account_token.is_none()
        && e.host_paths.is_empty()
        && e.host_namespaces.is_empty()
        && !e.privileged
        && e.added_capabilities.is_empty()
}

#[cfg(test)]
mod tests;
