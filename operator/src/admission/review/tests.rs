use super::*;
use crate::admission::http::{Unreadable, body, parse};
use crate::crd::DebugPolicy;
use crate::k8s::access::Check;
use crate::rules::govern::Surroundings;
use crate::rules::namespaces::Namespaces;
use crate::rules::podsecurity;
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Canned answers, and a record of what was asked.
#[derive(Default)]
struct FakeIo {
    denied: Option<&'static str>,
    dry_run: Option<DryRun>,
    pod_spec: Option<PodSpec>,
    around: Surroundings,
    asked: Mutex<Vec<String>>,
}

impl Io for FakeIo {
    async fn authorize(
        &self,
        requester: &Requester,
        alternatives: &[Vec<Check>],
    ) -> Result<(), access::Error> {
        let mut asked = self.asked.lock().unwrap();
        let answers = alternatives
            .iter()
            .flatten()
            .map(|c| {
                asked.push(format!("{} {}", c.permission.verb, c.permission));
                access::Answer {
                    allowed: Some(c.permission.resource) != self.denied,
                    reason: None,
                }
            })
            .collect();
        access::verdict(requester, alternatives, answers)
    }

    async fn target_pod_spec(&self, _: &DebugSession) -> Result<Option<PodSpec>, kube::Error> {
        Ok(self.pod_spec.clone())
    }

    async fn try_change(
        &self,
        _: &DebugSession,
        _: &Plan,
    ) -> Result<DryRun, crate::session::Error> {
        Ok(self.dry_run.clone().unwrap_or(DryRun::Accepted))
    }

    async fn surroundings(&self, _: &str) -> Result<Surroundings, kube::Error> {
        Ok(self.around.clone())
    }
}

fn webhook(io: FakeIo) -> Webhook<FakeIo> {
    Webhook {
        io,
        policy: Policy {
            default_image: "busybox".to_owned(),
            max_ttl: Duration::from_secs(24 * 3600),
            allowed_images: vec![],
            stopper: None,
            start_deadline: Duration::from_secs(300),
            namespaces: Namespaces::new("shellcar-system", Vec::new()),
        },
        capabilities: Capabilities {
            ephemeral_containers: true,
        },
        stamp: key(),
    }
}

/// The stamp key of the tests' webhook.
fn key() -> Key {
    Key::from_bytes(&[9; crate::rules::stamp::KEY_LEN]).unwrap()
}

/// The admission stamp of `session` (JSON) as it stands.
fn seal_of(session: &Value) -> String {
    let session: DebugSession = serde_json::from_value(session.clone()).unwrap();
    crate::rules::stamp::seal(
        &key(),
        "shop",
        session.metadata.uid.as_deref(),
        session.spec.requester.as_ref().unwrap(),
        session.spec.approval.as_ref(),
    )
}

fn review(operation: &str, object: Value, old: Option<Value>) -> AdmissionRequest<DebugSession> {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "r-1",
            "kind": {"group": "debug.shellcar.dev", "version": "v1alpha1", "kind": "DebugSession"},
            "resource": {"group": "debug.shellcar.dev", "version": "v1alpha1", "resource": "debugsessions"},
            "name": "dbg",
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "dev", "uid": "u-1", "groups": ["devs", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    });
    parse(&serde_json::to_vec(&body).unwrap(), Unreadable::Deny).unwrap()
}

fn session(spec: &str) -> Value {
    json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugSession",
        "metadata": {"name": "dbg", "namespace": "shop", "uid": "s-1"},
        "spec": serde_yaml::from_str::<Value>(spec).unwrap(),
    })
}

