//! What the shared process namespace reveals to a debugger, per container of the target.
//!
//! Whoever shares a pod's process namespace (with enough privilege) reads every process's
//! environment through `/proc/<pid>/environ` and its root filesystem through
//! `/proc/<pid>/root`, so the debugger sees every Secret the target's containers hold.
//! Pure: from the target's pod spec, a template or a running pod alike. The report names
//! Secrets, env vars and paths, never their values.

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

use crate::crd::{Exposure, Mount, SecretEnvVar, TokenMount};

/// Where the ServiceAccount token is mounted when it is automounted.
pub const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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
    out
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_of(yaml: &str) -> Vec<Exposure> {
        report(&serde_yaml::from_str(yaml).unwrap())
    }

    fn token(account: &str) -> Option<TokenMount> {
        Some(TokenMount {
            service_account: account.to_owned(),
            path: TOKEN_PATH.to_owned(),
        })
    }

    fn mount(volume: &str, path: &str, source: &str) -> Mount {
        Mount {
            volume: volume.to_owned(),
            path: path.to_owned(),
            source: source.to_owned(),
        }
    }

    #[test]
    fn a_plain_pod_exposes_only_the_default_token_in_every_container() {
        let found = report_of(
            "{initContainers: [{name: init}], containers: [{name: app, env: [{name: A, value: b}]}]}",
        );
        let expected: Vec<Exposure> = ["init", "app"]
            .map(|c| Exposure {
                container: c.to_owned(),
                service_account_token: token("default"),
                ..Default::default()
            })
            .into();
        assert_eq!(found, expected);
        let opted_out = "{automountServiceAccountToken: false, containers: [{name: app}]}";
        assert_eq!(report_of(opted_out), []);
    }

    #[test]
    fn secret_env_is_named_never_its_value() {
        let found = report_of(
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
- name: quiet
  env: [{name: TOKEN, value: s3cr3t}]
"#,
        );
        let env = |name: &str, secret: &str| SecretEnvVar {
            name: name.to_owned(),
            secret: secret.to_owned(),
        };
        assert_eq!(
            found,
            [
                Exposure {
                    container: "migrate".to_owned(),
                    secret_env: vec![env("DB_URL", "db")],
                    ..Default::default()
                },
                Exposure {
                    container: "app".to_owned(),
                    secret_env: vec![env("PW", "db")],
                    secret_env_from: vec!["api-keys".to_owned()],
                    ..Default::default()
                },
            ]
        );
        let text = serde_json::to_string(&found).unwrap();
        assert!(
            !text.contains("s3cr3t") && !text.contains("LEVEL"),
            "{text}"
        );
    }

    #[test]
    fn secret_projected_and_host_path_volumes_with_their_mounts() {
        let found = report_of(
            r#"
serviceAccountName: app
containers:
- name: app
  volumeMounts:
  - {name: creds, mountPath: /etc/creds}
  - {name: bundle, mountPath: /etc/bundle}
  - {name: vault, mountPath: /vault}
  - {name: logs, mountPath: /host/log}
  - {name: cache, mountPath: /cache}
  - {name: settings, mountPath: /etc/settings}
- name: sidecar
  volumeMounts: [{name: creds, mountPath: /creds}]
volumes:
- {name: creds, secret: {secretName: db}}
- name: bundle
  projected: {sources: [{secret: {name: tls}}, {secret: {name: ca}}, {configMap: {name: ca}}]}
- name: vault
  projected: {sources: [{secret: {name: role}}, {serviceAccountToken: {path: t, audience: vault}}]}
- {name: logs, hostPath: {path: /var/log}}
- {name: cache, emptyDir: {}}
- name: settings
  projected: {sources: [{configMap: {name: settings}}]}
- {name: unmounted, secret: {secretName: other}}
"#,
        );
        assert_eq!(
            found,
            [
                Exposure {
                    container: "app".to_owned(),
                    secret_volumes: vec![
                        mount("creds", "/etc/creds", "Secret db"),
                        mount("bundle", "/etc/bundle", "Secrets tls, ca"),
                        mount("vault", "/vault", "Secret role and a ServiceAccount token"),
                    ],
                    service_account_token: token("app"),
                    host_paths: vec![mount("logs", "/host/log", "/var/log")],
                    ..Default::default()
                },
                Exposure {
                    container: "sidecar".to_owned(),
                    secret_volumes: vec![mount("creds", "/creds", "Secret db")],
                    service_account_token: token("app"),
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn a_template_and_its_running_pod_give_the_same_answer() {
        let template = r#"
serviceAccountName: web
containers:
- {name: app, volumeMounts: [{name: data, mountPath: /data}]}
- {name: sidecar}
volumes: [{name: data, emptyDir: {}}]
"#;
        let running = r#"
serviceAccountName: web
nodeName: node-1
containers:
- name: app
  volumeMounts:
  - {name: data, mountPath: /data}
  - {name: kube-api-access-x7k2p, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
- name: sidecar
  volumeMounts:
  - {name: kube-api-access-x7k2p, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
volumes:
- {name: data, emptyDir: {}}
- name: kube-api-access-x7k2p
  projected:
    sources:
    - serviceAccountToken: {path: token, expirationSeconds: 3607}
    - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
    - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
"#;
        let expected: Vec<Exposure> = ["app", "sidecar"]
            .map(|c| Exposure {
                container: c.to_owned(),
                service_account_token: token("web"),
                ..Default::default()
            })
            .into();
        assert_eq!(report_of(template), expected);
        assert_eq!(report_of(running), expected);
    }

    #[test]
    fn a_token_projected_by_hand_is_a_volume_not_the_automounted_token() {
        let found = report_of(
            r#"
automountServiceAccountToken: false
containers:
- name: app
  volumeMounts: [{name: kube-api-access-mine, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]
volumes:
- {name: kube-api-access-mine, projected: {sources: [{serviceAccountToken: {path: token}}]}}
"#,
        );
        assert_eq!(
            found,
            [Exposure {
                container: "app".to_owned(),
                secret_volumes: vec![mount(
                    "kube-api-access-mine",
                    TOKEN_PATH,
                    "a ServiceAccount token"
                )],
                ..Default::default()
            }]
        );
    }

    #[test]
    fn a_volume_of_its_own_at_the_token_path_replaces_the_token() {
        let found = report_of(
            r#"
containers:
- name: app
  volumeMounts: [{name: own, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]
volumes: [{name: own, secret: {secretName: other-account}}]
"#,
        );
        assert_eq!(
            found,
            [Exposure {
                container: "app".to_owned(),
                secret_volumes: vec![mount("own", TOKEN_PATH, "Secret other-account")],
                ..Default::default()
            }]
        );
    }

    #[test]
    fn debugger_containers_are_left_out() {
        let debugger = crate::naming::container_name("web-debug");
        let found = report_of(&format!(
            r#"
containers:
- {{name: app}}
- name: {debugger}
  envFrom: [{{secretRef: {{name: api-keys}}}}]
"#
        ));
        let names: Vec<&str> = found.iter().map(|e| e.container.as_str()).collect();
        assert_eq!(names, ["app"]);
    }
}
