//! What Sidecar mode changes: the debugger container and the server-side apply intents
//! that add it to a pod template and take it away again.
//!
//! Everything here is pure: it returns objects and JSON, and the reconciler sends them.

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::{Value, json};

use crate::crd::{Debugger, TargetKind};
use crate::naming;
use crate::profile;

/// The default entrypoint: a shell that is started again when the person attached to it
/// leaves with Ctrl-D, so that detaching does not restart the container.
pub fn default_command() -> Vec<String> {
    ["sh", "-c", "while true; do sh; done"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// The debugger container named `name`, built from the session's debugger spec.
pub fn debugger_container(debugger: &Debugger, name: &str, default_image: &str) -> Container {
    let command = match (&debugger.command, &debugger.args) {
        (Some(command), _) => Some(command.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(default_command()),
    };
    Container {
        name: name.to_owned(),
        image: Some(
            debugger
                .image
                .clone()
                .unwrap_or_else(|| default_image.to_owned()),
        ),
        command,
        args: debugger.args.clone(),
        env: debugger.env.clone(),
        resources: debugger.resources.clone(),
        security_context: profile::security_context(debugger.profile),
        // `kubectl attach -it` needs both.
        stdin: Some(true),
        tty: Some(true),
        ..Default::default()
    }
}

const SHARE_PROCESS_NAMESPACE: [&str; 4] =
    ["f:spec", "f:template", "f:spec", "f:shareProcessNamespace"];

/// True when a field manager that `pred` accepts owns the field at `path`.
fn owned_by(managed: &[ManagedFieldsEntry], path: &[&str], pred: impl Fn(&str) -> bool) -> bool {
    managed.iter().any(|entry| {
        entry.manager.as_deref().is_some_and(&pred)
            && entry.fields_v1.as_ref().is_some_and(|fields| {
                path.iter()
                    .try_fold(&fields.0, |node, key| node.get(key))
                    .is_some()
            })
    })
}

/// Whether a session's intent should claim `shareProcessNamespace: true`.
///
/// Claim it when the template does not share yet, or when another shellcar session already
/// holds it (sharing ownership keeps it until the last session ends). Do not claim a `true`
/// that only the user set: it must survive teardown even if the user's manager is missing
/// from `managedFields`, which happens for objects written before field tracking.
pub fn claims_share_process_namespace(
    current: Option<bool>,
    managed: &[ManagedFieldsEntry],
) -> bool {
    current != Some(true)
        || owned_by(
            managed,
            &SHARE_PROCESS_NAMESPACE,
            naming::is_session_manager,
        )
}

/// True when `manager` owns any field of the object, i.e. a session has something to undo.
pub fn has_fields(managed: &[ManagedFieldsEntry], manager: &str) -> bool {
    managed.iter().any(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0.as_object().is_some_and(|o| !o.is_empty()))
    })
}

/// The intent of one session on a workload: its container, the shared process namespace,
/// the shared `debugged` label and an annotation naming the session.
pub fn sidecar_intent(
    kind: TargetKind,
    name: &str,
    session: &str,
    container: &Container,
    share_process_namespace: bool,
) -> Value {
    let mut pod_spec = json!({ "containers": [container] });
    if share_process_namespace {
        pod_spec["shareProcessNamespace"] = json!(true);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind.as_str(),
        "metadata": { "name": name },
        "spec": {
            "template": {
                "metadata": {
                    "labels": { naming::DEBUGGED_LABEL: "true" },
                    "annotations": { naming::session_annotation(&container.name): session },
                },
                "spec": pod_spec,
            }
        }
    })
}