/// The response as the handler sends it.
fn as_json(response: AdmissionResponse) -> Value {
    let sent: Value = serde_json::from_slice(&body(&response.into_review())).unwrap();
    assert_eq!(sent["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(sent["kind"], "AdmissionReview");
    sent["response"].clone()
}

/// The JSON Patch in a response, which is sent base64-encoded.
fn patch_of(response: &Value) -> Value {
    let bytes: k8s_openapi::ByteString = serde_json::from_value(response["patch"].clone()).unwrap();
    serde_json::from_slice(&bytes.0).unwrap()
}

#[tokio::test]
async fn mutate_stamps_on_create_and_restores_on_update() {
    let webhook = webhook(FakeIo::default());
    let created = as_json(
        mutate(
            &webhook,
            &review(
                "CREATE",
                session("{target: {kind: Deployment, name: app}, requester: {username: admin}}"),
                None,
            ),
        )
        .await,
    );
    assert_eq!(created["allowed"], true);
    assert_eq!(created["patchType"], "JSONPatch");
    let requester = json!({
        "username": "dev", "uid": "u-1", "groups": ["devs", "system:authenticated"]
    });
    let mut sealed = session("{target: {kind: Deployment, name: app}}");
    sealed["spec"]["requester"] = requester.clone();
    assert_eq!(
        patch_of(&created),
        json!([
            {"op": "add", "path": "/spec/requester", "value": requester},
            {"op": "add", "path": "/metadata/annotations", "value": {
                "debug.shellcar.dev/admitted": seal_of(&sealed)
            }},
        ])
    );
    let stored = session("{target: {kind: Deployment, name: app}, requester: {username: dev}}");
    let updated = as_json(
        mutate(
            &webhook,
            &review(
                "UPDATE",
                session("{target: {kind: Deployment, name: app}, ttl: 2h}"),
                Some(stored.clone()),
            ),
        )
        .await,
    );
    assert_eq!(
        patch_of(&updated),
        json!([{"op": "add", "path": "/spec/requester", "value": {"username": "dev"}}])
    );
    let unchanged =
        as_json(mutate(&webhook, &review("UPDATE", stored.clone(), Some(stored))).await);
    assert!(unchanged.get("patch").is_none());
    assert_eq!(unchanged["uid"], "r-1");
}

const STAMPED: &str = "{target: {kind: Deployment, name: app}, requester: {username: dev, groups: [devs]}, debugger: {env: [{name: PW, valueFrom: {secretKeyRef: {name: db, key: pw}}}]}}";

#[tokio::test]
async fn a_permitted_create_is_allowed_with_warnings() {
    let io = FakeIo {
        pod_spec: Some(
            serde_yaml::from_str("{automountServiceAccountToken: false, containers: [{name: app, env: [{name: K, valueFrom: {secretKeyRef: {name: s, key: k}}}]}]}")
                .unwrap(),
        ),
        ..Default::default()
    };
    let webhook = webhook(io);
    let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        response["warnings"],
        json!([
            "the debugger shares the process namespace and can read env K of container app (from Secret s)"
        ])
    );
    assert_eq!(
        *webhook.io.asked.lock().unwrap(),
        ["patch deployments.apps \"app\"", "get secrets \"db\""]
    );
}

#[tokio::test]
async fn a_create_the_requester_may_not_make_is_denied_naming_the_permission() {
    let webhook = webhook(FakeIo {
        denied: Some("secrets"),
        ..Default::default()
    });
    let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], false);
    assert_eq!(
        response["status"]["message"],
        r#"user "dev" may not get secrets "db" in namespace "shop" (needed by debugger.env PW)"#
    );
}

#[tokio::test]
async fn a_create_without_requester_or_with_a_bad_spec_is_denied() {
    let webhook = webhook(FakeIo::default());
    let none = as_json(
        validate(
            &webhook,
            &review(
                "CREATE",
                session("{target: {kind: Deployment, name: app}}"),
                None,
            ),
        )
        .await,
    );
    assert_eq!(none["allowed"], false);
    assert!(
        none["status"]["message"]
            .as_str()
            .unwrap()
            .contains("mutating webhook")
    );
    let long = as_json(
        validate(
            &webhook,
            &review(
                "CREATE",
                session(
                    "{target: {kind: Deployment, name: app}, ttl: 48h, requester: {username: dev}}",
                ),
                None,
            ),
        )
        .await,
    );
    assert_eq!(long["allowed"], false);
    assert!(
        webhook.io.asked.lock().unwrap().is_empty(),
        "refused before asking"
    );
}

