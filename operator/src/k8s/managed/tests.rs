use super::*;

fn entries(yaml: &str) -> Vec<ManagedFieldsEntry> {
    serde_yaml::from_str(yaml).unwrap()
}

fn intent() -> Value {
    serde_yaml::from_str(
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
        env: [{name: A, value: b}]
        securityContext: {capabilities: {add: [SYS_PTRACE]}}
        stdin: true
        tty: true
"#,
    )
    .unwrap()
}

/// What the API server records for the intent above, beside another manager's field.
const OWNED: &str = r#"
- manager: kubectl-client-side-apply
  operation: Update
  fieldsV1: {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:name": {}}}}}}}
- manager: shellcar.dev/dbg
  operation: Apply
  fieldsV1:
    f:spec:
      f:template:
        f:metadata:
          f:annotations: {f:debug.shellcar.dev/shellcar-dbg-1: {}}
          f:labels: {f:debug.shellcar.dev/debugged: {}}
        f:spec:
          f:containers:
            k:{"name":"shellcar-dbg-1"}:
              .: {}
              f:command: {}
              f:env:
                k:{"name":"A"}: {.: {}, f:name: {}, f:value: {}}
              f:image: {}
              f:name: {}
              f:securityContext: {f:capabilities: {f:add: {}}}
              f:stdin: {}
              f:tty: {}
          f:shareProcessNamespace: {}
"#;

/// The Deployment's content after the apply, with the API server's defaults and the
/// user's own container.
fn live() -> Value {
    serde_yaml::from_str(
        r#"
spec:
  replicas: 1
  template:
    metadata:
      labels: {app: web, debug.shellcar.dev/debugged: "true"}
      annotations: {debug.shellcar.dev/shellcar-dbg-1: dbg}
    spec:
      shareProcessNamespace: true
      restartPolicy: Always
      containers:
      - {name: nginx, image: nginx}
      - name: shellcar-dbg-1
        image: busybox
        imagePullPolicy: Always
        command: [sh, -c, "while true; do sh; done"]
        env: [{name: A, value: b}]
        securityContext: {capabilities: {add: [SYS_PTRACE]}}
        stdin: true
        tty: true
        terminationMessagePath: /dev/termination-log
"#,
    )
    .unwrap()
}

#[test]
fn an_applied_intent_holds() {
    assert!(apply_holds(
        &intent(),
        &live(),
        &entries(OWNED),
        "shellcar.dev/dbg"
    ));
}

#[test]
fn another_manager_or_none_does_not_count() {
    assert!(!apply_holds(
        &intent(),
        &live(),
        &entries(OWNED),
        "shellcar.dev/other"
    ));
    assert!(!apply_holds(&intent(), &live(), &[], "shellcar.dev/dbg"));
}

#[test]
fn a_changed_value_or_a_changed_set_of_fields_needs_the_apply() {
    let managed = entries(OWNED);
    // Someone changed the debugger's image.
    let mut changed = live();
    changed["spec"]["template"]["spec"]["containers"][1]["image"] = json!("alpine");
    assert!(!apply_holds(
        &intent(),
        &changed,
        &managed,
        "shellcar.dev/dbg"
    ));
    // The debugger was removed from the template.
    let mut removed = live();
    removed["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .pop();
    assert!(!apply_holds(
        &intent(),
        &removed,
        &managed,
        "shellcar.dev/dbg"
    ));
    // The intent no longer claims the shared process namespace: the apply must give
    // it up.
    let mut without = intent();
    without["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("shareProcessNamespace");
    assert!(!apply_holds(
        &without,
        &live(),
        &managed,
        "shellcar.dev/dbg"
    ));
    // The intent adds an env var the manager does not own yet.
    let mut more = intent();
    more["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "B", "value": "c"}));
    assert!(!apply_holds(&more, &live(), &managed, "shellcar.dev/dbg"));
}

#[test]
fn metadata_beside_the_name_counts() {
    let mark = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "web-1", "labels": {"debugged": "true"}, "annotations": {"s/c": "dbg"},
    }});
    let owned = entries(
        r#"
- manager: shellcar.dev/dbg
  operation: Apply
  fieldsV1: {"f:metadata": {"f:labels": {"f:debugged": {}}, "f:annotations": {"f:s/c": {}}}}
"#,
    );
    let live = json!({"metadata": {"name": "web-1", "uid": "u",
        "labels": {"app": "web", "debugged": "true"}, "annotations": {"s/c": "dbg"}}});
    assert!(apply_holds(&mark, &live, &owned, "shellcar.dev/dbg"));
    let unmarked = json!({"metadata": {"name": "web-1", "labels": {"app": "web"}}});
    assert!(!apply_holds(&mark, &unmarked, &owned, "shellcar.dev/dbg"));
}

#[test]
fn keyed_items_and_maps_are_named_as_the_api_server_names_them() {
    let set = field_set(&json!({"spec": {"containers": [{"name": "c", "command": ["a"]}]}}));
    assert_eq!(
        set,
        json!({"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
            ".": {}, "f:name": {}, "f:command": {},
        }}}})
    );
}