/// The empty intent that, applied with a session's field manager, removes every field
/// that session owns and nothing that anyone else owns.
pub fn empty_intent(kind: TargetKind, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": kind.as_str(),
        "metadata": { "name": name },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Profile;

    fn managed(yaml: &str) -> Vec<ManagedFieldsEntry> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn default_debugger_is_an_attachable_looping_shell() {
        let c = debugger_container(&Debugger::default(), "shellcar-x-1", "busybox");
        let c = serde_json::to_value(c).unwrap();
        assert_eq!(
            c,
            json!({
                "name": "shellcar-x-1",
                "image": "busybox",
                "command": ["sh", "-c", "while true; do sh; done"],
                "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}},
                "stdin": true,
                "tty": true,
            })
        );
    }

    #[test]
    fn user_command_args_env_and_profile_are_kept() {
        let debugger: Debugger = serde_yaml::from_str(
            r#"
image: nicolaka/netshoot
args: ["-l"]
profile: NetAdmin
env: [{name: A, value: b}]
resources: {limits: {memory: 64Mi}}
"#,
        )
        .unwrap();
        let c = debugger_container(&debugger, "c", "busybox");
        assert_eq!(c.image.as_deref(), Some("nicolaka/netshoot"));
        assert_eq!(c.command, None, "args alone keep the image's entrypoint");
        assert_eq!(c.args, Some(vec!["-l".to_owned()]));
        assert_eq!(c.env.unwrap()[0].name, "A");
        assert!(c.resources.unwrap().limits.unwrap().contains_key("memory"));
        assert_eq!(
            c.security_context.unwrap().capabilities.unwrap().add,
            Some(vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()])
        );
        let restricted = Debugger {
            profile: Profile::Restricted,
            command: Some(vec!["top".to_owned()]),
            ..Default::default()
        };
        let c = debugger_container(&restricted, "c", "busybox");
        assert_eq!(c.command, Some(vec!["top".to_owned()]));
        assert_eq!(c.security_context.unwrap().run_as_non_root, Some(true));
    }

    #[test]
    fn sidecar_intent_is_exactly_the_sessions_fields() {
        let c = debugger_container(&Debugger::default(), "shellcar-dbg-1", "busybox");
        let intent = sidecar_intent(TargetKind::Deployment, "web", "dbg", &c, true);
        let expected: Value = serde_yaml::from_str(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata:
      labels: {debug.shellcar.dev/debugged: "true"}
      annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    spec:
      shareProcessNamespace: true
      containers:
      - name: shellcar-dbg-1
        image: busybox
        command: [sh, -c, "while true; do sh; done"]
        securityContext: {capabilities: {add: [SYS_PTRACE]}}
        stdin: true
        tty: true
"#,
        )
        .unwrap();
        assert_eq!(intent, expected);
        let without = sidecar_intent(TargetKind::StatefulSet, "db", "dbg", &c, false);
        assert_eq!(without["kind"], "StatefulSet");
        assert!(
            without["spec"]["template"]["spec"]
                .get("shareProcessNamespace")
                .is_none()
        );
    }

    #[test]
    fn empty_intent_names_only_the_object() {
        assert_eq!(
            empty_intent(TargetKind::DaemonSet, "agent"),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"}})
        );
    }

    const USER_SET_SHARING: &str = r#"
- manager: kubectl-client-side-apply
  operation: Update
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:shareProcessNamespace": {}}}}}
"#;

    #[test]
    fn sharing_is_claimed_when_absent_or_held_by_a_session() {
        assert!(claims_share_process_namespace(None, &[]));
        assert!(claims_share_process_namespace(Some(false), &[]));
        let held = managed(
            r#"
- manager: shellcar.dev/other
  operation: Apply
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:shareProcessNamespace": {}}}}}
"#,
        );
        assert!(claims_share_process_namespace(Some(true), &held));
    }

    #[test]
    fn a_users_sharing_is_never_claimed() {
        assert!(!claims_share_process_namespace(
            Some(true),
            &managed(USER_SET_SHARING)
        ));
        // no managedFields at all: still the user's
        assert!(!claims_share_process_namespace(Some(true), &[]));
    }

    #[test]
    fn has_fields_sees_only_the_managers_apply_entries() {
        let entries = managed(
            r#"
- manager: shellcar.dev/a
  operation: Apply
  fieldsV1: {"f:spec": {}}
- manager: shellcar.dev/b
  operation: Apply
  fieldsV1: {}
"#,
        );
        assert!(has_fields(&entries, "shellcar.dev/a"));
        assert!(!has_fields(&entries, "shellcar.dev/b"));
        assert!(!has_fields(&entries, "shellcar.dev/c"));
        assert!(!has_fields(
            &managed(USER_SET_SHARING),
            "kubectl-client-side-apply"
        ));
    }
}