#[tokio::test]
async fn a_dry_run_rejection_is_the_api_servers_message() {
    let webhook = webhook(FakeIo {
        dry_run: Some(DryRun::Rejected(
            "Deployment.apps \"app\" is invalid: spec.template.spec.containers[1].env[0].name: Invalid value: \"1x\"".to_owned(),
        )),
        ..Default::default()
    });
    let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("the API server refuses the change this session makes to Deployment app: Deployment.apps \"app\" is invalid"), "{message}");
}

#[tokio::test]
async fn an_update_may_change_only_the_ttl_and_asks_nothing() {
    let webhook = webhook(FakeIo {
        denied: Some("deployments"),
        ..Default::default()
    });
    let extended = as_json(
        validate(
            &webhook,
            &review(
                "UPDATE",
                session(&STAMPED.replace("requester", "ttl: 3h, requester")),
                Some(session(STAMPED)),
            ),
        )
        .await,
    );
    assert_eq!(extended["allowed"], true, "{extended}");
    let moved = as_json(
        validate(
            &webhook,
            &review(
                "UPDATE",
                session(&STAMPED.replace("name: app", "name: other")),
                Some(session(STAMPED)),
            ),
        )
        .await,
    );
    assert_eq!(moved["allowed"], false);
    assert_eq!(
        moved["status"]["message"],
        "spec.target.name is immutable after creation; only spec.ttl may change: create a new DebugSession instead"
    );
    assert!(webhook.io.asked.lock().unwrap().is_empty());
}

/// A session of requester `jane` in phase `phase` under policy prod, stored as generation
/// 1 with uid s-1, with `annotations`.
fn stored_in(phase: &str, annotations: Value) -> Value {
    let mut s = session("{target: {kind: Deployment, name: app}, requester: {username: jane}}");
    s["metadata"]["annotations"] = annotations;
    s["metadata"]["generation"] = json!(1);
    s["status"] = json!({"phase": phase, "policy": "prod"});
    s
}

/// The approve annotation as `shellcar approve` writes it for the session above.
fn approve_seen(uid: &str, reason: &str) -> Value {
    let seen = json!({"uid": uid, "generation": 1, "reason": reason}).to_string();
    json!({"debug.shellcar.dev/approve": seen})
}

/// Policy prod, requiring approval by `approvers` (JSON, or none), selecting every
/// namespace.
fn approval_policy(approvers: Option<Value>) -> Surroundings {
    let mut spec = json!({"approval": {"required": true}});
    if let Some(approvers) = approvers {
        spec["approval"]["approvers"] = approvers;
    }
    let policy: DebugPolicy = serde_json::from_value(json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": {"name": "prod"},
        "spec": spec,
    }))
    .unwrap();
    Surroundings {
        policies: vec![Arc::new(policy)],
        ..Default::default()
    }
}

