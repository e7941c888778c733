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

#[test]
fn the_targets_own_privileges_are_reported() {
    let found = report_of(
        r#"
automountServiceAccountToken: false
hostNetwork: true
hostIPC: true
containers:
- name: agent
  securityContext: {privileged: true}
- name: proxy
  securityContext: {capabilities: {add: [NET_ADMIN, NET_RAW], drop: [ALL]}}
"#,
    );
    let namespaces = vec!["hostNetwork".to_owned(), "hostIPC".to_owned()];
    assert_eq!(
        found,
        [
            Exposure {
                container: "agent".to_owned(),
                host_namespaces: namespaces.clone(),
                privileged: true,
                ..Default::default()
            },
            Exposure {
                container: "proxy".to_owned(),
                host_namespaces: namespaces,
                added_capabilities: vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()],
                ..Default::default()
            },
        ]
    );
}
