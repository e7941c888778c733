//! The mock API server that the reconcile tests (in [`super::tests`]) drive
//! [`reconcile`] against, and what they build sessions and contexts from. A test plays the
//! API server: it checks, in order, every request reconcile sends (method, path with
//! query, the part of the body that matters) and answers each as an API server would. A
//! request the test does not expect, or one that does not come, fails the test.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, Response, header};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::SendResponse;

use crate::crd::{DebugPolicy, DebugSession, DebugSessionStatus, Requester, TargetKind};
use crate::mock_api::{self, ApiHandle, status_body};
use crate::rules::Policy;
use crate::rules::stamp::{self, Key};
use crate::runtime::telemetry::Metrics;
use crate::session::context::Caches;
use crate::session::context::Context;
use crate::session::context::Synced;
use crate::session::context::Workloads;
use crate::session::error::Error;
use crate::session::reconcile::reconcile;
use crate::session::status;
use crate::{k8s::workload, naming};

const NS: &str = "shop";
pub(super) const SESSION: &str = "dbg";
const SESSION_UID: &str = "5e55-1000";
pub(super) const DEPLOYMENT_UID: &str = "d3b1-0001";
/// The UID of ReplicaSet web-5d8b, Deployment web's, which controls its pods.
const REPLICA_SET_UID: &str = "r5e7-0001";
/// The query of a server-side apply by the session's field manager `shellcar.dev/dbg`.
/// kube starts every query that has parameters with `&`, which the API server ignores.
pub(super) const SESSION_APPLY: &str = "?&fieldManager=shellcar.dev%2Fdbg";

const DISCOVERY: &str = "/api/v1";
pub(super) const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/web";
pub(super) const PODS: &str = "/api/v1/namespaces/shop/pods";
pub(super) const SESSIONS: &str =
    "/apis/debug.shellcar.dev/v1alpha1/namespaces/shop/debugsessions/dbg";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events?";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews?";
pub(super) const REQUESTER: &str = "jane";

pub(super) const APPLY: &str = "application/apply-patch+yaml";
pub(super) const JSON_PATCH: &str = "application/json-patch+json";

/// How long a test waits for a request it expects, or for reconcile to finish.
const PATIENCE: Duration = Duration::from_secs(5);

/// The other end of the client: receives each request and answers it.
pub(super) struct ApiServer(ApiHandle);

/// One request received, waiting for its answer.
pub(super) struct Call {
    pub(super) content_type: Option<String>,
    pub(super) body: Value,
    send: SendResponse<Response<Body>>,
}

impl Call {
    /// Answers with status `code` and `body`.
    pub(super) fn reply(self, code: u16, body: &Value) {
        mock_api::reply(self.send, code, body);
    }

    /// Answers 200 with `body`.
    pub(super) fn ok(self, body: &Value) {
        self.reply(200, body);
    }

    /// Answers 404: `resource` `name` does not exist.
    pub(super) fn not_found(self, resource: &str, name: &str) {
        self.reply(
            404,
            &status_body(404, "NotFound", &format!("{resource} \"{name}\" not found")),
        );
    }
}

impl ApiServer {
    /// The next request, which must be `method` on `uri` (path and query, exactly).
    pub(super) async fn expect(&mut self, method: Method, uri: &str) -> Call {
        let (request, send) =
            mock_api::next_request(&mut self.0, PATIENCE, &format!("{method} {uri}")).await;
        let sent = format!("{} {}", request.method(), request.uri());
        assert_eq!(
            sent,
            format!("{method} {uri}"),
            "the request sent (left) is not the one expected (right)"
        );
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = mock_api::json_body(request.into_body()).await;
        Call {
            content_type,
            body,
            send,
        }
    }