#[tokio::test]
async fn an_approval_is_recorded_only_for_someone_else_with_the_verb() {
    let annotated = approve_seen("s-1", "incident 42");
    // The reviewing user is "dev" (group devs), whom policy prod names by group; the
    // requester is "jane".
    let approving = webhook_with(approval_policy(Some(json!({"groups": ["devs"]}))));
    let response = as_json(
        mutate(
            &approving,
            &review(
                "UPDATE",
                stored_in("AwaitingApproval", annotated.clone()),
                Some(stored_in("AwaitingApproval", json!({}))),
            ),
        )
        .await,
    );
    assert_eq!(response["allowed"], true, "{response}");
    let ops = patch_of(&response);
    assert_eq!(ops[0]["path"], "/spec/approval");
    assert_eq!(ops[0]["value"]["approver"], "dev");
    assert_eq!(ops[0]["value"]["decision"], "Approved");
    assert_eq!(ops[0]["value"]["reason"], "incident 42");
    assert_eq!(
        ops[1],
        json!({"op": "remove", "path": "/metadata/annotations/debug.shellcar.dev~1approve"})
    );
    assert_eq!(
        *approving.io.asked.lock().unwrap(),
        ["approve debugsessions.debug.shellcar.dev \"dbg\""]
    );

    let without_verb = webhook(FakeIo {
        denied: Some("debugsessions"),
        around: approval_policy(None),
        ..Default::default()
    });
    let response = as_json(
        mutate(
            &without_verb,
            &review(
                "UPDATE",
                stored_in("AwaitingApproval", annotated.clone()),
                Some(stored_in("AwaitingApproval", json!({}))),
            ),
        )
        .await,
    );
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"user "dev" may not approve debugsessions.debug.shellcar.dev "dbg""#),
        "{response}"
    );

    // Created with the annotation: the requester would approve their own session.
    let mut created = session("{target: {kind: Deployment, name: app}}");
    created["metadata"]["annotations"] = annotated;
    let response = as_json(mutate(&approving, &review("CREATE", created, None)).await);
    assert_eq!(response["allowed"], false);
}

/// The message of a refused approval by "dev" of the session above, stored as `stored`,
/// under `around`; asserts that nothing was asked of the API server.
async fn refused_approval(around: Surroundings, annotated: Value, stored: Value) -> String {
    let webhook = webhook_with(around);
    let response =
        as_json(mutate(&webhook, &review("UPDATE", annotated.clone(), Some(stored))).await);
    assert_eq!(response["allowed"], false, "{response}");
    assert!(webhook.io.asked.lock().unwrap().is_empty());
    response["status"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_approval_outside_the_policys_approvers_or_for_another_session_is_refused() {
    let annotated = stored_in("AwaitingApproval", approve_seen("s-1", "ok"));
    let stored = stored_in("AwaitingApproval", json!({}));
    let message = refused_approval(
        approval_policy(Some(json!({"users": ["lead"], "groups": ["oncall"]}))),
        annotated.clone(),
        stored.clone(),
    )
    .await;
    assert!(
        message.starts_with(r#"user "dev" may not approve session dbg: policy prod names who may in approval.approvers"#),
        "{message}"
    );

    // The session of that name was deleted and created again since the approver saw it.
    let mut recreated = stored.clone();
    recreated["metadata"]["uid"] = json!("s-2");
    let message = refused_approval(approval_policy(None), annotated.clone(), recreated).await;
    assert!(
        message.contains("with uid s-1, which no longer exists"),
        "{message}"
    );
    // Or its ttl changed.
    let mut changed = stored.clone();
    changed["metadata"]["generation"] = json!(2);
    let message = refused_approval(approval_policy(None), annotated.clone(), changed).await;
    assert!(message.contains("(generation 1, now 2)"), "{message}");

    // The policy that holds it is gone.
    let message = refused_approval(Surroundings::default(), annotated, stored).await;
    assert!(message.contains("DebugPolicy prod"), "{message}");
    assert!(message.contains("no longer exists"), "{message}");
}

#[tokio::test]
async fn an_approval_written_by_hand_is_dropped() {
    let webhook = webhook(FakeIo::default());
    let mut forged = session("{target: {kind: Deployment, name: app}}");
    forged["spec"]["approval"] =
        json!({"decision": "Approved", "approver": "boss", "time": "2026-11-24T10:00:00Z"});
    let response = as_json(mutate(&webhook, &review("CREATE", forged.clone(), None)).await);
    let ops = patch_of(&response);
    assert_eq!(ops[1], json!({"op": "remove", "path": "/spec/approval"}));
    let stored = stored_in("AwaitingApproval", json!({}));
    let mut update = stored.clone();
    update["spec"]["approval"] = forged["spec"]["approval"].clone();
    let response = as_json(mutate(&webhook, &review("UPDATE", update, Some(stored))).await);
    assert_eq!(
        patch_of(&response),
        json!([{"op": "remove", "path": "/spec/approval"}])
    );
}

#[tokio::test]
async fn a_create_no_policy_allows_is_denied_with_the_rule_and_policy() {
    let policy: DebugPolicy = serde_json::from_value(json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": {"name": "prod"},
        "spec": {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "maxSessionsPerNamespace": 1},
    }))
    .unwrap();
    let labels: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
    let webhook = webhook(FakeIo {
        around: Surroundings {
            policies: vec![Arc::new(policy)],
            labels: labels.clone(),
            live_sessions: Some(0),
        },
        ..Default::default()
    });
    let sysadmin = "{target: {kind: Deployment, name: app}, requester: {username: dev}, debugger: {profile: SysAdmin}}";
    let response = as_json(validate(&webhook, &review("CREATE", session(sysadmin), None)).await);
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"].as_str().unwrap().starts_with(
            "no DebugPolicy allows this session: profile SysAdmin is not allowed by policies [prod]"
        ),
        "{response}"
    );
    // Nothing was asked of the API server for a session no policy allows.
    assert!(webhook.io.asked.lock().unwrap().is_empty());

    let full = webhook_with(Surroundings {
        policies: webhook.io.around.policies.clone(),
        labels,
        live_sessions: Some(1),
    });
    let response = as_json(validate(&full, &review("CREATE", session(STAMPED), None)).await);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("the namespace already has 1 live sessions"),
        "{response}"
    );
}

