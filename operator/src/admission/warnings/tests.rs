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

#[test]
fn host_namespaces_privilege_and_capabilities_are_warned_of() {
    let found = warnings(
        r#"
automountServiceAccountToken: false
hostNetwork: true
containers:
- name: agent
  securityContext: {privileged: true}
- name: proxy
  securityContext: {capabilities: {add: [NET_ADMIN]}}
"#,
    );
    assert_eq!(
        found,
        [
            "the debugger shares the process namespace and can read and signal the processes of privileged container agent",
            "the debugger shares the process namespace and can read and signal the processes of container proxy, which adds capabilities NET_ADMIN",
            "the debugger shares the process namespace with a pod that joins the node's namespaces: hostNetwork",
        ]
    );
}