    /// Answers discovery: an API server that serves ephemeral containers.
    pub(super) async fn discovery(&mut self) {
        self.expect(Method::GET, DISCOVERY).await.ok(&json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                {"name": "pods/ephemeralcontainers", "singularName": "", "namespaced": true,
                 "kind": "Pod", "verbs": ["get", "patch", "update"]},
            ],
        }));
    }

    /// Answers the SubjectAccessReview that asks whether the requester may patch
    /// Deployment web, the permission a Sidecar session stands in for.
    pub(super) async fn access_review(&mut self, allowed: bool) {
        let call = self.expect(Method::POST, ACCESS_REVIEWS).await;
        let spec = &call.body["spec"];
        assert_eq!(spec["user"], REQUESTER);
        assert_eq!(spec["uid"], "u-jane");
        assert_eq!(spec["groups"], json!(["devs", "system:authenticated"]));
        assert_eq!(
            spec["resourceAttributes"],
            json!({"namespace": NS, "verb": "patch", "group": "apps",
                   "resource": "deployments", "name": "web"})
        );
        let mut review = call.body.clone();
        review["status"] = json!({"allowed": allowed});
        call.reply(201, &review);
    }

    /// Answers one SubjectAccessReview for the requester: `allowed`, whatever it asks.
    /// Returns the resource attributes it asked about.
    pub(super) async fn any_access_review(&mut self, allowed: bool) -> Value {
        let call = self.expect(Method::POST, ACCESS_REVIEWS).await;
        assert_eq!(call.body["spec"]["user"], REQUESTER);
        let asked = call.body["spec"]["resourceAttributes"].clone();
        let mut review = call.body.clone();
        review["status"] = json!({"allowed": allowed});
        call.reply(201, &review);
        asked
    }

    /// Answers the teardown of every mode on Deployment web, for a session whose status
    /// records no mode (it may have made a copy or an ephemeral container before a
    /// crash). `owned`: as in [`ApiServer::sidecar_teardown`].
    pub(super) async fn teardown(&mut self, owned: bool) {
        self.sidecar_teardown(owned).await;
        self.pod_teardown().await;
    }

    /// Answers the teardown of Deployment web when the watch cache does not show the
    /// session's fields: read, then, if `owned` (the session's field manager owns fields
    /// of the Deployment), the empty intent, which must name only the object.
    pub(super) async fn sidecar_teardown(&mut self, owned: bool) {
        self.expect(Method::GET, DEPLOYMENT)
            .await
            .ok(&deployment(owned));
        if owned {
            let call = self
                .expect(Method::PATCH, &format!("{DEPLOYMENT}{SESSION_APPLY}"))
                .await;
            assert_eq!(call.content_type.as_deref(), Some(APPLY));
            assert_eq!(
                call.body,
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}})
            );
            call.ok(&deployment(false));
        }
    }

    /// Answers the teardown of Copy (no copy exists) and Ephemeral (no pod has the
    /// debugger as an ephemeral container).
    pub(super) async fn pod_teardown(&mut self) {
        let copy = naming::copy_name(SESSION);
        self.expect(Method::GET, &format!("{PODS}/{copy}"))
            .await
            .not_found("pods", &copy);
        self.expect(Method::GET, &format!("{PODS}?"))
            .await
            .ok(&pod_list(vec![pod("web-7c9f-x2x8q", None)]));
    }

    /// Answers the status apply, and returns the status it carried.
    pub(super) async fn status_patch(&mut self, session: &DebugSession) -> DebugSessionStatus {
        let call = self
            .expect(
                Method::PATCH,
                &format!("{SESSIONS}/status?&force=true&fieldManager=shellcar"),
            )
            .await;
        assert_eq!(call.content_type.as_deref(), Some(APPLY));
        assert_eq!(call.body["apiVersion"], "debug.shellcar.dev/v1alpha1");
        assert_eq!(call.body["kind"], "DebugSession");
        let status: DebugSessionStatus =
            serde_json::from_value(call.body["status"].clone()).unwrap();
        let mut stored = session.clone();
        stored.status = Some(status.clone());
        call.ok(&serde_json::to_value(&stored).unwrap());
        status
    }

    /// Answers the Event on the session, which must be of `type_` with `reason`; returns
    /// its note.
    pub(super) async fn event(&mut self, type_: &str, reason: &str) -> String {
        let call = self.expect(Method::POST, EVENTS).await;
        let event = &call.body;
        assert_eq!(
            (event["type"].as_str(), event["reason"].as_str()),
            (Some(type_), Some(reason)),
            "{event}"
        );
        assert_eq!(event["action"], "Reconcile");
        assert_eq!(event["reportingController"], "shellcar");
        assert_eq!(
            event["regarding"],
            json!({
                "apiVersion": "debug.shellcar.dev/v1alpha1",
                "kind": "DebugSession",
                "name": SESSION,
                "namespace": NS,
                "uid": SESSION_UID,
            })
        );
        let note = event["note"].as_str().unwrap().to_owned();
        let created = call.body.clone();
        call.reply(201, &created);
        note
    }

    /// Waits for `reconciling` to end, failing on any request that comes first.
    pub(super) async fn finish(
        &mut self,
        reconciling: JoinHandle<Result<Action, Error>>,
    ) -> Result<Action, Error> {
        tokio::select! {
            done = reconciling => done.unwrap(),
            request = self.0.next_request() => {
                let (request, _) = request.expect("the client is gone");
                panic!("unexpected request: {} {}", request.method(), request.uri());
            }
            () = tokio::time::sleep(PATIENCE) => panic!("reconcile did not finish within {PATIENCE:?}"),
        }
    }
}