#[tokio::test]
async fn a_create_pod_security_forbids_is_denied_naming_the_level() {
    let webhook = webhook_with(Surroundings {
        labels: [(podsecurity::ENFORCE_LABEL.to_owned(), "baseline".to_owned())].into(),
        ..Default::default()
    });
    let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("\"baseline\""), "{message}");
    assert!(
        message.contains("profiles that fit: Baseline, Restricted"),
        "{message}"
    );
}

#[tokio::test]
async fn a_create_in_a_protected_namespace_needs_a_policy_that_names_it() {
    let named: DebugPolicy = serde_json::from_value(json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": {"name": "shop-by-name"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
            "secretEnv": true,
        },
    }))
    .unwrap();
    let everything: DebugPolicy = serde_json::from_value(json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": {"name": "everything"},
        "spec": {"namespaceSelector": {}, "secretEnv": true},
    }))
    .unwrap();
    let labels: BTreeMap<String, String> =
        [("kubernetes.io/metadata.name".to_owned(), "shop".to_owned())].into();
    // An operator whose own namespace is shop.
    let in_shop = |policies: Vec<DebugPolicy>| {
        let mut webhook = webhook_with(Surroundings {
            policies: policies.into_iter().map(Arc::new).collect(),
            labels: labels.clone(),
            live_sessions: Some(0),
        });
        webhook.policy.namespaces = Namespaces::new("shop", Vec::new());
        webhook
    };

    for refusing in [in_shop(Vec::new()), in_shop(vec![everything.clone()])] {
        let response =
            as_json(validate(&refusing, &review("CREATE", session(STAMPED), None)).await);
        assert_eq!(response["allowed"], false);
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("namespace shop is protected: shellcar changes nothing in kube-system or in its own namespace unless a DebugPolicy names the namespace"),
            "{message}"
        );
        assert!(refusing.io.asked.lock().unwrap().is_empty());
    }

    let admitting = in_shop(vec![everything, named]);
    let response = as_json(validate(&admitting, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], true, "{response}");
}

#[tokio::test]
async fn a_create_outside_the_watched_namespaces_is_denied_naming_them() {
    let mut webhook = webhook(FakeIo::default());
    webhook.policy.namespaces = Namespaces::new(
        "shellcar-system",
        vec!["team-b".to_owned(), "team-a".to_owned()],
    );
    let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], false);
    assert_eq!(
        response["status"]["message"],
        "this shellcar watches only namespaces team-a, team-b (--watch-namespaces), so nothing would act on a session in namespace shop; create it in one of those"
    );
    assert!(webhook.io.asked.lock().unwrap().is_empty());

    webhook.policy.namespaces = Namespaces::new("shellcar-system", vec!["shop".to_owned()]);
    let response = as_json(validate(&webhook, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], true, "{response}");
}

