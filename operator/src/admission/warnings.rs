//! What the shared process namespace exposes to the debugger, as admission warnings that
//! kubectl prints as `Warning:` lines.
//!
//! Renders [`crate::exposure::report`]: one line per Secret env var, `envFrom` Secret and
//! mounted Secret or hostPath volume, and one line per ServiceAccount token naming the
//! containers that hold it. Names, never values.

use k8s_openapi::api::core::v1::PodSpec;

use crate::crd::{Exposure, TokenMount};

const PREFIX: &str = "the debugger shares the process namespace and can read";

/// Warnings on what a debugger beside a pod with spec `spec` can read.
pub fn exposure(spec: &PodSpec) -> Vec<String> {
    let report = crate::exposure::report(spec);
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
mod tests {
    use super::*;

    fn warnings(yaml: &str) -> Vec<String> {
        exposure(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn a_plain_pod_exposes_only_the_default_token() {
        let plain = warnings("containers: [{name: app, image: nginx, env: [{name: A, value: b}]}]");
        assert_eq!(
            plain,
            [
                "the debugger shares the process namespace and can read the token of ServiceAccount default at /var/run/secrets/kubernetes.io/serviceaccount in container app"
            ]
        );
        assert!(
            warnings("{automountServiceAccountToken: false, containers: [{name: app}]}").is_empty()
        );
    }

    #[test]
    fn secret_env_is_named_never_its_value() {
        let found = warnings(
            r#"
automountServiceAccountToken: false
initContainers:
- name: migrate
  env: [{name: DB_URL, valueFrom: {secretKeyRef: {name: db, key: url}}}]
containers:
- name: app
  env:
  - {name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}
  - {name: TOKEN, value: s3cr3t}
  envFrom: [{secretRef: {name: api-keys}}, {configMapRef: {name: settings}}]
"#,
        );
        assert_eq!(
            found,
            [
                "the debugger shares the process namespace and can read env DB_URL of container migrate (from Secret db)",
                "the debugger shares the process namespace and can read env PW of container app (from Secret db)",
                "the debugger shares the process namespace and can read the env of container app from every key of Secret api-keys",
            ]
        );
        assert!(!found.iter().any(|w| w.contains("s3cr3t")));
    }

    #[test]
    fn volumes_with_their_mounts_then_one_token_line() {
        let found = warnings(
            r#"
serviceAccountName: app
containers:
- name: app
  volumeMounts:
  - {name: creds, mountPath: /etc/creds}
  - {name: bundle, mountPath: /etc/bundle}
  - {name: logs, mountPath: /host/log}
- name: sidecar
  volumeMounts: [{name: creds, mountPath: /creds}]
volumes:
- {name: creds, secret: {secretName: db}}
- name: bundle
  projected: {sources: [{secret: {name: tls}}, {serviceAccountToken: {path: t, audience: vault}}]}
- {name: logs, hostPath: {path: /var/log}}
"#,
        );
        assert_eq!(
            found,
            [
                "the debugger shares the process namespace and can read Secret db (volume creds) at /etc/creds in container app",
                "the debugger shares the process namespace and can read Secret tls and a ServiceAccount token (volume bundle) at /etc/bundle in container app",
                "the debugger shares the process namespace and can read hostPath /var/log (volume logs) at /host/log in container app",
                "the debugger shares the process namespace and can read Secret db (volume creds) at /creds in container sidecar",
                "the debugger shares the process namespace and can read the token of ServiceAccount app at /var/run/secrets/kubernetes.io/serviceaccount in containers app, sidecar",
            ]
        );
    }

    #[test]
    fn the_api_servers_token_volume_is_reported_once_as_the_token() {
        let found = warnings(
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
"#,
        );
        assert_eq!(
            found,
            [
                "the debugger shares the process namespace and can read the token of ServiceAccount default at /var/run/secrets/kubernetes.io/serviceaccount in container app"
            ]
        );
    }
}