/// Watch caches holding namespace `shop` (no labels), no DebugPolicy, the Deployments
/// `deployments` (slimmed as the controller's watch does), Deployment web's ReplicaSet
/// web-5d8b and the debugged pods `pods`, all synced.
pub(super) fn caches(deployments: Vec<Value>, pods: Vec<Value>) -> Caches {
    caches_with_sessions(deployments, pods, Vec::new(), Vec::new())
}

/// As [`caches`], with `sessions` and `policies` in their caches.
pub(super) fn caches_with_sessions(
    deployments: Vec<Value>,
    pods: Vec<Value>,
    sessions: Vec<DebugSession>,
    debug_policies: Vec<DebugPolicy>,
) -> Caches {
    let (session_store, mut session_writer) = reflector::store::<DebugSession>();
    for session in sessions {
        session_writer.apply_watcher_event(&watcher::Event::InitApply(session));
    }
    session_writer.apply_watcher_event(&watcher::Event::InitDone);
    let (policies, mut policy_writer) = reflector::store::<DebugPolicy>();
    let (namespaces, mut namespace_writer) = reflector::store::<Namespace>();
    let mut shop = Namespace::default();
    shop.metadata.name = Some(NS.to_owned());
    namespace_writer.apply_watcher_event(&watcher::Event::InitApply(shop));
    namespace_writer.apply_watcher_event(&watcher::Event::InitDone);
    for policy in debug_policies {
        policy_writer.apply_watcher_event(&watcher::Event::InitApply(policy));
    }
    policy_writer.apply_watcher_event(&watcher::Event::InitDone);
    let store = |kind: TargetKind, objects: Vec<Value>| {
        let mut writer = Writer::new(workload::api_resource(kind).unwrap());
        for value in objects {
            let mut obj: DynamicObject = serde_json::from_value(value).unwrap();
            workload::slim(&mut obj, true);
            writer.apply_watcher_event(&watcher::Event::InitApply(obj));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        writer.as_reader()
    };
    let (pod_store, mut pod_writer) = reflector::store::<Pod>();
    for pod in pods {
        pod_writer.apply_watcher_event(&watcher::Event::InitApply(
            serde_json::from_value(pod).unwrap(),
        ));
    }
    pod_writer.apply_watcher_event(&watcher::Event::InitDone);
    let debugged_pods = Synced::new(pod_store);
    debugged_pods.flag().store(true, Ordering::Relaxed);
    Caches {
        sessions: session_store,
        policies,
        namespaces,
        workloads: Workloads {
            deployments: store(TargetKind::Deployment, deployments),
            stateful_sets: store(TargetKind::StatefulSet, Vec::new()),
            daemon_sets: store(TargetKind::DaemonSet, Vec::new()),
            replica_sets: store(TargetKind::ReplicaSet, vec![replica_set()]),
        },
        debugged_pods,
    }
}

/// A client talking to a mock API server, and the context built on it, with empty
/// caches of workloads and debugged pods.
pub(super) fn context() -> (Arc<Context>, ApiServer) {
    context_with(caches(Vec::new(), Vec::new()))
}

/// A client talking to a mock API server, and the context built on it and `caches`.
pub(super) fn context_with(caches: Caches) -> (Arc<Context>, ApiServer) {
    let (client, handle) = mock_api::client();
    let reporter = Reporter {
        controller: "shellcar".to_owned(),
        instance: Some("shellcar-0".to_owned()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let policy = Policy {
        default_image: "busybox".to_owned(),
        max_ttl: Duration::from_secs(24 * 3600),
        allowed_images: Vec::new(),
        stopper: None,
        start_deadline: Duration::from_secs(300),
        namespaces: crate::rules::namespaces::Namespaces::new("shellcar-system", Vec::new()),
    };
    let ctx = Context::new(
        client,
        recorder,
        policy,
        caches,
        Arc::new(Metrics::default()),
        stamp_key(),
    );
    (Arc::new(ctx), ApiServer(handle))
}

/// Starts reconciling `session` in the background, so the test can play the API server.
pub(super) fn start(
    session: &DebugSession,
    ctx: &Arc<Context>,
) -> JoinHandle<Result<Action, Error>> {
    tokio::spawn(reconcile(Arc::new(session.clone()), Arc::clone(ctx)))
}

/// `seconds` ago, to the second, as the API server keeps times.
pub(super) fn ago(seconds: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() - seconds).unwrap()
}

/// Session `dbg` with `spec`, created `age` seconds ago, holding its finalizer.
pub(super) fn session(spec: &str, age: i64) -> DebugSession {
    let mut session = DebugSession::new(SESSION, serde_yaml::from_str(spec).unwrap());
    let meta = &mut session.metadata;
    meta.namespace = Some(NS.to_owned());
    meta.uid = Some(SESSION_UID.to_owned());
    meta.resource_version = Some("100".to_owned());
    meta.generation = Some(1);
    meta.creation_timestamp = Some(Time(ago(age)));
    meta.finalizers = Some(vec!["debug.shellcar.dev/teardown".to_owned()]);
    session.spec.requester = Some(Requester {
        username: REQUESTER.to_owned(),
        uid: Some("u-jane".to_owned()),
        groups: vec!["devs".to_owned(), "system:authenticated".to_owned()],
        extra: None,
    });
    stamped(session)
}

/// The admission stamp key of the tests' operator.
pub(super) fn stamp_key() -> Key {
    Key::from_bytes(&[42; stamp::KEY_LEN]).unwrap()
}

/// `session` with the admission stamp the webhook would give its requester and approval.
pub(super) fn stamped(mut session: DebugSession) -> DebugSession {
    let sealed = stamp::seal(
        &stamp_key(),
        NS,
        session.metadata.uid.as_deref(),
        session.spec.requester.as_ref().unwrap(),
        session.spec.approval.as_ref(),
    );
    session
        .annotations_mut()
        .insert(stamp::STAMP_ANNOTATION.to_owned(), sealed);
    session
}

/// The name of session dbg's debugger container.
pub(super) fn container() -> String {
    naming::container_name(SESSION)
}

/// The status of a session whose debugger runs in pod web-7c9f-x2x8q of Deployment web.
pub(super) fn active(session: &DebugSession) -> DebugSessionStatus {
    let created = session.metadata.creation_timestamp.clone().unwrap().0;
    let container = container();
    serde_json::from_value(json!({
        "phase": "Active",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "DebuggerRunning", "message": "running",
             "observedGeneration": 1, "lastTransitionTime": created},
        ],
        "mode": "Sidecar",
        "target": {"kind": "Deployment", "name": "web", "uid": DEPLOYMENT_UID},
        "container": container,
        "startedAt": created,
        "expiresAt": created.checked_add(jiff::SignedDuration::from_hours(1)).unwrap(),
        "pods": [{"name": "web-7c9f-x2x8q", "container": container, "ready": true,
                  "attach": naming::attach_command(NS, "web-7c9f-x2x8q", &container)}],
    }))
    .unwrap()
}