fn webhook_with(around: Surroundings) -> Webhook<FakeIo> {
    webhook(FakeIo {
        around,
        ..Default::default()
    })
}

#[tokio::test]
async fn under_a_delegating_policy_the_requester_needs_debug_not_patch() {
    let policy: DebugPolicy = serde_json::from_value(json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": {"name": "prod"},
        "spec": {"access": "Delegated", "secretEnv": true},
    }))
    .unwrap();
    let around = Surroundings {
        policies: vec![Arc::new(policy)],
        labels: BTreeMap::new(),
        live_sessions: Some(0),
    };
    let allowed = webhook_with(around.clone());
    let response = as_json(validate(&allowed, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        *allowed.io.asked.lock().unwrap(),
        ["debug deployments.apps \"app\"", "get secrets \"db\""]
    );
    let refused = webhook(FakeIo {
        denied: Some("deployments"),
        around,
        ..Default::default()
    });
    let response = as_json(validate(&refused, &review("CREATE", session(STAMPED), None)).await);
    assert_eq!(response["allowed"], false);
    assert_eq!(
        response["status"]["message"],
        r#"user "dev" may not debug deployments.apps "app" in namespace "shop" (needed by access Delegated)"#
    );
}

#[tokio::test]
async fn an_approval_is_sealed_with_the_uid_only_on_a_session_whose_stamp_holds() {
    let approving = webhook_with(approval_policy(None));
    let mut stored = stored_in("AwaitingApproval", json!({}));
    let creation_seal = seal_of(&stored);
    stored["metadata"]["annotations"] = json!({"debug.shellcar.dev/admitted": creation_seal});
    let mut annotated = stored.clone();
    annotated["metadata"]["annotations"]["debug.shellcar.dev/approve"] =
        approve_seen("s-1", "incident 42")["debug.shellcar.dev/approve"].clone();
    let response = as_json(
        mutate(
            &approving,
            &review("UPDATE", annotated.clone(), Some(stored.clone())),
        )
        .await,
    );
    assert_eq!(response["allowed"], true, "{response}");
    let ops = patch_of(&response);
    assert_eq!(
        ops[2]["path"],
        "/metadata/annotations/debug.shellcar.dev~1admitted"
    );
    // What the reconciler will read back: the approval sealed with the session's uid.
    let mut approved = stored.clone();
    approved["spec"]["approval"] = ops[0]["value"].clone();
    assert_eq!(ops[2]["value"], seal_of(&approved));
    let approved: DebugSession = serde_json::from_value({
        let mut a = approved.clone();
        a["metadata"]["annotations"]["debug.shellcar.dev/admitted"] = ops[2]["value"].clone();
        a
    })
    .unwrap();
    assert_eq!(crate::rules::stamp::verify(&key(), &approved), Ok(()));

    // A session stored without a stamp that holds (written while the webhook was away)
    // is approved, but not sealed: the reconciler still refuses it.
    let mut forged = stored.clone();
    forged["spec"]["requester"]["groups"] = json!(["system:masters"]);
    let mut annotated = forged.clone();
    annotated["metadata"]["annotations"]["debug.shellcar.dev/approve"] =
        approve_seen("s-1", "incident 42")["debug.shellcar.dev/approve"].clone();
    let response = as_json(mutate(&approving, &review("UPDATE", annotated, Some(forged))).await);
    let ops = patch_of(&response);
    assert!(
        ops.as_array()
            .unwrap()
            .iter()
            .all(|op| op["path"] != "/metadata/annotations/debug.shellcar.dev~1admitted"),
        "{ops}"
    );
}
