//! What the shared process namespace exposes to the debugger, as admission warnings that
//! kubectl prints as `Warning:` lines.
//!
//! A process's environment and root filesystem are readable through `/proc/<pid>/` by
//! whoever shares its process namespace (with enough privilege), so the debugger can read
//! every secret the target's containers hold. Pure: from the target's pod spec. Warnings
//! name secrets and environment variables, never their values.

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

/// Where the ServiceAccount token is mounted when it is automounted.
const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const PREFIX: &str = "the debugger shares the process namespace and can read";

/// Warnings on what a debugger beside a pod with spec `spec` can read.
pub fn exposure(spec: &PodSpec) -> Vec<String> {
    let mut out = Vec::new();
    let containers = || {
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
    };
    for c in containers() {
        env_warnings(c, &mut out);
    }
    let token_automounted = spec.automount_service_account_token != Some(false);
    for volume in spec.volumes.iter().flatten() {
        let Some(what) = describe(volume, token_automounted) else {
            continue;
        };
        for c in containers() {
            for mount in c.volume_mounts.iter().flatten() {
                if mount.name == volume.name {
                    out.push(format!(
                        "{PREFIX} {what} at {} in container {}",
                        mount.mount_path, c.name
                    ));
                }
            }
        }
    }
    if token_automounted {
        let account = spec
            .service_account_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        out.push(format!(
            "{PREFIX} the token of ServiceAccount {account} at {TOKEN_PATH}"
        ));
    }
    out
}

fn env_warnings(c: &Container, out: &mut Vec<String>) {
    for env in c.env.iter().flatten() {
        if let Some(secret) = env
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            out.push(format!(
                "{PREFIX} env {} of container {} (from Secret {})",
                env.name, c.name, secret.name
            ));
        }
    }
    for from in c.env_from.iter().flatten() {
        if let Some(secret) = &from.secret_ref {
            out.push(format!(
                "{PREFIX} the env of container {} from every key of Secret {}",
                c.name, secret.name
            ));
        }
    }
}

/// What a volume holds that matters, or `None` for volumes that hold no secret.
fn describe(volume: &Volume, token_automounted: bool) -> Option<String> {
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.as_deref().unwrap_or(&volume.name);
        return Some(format!("Secret {name} (volume {})", volume.name));
    }
    if let Some(projected) = &volume.projected {
        let sources = projected.sources.iter().flatten();
        let secrets: Vec<&str> = sources
            .clone()
            .filter_map(|s| s.secret.as_ref().map(|s| s.name.as_str()))
            .collect();
        let only_token = sources
            .clone()
            .all(|s| s.secret.is_none() && s.cluster_trust_bundle.is_none())
            && sources.clone().any(|s| s.service_account_token.is_some());
        // The API server's own kube-api-access volume: reported once, as the token.
        if only_token && token_automounted && volume.name.starts_with("kube-api-access-") {
            return None;
        }
        let mut what = format!("projected volume {}", volume.name);
        if !secrets.is_empty() {
            what.push_str(&format!(" (Secrets {})", secrets.join(", ")));
        } else if sources.clone().any(|s| s.service_account_token.is_some()) {
            what.push_str(" (a ServiceAccount token)");
        }
        return Some(what);
    }
    volume
        .host_path
        .as_ref()
        .map(|h| format!("hostPath {} (volume {})", h.path, volume.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PodSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_plain_pod_exposes_only_the_default_token() {
        let plain = spec("containers: [{name: app, image: nginx, env: [{name: A, value: b}]}]");
        assert_eq!(
            exposure(&plain),
            [
                "the debugger shares the process namespace and can read the token of ServiceAccount default at /var/run/secrets/kubernetes.io/serviceaccount"
            ]
        );
        let no_token = spec("{automountServiceAccountToken: false, containers: [{name: app}]}");
        assert!(exposure(&no_token).is_empty());
    }

    #[test]
    fn secret_env_is_named_never_its_value() {
        let s = spec(
            r#"
automountServiceAccountToken: false
initContainers:
- name: migrate
  env: [{name: DB_URL, valueFrom: {secretKeyRef: {name: db, key: url}}}]
containers:
- name: app
  env:
  - {name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}
  - {name: LEVEL, valueFrom: {configMapKeyRef: {name: settings, key: level}}}
  - {name: TOKEN, value: s3cr3t}
  envFrom: [{secretRef: {name: api-keys}}, {configMapRef: {name: settings}}]
"#,
        );
        let warnings = exposure(&s);
        assert_eq!(
            warnings,
            [
                "the debugger shares the process namespace and can read env DB_URL of container migrate (from Secret db)",
                "the debugger shares the process namespace and can read env PW of container app (from Secret db)",
                "the debugger shares the process namespace and can read the env of container app from every key of Secret api-keys",
            ]
        );
        assert!(
            !warnings
                .iter()
                .any(|w| w.contains("s3cr3t") || w.contains("LEVEL"))
        );
    }

    #[test]
    fn secret_projected_and_host_path_volumes_with_their_mounts() {
        let s = spec(
            r#"
serviceAccountName: app
containers:
- name: app
  volumeMounts:
  - {name: creds, mountPath: /etc/creds}
  - {name: bundle, mountPath: /etc/bundle}
  - {name: logs, mountPath: /host/log}
  - {name: cache, mountPath: /cache}
- name: sidecar
  volumeMounts: [{name: creds, mountPath: /creds}]
volumes:
- {name: creds, secret: {secretName: db}}
- name: bundle
  projected: {sources: [{secret: {name: tls}}, {configMap: {name: ca}}]}
- {name: logs, hostPath: {path: /var/log}}
- {name: cache, emptyDir: {}}
- name: unmounted
  secret: {secretName: other}
"#,
        );
        assert_eq!(
            exposure(&s),
            [
                "the debugger shares the process namespace and can read Secret db (volume creds) at /etc/creds in container app",
                "the debugger shares the process namespace and can read Secret db (volume creds) at /creds in container sidecar",
                "the debugger shares the process namespace and can read projected volume bundle (Secrets tls) at /etc/bundle in container app",
                "the debugger shares the process namespace and can read hostPath /var/log (volume logs) at /host/log in container app",
                "the debugger shares the process namespace and can read the token of ServiceAccount app at /var/run/secrets/kubernetes.io/serviceaccount",
            ]
        );
    }

    #[test]
    fn the_api_servers_token_volume_is_reported_once_as_the_token() {
        let s = spec(
            r#"
containers:
- name: app
  volumeMounts: [{name: kube-api-access-x7k2p, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]
volumes:
- name: kube-api-access-x7k2p
  projected:
    sources:
    - serviceAccountToken: {path: token, expirationSeconds: 3607}
    - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
    - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
"#,
        );
        let warnings = exposure(&s);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("the token of ServiceAccount default"));
    }

    #[test]
    fn a_token_projected_by_hand_is_its_own_warning() {
        let s = spec(
            r#"
automountServiceAccountToken: false
containers: [{name: app, volumeMounts: [{name: vault, mountPath: /vault}]}]
volumes:
- {name: vault, projected: {sources: [{serviceAccountToken: {path: t, audience: vault}}]}}
"#,
        );
        assert_eq!(
            exposure(&s),
            [
                "the debugger shares the process namespace and can read projected volume vault (a ServiceAccount token) at /vault in container app"
            ]
        );
    }
}