/// Deployment web as the API server returns it; `owned` adds the session's field
/// manager to its managed fields, as after a Sidecar apply.
pub(super) fn deployment(owned: bool) -> Value {
    let mut managed = vec![json!({
        "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "apps/v1",
        "time": "2026-01-10T09:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:selector": {}, "f:template": {"f:spec": {"f:containers": {}}}}},
    })];
    if owned {
        managed.push(json!({
            "manager": "shellcar.dev/dbg", "operation": "Apply", "apiVersion": "apps/v1",
            "time": "2026-01-10T10:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                format!("k:{{\"name\":\"{}\"}}", container()): {".": {}},
            }}}}},
        }));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": NS, "uid": DEPLOYMENT_UID, "resourceVersion": "2041",
            "generation": 3, "managedFields": managed,
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]},
            },
        },
        "status": {"replicas": 1, "readyReplicas": 1, "observedGeneration": 3},
    })
}

/// ReplicaSet web-5d8b, which Deployment web controls.
pub(super) fn replica_set() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "web-5d8b", "namespace": NS, "uid": REPLICA_SET_UID,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": DEPLOYMENT_UID, "controller": true}],
        },
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]},
            },
        },
    })
}

/// A running pod of Deployment web (its ReplicaSet web-5d8b controls it); `debugger`
/// adds the session's debugger container, running or not.
pub(super) fn pod(name: &str, debugger: Option<bool>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": NS, "uid": format!("pod-{name}"),
            "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "web-5d8b", "uid": REPLICA_SET_UID, "controller": true}],
        },
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "nginx", "image": "nginx:1.27", "imageID": "",
                                   "ready": true, "restartCount": 0, "state": {"running": {}}}],
        },
    });
    if let Some(running) = debugger {
        let container = container();
        pod["metadata"]["labels"]["debug.shellcar.dev/debugged"] = json!("true");
        pod["metadata"]["annotations"] =
            json!({ format!("debug.shellcar.dev/{container}"): SESSION });
        pod["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": container, "image": "busybox"}));
        let state = if running {
            json!({"running": {}})
        } else {
            json!({"waiting": {"reason": "ContainerCreating"}})
        };
        pod["status"]["containerStatuses"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": container, "image": "busybox", "imageID": "",
                         "ready": running, "restartCount": 0, "state": state}));
    }
    pod
}

/// A list of `items` as the API server returns pods.
pub(super) fn pod_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "3000"}, "items": items})
}

/// The status and reason of condition `type_`.
pub(super) fn condition<'a>(status: &'a DebugSessionStatus, type_: &str) -> (&'a str, &'a str) {
    let c = status::condition(status, type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

/// Deployment web as the API server holds it after the Sidecar apply of session dbg:
/// the debugger in its template, and the fields the session's manager owns as the API
/// server records them.
pub(super) fn applied_deployment() -> Value {
    let container = container();
    let mut deployment = deployment(false);
    let key = format!("k:{{\"name\":\"{container}\"}}");
    deployment["metadata"]["managedFields"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "manager": "shellcar.dev/dbg", "operation": "Apply", "apiVersion": "apps/v1",
            "time": "2026-01-10T10:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:template": {
                "f:metadata": {
                    "f:annotations": {
                        format!("f:debug.shellcar.dev/{container}"): {},
                        format!("f:{}", naming::requester_annotation(&container)): {},
                    },
                    "f:labels": {"f:debug.shellcar.dev/debugged": {}},
                },
                "f:spec": {
                    "f:containers": {key: {
                        ".": {}, "f:command": {}, "f:image": {}, "f:name": {},
                        "f:securityContext": {"f:capabilities": {"f:add": {}}},
                        "f:stdin": {}, "f:tty": {},
                    }},
                    "f:shareProcessNamespace": {},
                },
            }}},
        }));
    let template = &mut deployment["spec"]["template"];
    template["metadata"]["labels"]["debug.shellcar.dev/debugged"] = json!("true");
    template["metadata"]["annotations"] = json!({
        format!("debug.shellcar.dev/{container}"): SESSION,
        naming::requester_annotation(&container): REQUESTER,
    });
    template["spec"]["shareProcessNamespace"] = json!(true);
    template["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": container, "image": "busybox",
            "command": ["sh", "-c", "while true; do sh; done"],
            "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}},
            "stdin": true, "tty": true,
            // Defaults the API server adds.
            "imagePullPolicy": "Always", "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File", "resources": {},
        }));
    deployment["metadata"]["generation"] = json!(4);
    deployment
}
