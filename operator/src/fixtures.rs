//! The I/O half of the reconcile pipeline against a mock API server: each test runs
//! [`reconcile`] on a session and checks, in order, every request it sends (method, path
//! with query, the part of the body that matters), answering each as an API server would.
//! A request the test does not expect, or one that does not come, fails the test.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, Request, Response, header};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::DynamicObject;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

use crate::context::{Caches, Context, Error, Policy, Synced, Workloads};
use crate::crd::{
    DebugPolicy, DebugSession, DebugSessionStatus, Mode, Phase, Requester, TargetKind,
};
use crate::reconcile::{error_policy, reconcile};
use crate::status::{self, EXPIRED, INJECTED, READY, STALLED};
use crate::telemetry::Metrics;
use crate::{naming, workload};

const NS: &str = "shop";
const SESSION: &str = "dbg";
const SESSION_UID: &str = "5e55-1000";
const DEPLOYMENT_UID: &str = "d3b1-0001";
/// The query of a server-side apply by the session's field manager `shellcar.dev/dbg`.
/// kube starts every query that has parameters with `&`, which the API server ignores.
const SESSION_APPLY: &str = "?&fieldManager=shellcar.dev%2Fdbg";

const DISCOVERY: &str = "/api/v1";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/web";
const PODS: &str = "/api/v1/namespaces/shop/pods";
const SESSIONS: &str = "/apis/debug.shellcar.dev/v1alpha1/namespaces/shop/debugsessions/dbg";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events?";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews?";
const REQUESTER: &str = "jane";

const APPLY: &str = "application/apply-patch+yaml";
const JSON_PATCH: &str = "application/json-patch+json";

/// How long a test waits for a request it expects, or for reconcile to finish.
const PATIENCE: Duration = Duration::from_secs(5);

/// The other end of the client: receives each request and answers it.
struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// One request received, waiting for its answer.
struct Call {
    content_type: Option<String>,
    body: Value,
    send: SendResponse<Response<Body>>,
}

impl Call {
    fn reply(self, code: u16, body: &Value) {
        let response = Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.send.send_response(response);
    }

    fn ok(self, body: &Value) {
        self.reply(200, body);
    }

    fn not_found(self, resource: &str, name: &str) {
        self.reply(
            404,
            &status_body(404, "NotFound", &format!("{resource} \"{name}\" not found")),
        );
    }
}

impl ApiServer {
    /// The next request, which must be `method` on `uri` (path and query, exactly).
    async fn expect(&mut self, method: Method, uri: &str) -> Call {
        let Ok(next) = tokio::time::timeout(PATIENCE, self.0.next_request()).await else {
            panic!("expected {method} {uri}, but no request came within {PATIENCE:?}");
        };
        let (request, send) = next.expect("the client is gone");
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
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Call {
            content_type,
            body,
            send,
        }
    }

    /// Answers discovery: an API server that serves ephemeral containers.
    async fn discovery(&mut self) {
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
    async fn access_review(&mut self, allowed: bool) {
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

    /// Answers the teardown of every mode on Deployment web, for a session whose status
    /// records no mode (it may have made a copy or an ephemeral container before a
    /// crash). `owned`: as in [`ApiServer::sidecar_teardown`].
    async fn teardown(&mut self, owned: bool) {
        self.sidecar_teardown(owned).await;
        self.pod_teardown().await;
    }

    /// Answers the teardown of Deployment web when the watch cache does not show the
    /// session's fields: read, then, if `owned` (the session's field manager owns fields
    /// of the Deployment), the empty intent, which must name only the object.
    async fn sidecar_teardown(&mut self, owned: bool) {
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
    async fn pod_teardown(&mut self) {
        let copy = naming::copy_name(SESSION);
        self.expect(Method::GET, &format!("{PODS}/{copy}"))
            .await
            .not_found("pods", &copy);
        self.expect(Method::GET, &format!("{PODS}?"))
            .await
            .ok(&pod_list(vec![pod("web-7c9f-x2x8q", None)]));
    }

    /// Answers the status apply, and returns the status it carried.
    async fn status_patch(&mut self, session: &DebugSession) -> DebugSessionStatus {
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
    async fn event(&mut self, type_: &str, reason: &str) -> String {
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
    async fn finish(
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
/// `deployments` (slimmed as the controller's watch does) and the debugged pods `pods`,
/// all synced.
fn caches(deployments: Vec<Value>, pods: Vec<Value>) -> Caches {
    let (policies, mut policy_writer) = reflector::store::<DebugPolicy>();
    let (namespaces, mut namespace_writer) = reflector::store::<Namespace>();
    let mut shop = Namespace::default();
    shop.metadata.name = Some(NS.to_owned());
    namespace_writer.apply_watcher_event(&watcher::Event::InitApply(shop));
    namespace_writer.apply_watcher_event(&watcher::Event::InitDone);
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
        policies,
        namespaces,
        workloads: Workloads {
            deployments: store(TargetKind::Deployment, deployments),
            stateful_sets: store(TargetKind::StatefulSet, Vec::new()),
            daemon_sets: store(TargetKind::DaemonSet, Vec::new()),
            replica_sets: store(TargetKind::ReplicaSet, Vec::new()),
        },
        debugged_pods,
    }
}

/// A client talking to a mock API server, and the context built on it, with empty
/// caches of workloads and debugged pods.
fn context() -> (Arc<Context>, ApiServer) {
    context_with(caches(Vec::new(), Vec::new()))
}

/// A client talking to a mock API server, and the context built on it and `caches`.
fn context_with(caches: Caches) -> (Arc<Context>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let reporter = Reporter {
        controller: "shellcar".to_owned(),
        instance: Some("shellcar-0".to_owned()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let policy = Policy {
        default_image: "busybox".to_owned(),
        max_ttl: Duration::from_secs(24 * 3600),
        allowed_images: Vec::new(),
        start_deadline: Duration::from_secs(300),
    };
    let ctx = Context::new(
        client,
        recorder,
        policy,
        caches,
        Arc::new(Metrics::default()),
    );
    (Arc::new(ctx), ApiServer(handle))
}

/// Starts reconciling `session` in the background, so the test can play the API server.
fn start(session: &DebugSession, ctx: &Arc<Context>) -> JoinHandle<Result<Action, Error>> {
    tokio::spawn(reconcile(Arc::new(session.clone()), Arc::clone(ctx)))
}

/// `seconds` ago, to the second, as the API server keeps times.
fn ago(seconds: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() - seconds).unwrap()
}

/// Session `dbg` with `spec`, created `age` seconds ago, holding its finalizer.
fn session(spec: &str, age: i64) -> DebugSession {
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
    session
}

fn container() -> String {
    naming::container_name(SESSION)
}

/// The status of a session whose debugger runs in pod web-7c9f-x2x8q of Deployment web.
fn active(session: &DebugSession) -> DebugSessionStatus {
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
fn deployment(owned: bool) -> Value {
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

/// A running pod of Deployment web; `debugger` adds the session's debugger container,
/// running or not.
fn pod(name: &str, debugger: Option<bool>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}},
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

fn pod_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "3000"}, "items": items})
}

/// A `Status` error body.
fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
}

/// The status and reason of condition `type_`.
fn condition<'a>(status: &'a DebugSessionStatus, type_: &str) -> (&'a str, &'a str) {
    let c = status::condition(status, type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[tokio::test]
async fn a_new_sidecar_session_is_applied_then_reported() {
    let (ctx, mut server) =
        context_with(caches(Vec::new(), vec![pod("web-5d8b-k2v9p", Some(false))]));
    let session = session("target: {kind: Deployment, name: web}", 600);
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.access_review(true).await;
    server
        .expect(Method::GET, DEPLOYMENT)
        .await
        .ok(&deployment(false));

    let apply = server
        .expect(Method::PATCH, &format!("{DEPLOYMENT}{SESSION_APPLY}"))
        .await;
    assert_eq!(apply.content_type.as_deref(), Some(APPLY));
    let intent = &apply.body;
    assert_eq!(
        (&intent["apiVersion"], &intent["kind"], &intent["metadata"]),
        (
            &json!("apps/v1"),
            &json!("Deployment"),
            &json!({"name": "web"})
        )
    );
    let template = &intent["spec"]["template"];
    assert_eq!(
        template["metadata"],
        json!({
            "labels": {"debug.shellcar.dev/debugged": "true"},
            "annotations": {
                format!("debug.shellcar.dev/{}", container()): SESSION,
                naming::requester_annotation(&container()): REQUESTER,
            },
        })
    );
    assert_eq!(template["spec"]["shareProcessNamespace"], true);
    let containers = template["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "only the debugger: {containers:?}");
    assert_eq!(containers[0]["name"], container().as_str());
    assert_eq!(containers[0]["image"], "busybox");
    apply.ok(&deployment(true));

    // The debugged pods come from the watch cache.
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Injecting));
    assert_eq!(status.mode, Some(Mode::Sidecar));
    let target = status.target.as_ref().unwrap();
    assert_eq!(
        (target.kind, target.name.as_str(), target.uid.as_deref()),
        (TargetKind::Deployment, "web", Some(DEPLOYMENT_UID))
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, READY), ("False", "WaitingForPods"));
    assert_eq!(condition(&status, INJECTED), ("True", "Applied"));
    let created = session.metadata.creation_timestamp.clone().unwrap().0;
    assert_eq!(
        status.expires_at.as_ref().map(|t| t.0),
        Some(
            created
                .checked_add(jiff::SignedDuration::from_hours(1))
                .unwrap()
        )
    );
    let pods: Vec<(&str, bool)> = status
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.ready))
        .collect();
    assert_eq!(pods, [("web-5d8b-k2v9p", false)]);

    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .ends_with("; requested by jane"),
        "{:?}",
        status.message
    );

    let note = server.event("Normal", "Injected").await;
    assert_eq!(Some(note), status.message);

    let action = server.finish(reconciling).await.unwrap();
    // Requeued to check the requester's permissions again in a minute.
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn a_requester_without_the_permission_is_refused_and_nothing_is_applied() {
    let (ctx, mut server) = context();
    let session = session("target: {kind: Deployment, name: web}", 600);
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.access_review(false).await;
    server.teardown(false).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, READY), ("False", "Forbidden"));
    assert_eq!(condition(&status, STALLED), ("True", "Forbidden"));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "user \"jane\" may not patch deployments.apps \"web\" in namespace \"shop\" (needed by mode Sidecar); requested by jane"
        )
    );
    server.event("Warning", "Forbidden").await;
    let action = server.finish(reconciling).await.unwrap();
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_session_without_a_requester_is_refused_without_asking() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.spec.requester = None;
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.teardown(false).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, READY), ("False", "NoRequester"));
    server.event("Warning", "NoRequester").await;
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn a_refused_session_is_torn_down_and_failed() {
    let (ctx, mut server) = context();
    let session = session("{target: {kind: Deployment, name: web}, ttl: 48h}", 60);
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.teardown(false).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        status.message.as_deref(),
        Some("ttl \"48h\" is longer than the maximum of 1day; requested by jane")
    );
    assert_eq!(condition(&status, READY), ("False", "TTLTooLong"));
    assert_eq!(condition(&status, STALLED), ("True", "TTLTooLong"));
    assert_eq!(status.expires_at, None);
    server.event("Warning", "TTLTooLong").await;

    let action = server.finish(reconciling).await.unwrap();
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_sidecar_on_a_pod_is_refused_without_reading_any_workload() {
    let (ctx, mut server) = context();
    let session = session(
        "{target: {kind: Pod, name: web-7c9f-x2x8q}, mode: Sidecar}",
        60,
    );
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    server.pod_teardown().await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(condition(&status, STALLED), ("True", "NotSupported"));
    server.event("Warning", "NotSupported").await;

    assert_eq!(
        server.finish(reconciling).await.unwrap(),
        Action::await_change()
    );
}

#[tokio::test]
async fn an_expired_session_is_torn_down_once_then_left_alone() {
    let (ctx, mut server) = context();
    let mut session = session("{target: {kind: Deployment, name: web}, ttl: 1h}", 2 * 3600);
    session.status = Some(active(&session));
    let reconciling = start(&session, &ctx);

    server.discovery().await;
    // Status says Sidecar: no copy or ephemeral container to look for.
    server.sidecar_teardown(true).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Expired));
    assert_eq!(condition(&status, EXPIRED), ("True", "TTLReached"));
    assert_eq!(condition(&status, INJECTED), ("False", "Removed"));
    assert!(status.pods.is_empty(), "{:?}", status.pods);
    assert!(status.ended_at.is_some());
    server.event("Normal", "Expired").await;
    assert_eq!(
        server.finish(reconciling).await.unwrap(),
        Action::await_change()
    );

    // The next pass sees the Expired status it wrote and sends nothing at all.
    session.status = Some(status);
    let again = start(&session, &ctx);
    assert_eq!(server.finish(again).await.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_deleted_session_is_torn_down_then_released() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.status = Some(active(&session));
    session.metadata.deletion_timestamp = Some(Time(ago(1)));
    let reconciling = start(&session, &ctx);

    // No discovery: cleanup needs no capabilities.
    server.sidecar_teardown(true).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Ended));
    assert_eq!(condition(&status, INJECTED), ("False", "Removed"));
    server.event("Normal", "Ended").await;

    let release = server.expect(Method::PATCH, &format!("{SESSIONS}?")).await;
    assert_eq!(release.content_type.as_deref(), Some(JSON_PATCH));
    assert_eq!(
        release.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "debug.shellcar.dev/teardown"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    let mut released = session.clone();
    released.metadata.finalizers = None;
    released.status = Some(status);
    release.ok(&serde_json::to_value(&released).unwrap());

    assert_eq!(
        server.finish(reconciling).await.unwrap(),
        Action::await_change()
    );
}

#[tokio::test]
async fn a_transient_error_writes_no_status_and_backs_off() {
    let (ctx, mut server) = context();
    let session = session("target: {kind: Deployment, name: web}", 600);
    let shared = Arc::new(session.clone());
    let unavailable = status_body(500, "InternalError", "etcdserver: request timed out");

    let reconciling = start(&session, &ctx);
    server.discovery().await;
    server.access_review(true).await;
    server
        .expect(Method::GET, DEPLOYMENT)
        .await
        .reply(500, &unavailable);
    let error = server.finish(reconciling).await.unwrap_err();
    assert_eq!(error.category(), "TargetReadFailed");
    assert_eq!(
        error_policy(Arc::clone(&shared), &error, Arc::clone(&ctx)),
        Action::requeue(Duration::from_secs(2))
    );

    // Neither discovery nor the access review is repeated: the context keeps both.
    let reconciling = start(&session, &ctx);
    server
        .expect(Method::GET, DEPLOYMENT)
        .await
        .reply(500, &unavailable);
    let error = server.finish(reconciling).await.unwrap_err();
    assert_eq!(
        error_policy(shared, &error, Arc::clone(&ctx)),
        Action::requeue(Duration::from_secs(4))
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("shellcar_reconcile_failures_total{category=\"TargetReadFailed\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_first_reconcile_adds_the_finalizer_and_applies_in_the_same_pass() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.metadata.finalizers = None;
    let reconciling = start(&session, &ctx);

    // The finalizer first: nothing is changed before the API server has it.
    let add = server.expect(Method::PATCH, &format!("{SESSIONS}?")).await;
    assert_eq!(add.content_type.as_deref(), Some(JSON_PATCH));
    assert_eq!(
        add.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["debug.shellcar.dev/teardown"]},
        ])
    );
    let mut added = session.clone();
    added.metadata.finalizers = Some(vec!["debug.shellcar.dev/teardown".to_owned()]);
    add.ok(&serde_json::to_value(&added).unwrap());

    // Then, in the same pass, the change itself and the status that reports it.
    server.discovery().await;
    server.access_review(true).await;
    server
        .expect(Method::GET, DEPLOYMENT)
        .await
        .ok(&deployment(false));
    let apply = server
        .expect(Method::PATCH, &format!("{DEPLOYMENT}{SESSION_APPLY}"))
        .await;
    assert_eq!(apply.content_type.as_deref(), Some(APPLY));
    apply.ok(&deployment(true));
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Injecting));
    server.event("Normal", "Injected").await;
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn a_refused_finalizer_stops_the_pass_before_any_change() {
    let (ctx, mut server) = context();
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.metadata.finalizers = None;
    let reconciling = start(&session, &ctx);
    server
        .expect(Method::PATCH, &format!("{SESSIONS}?"))
        .await
        .reply(
            422,
            &status_body(422, "Invalid", "the test operation failed"),
        );
    let error = server.finish(reconciling).await.unwrap_err();
    assert_eq!(error.category(), "FinalizerFailed");
}

/// Deployment web as the API server holds it after the Sidecar apply of session dbg:
/// the debugger in its template, and the fields the session's manager owns as the API
/// server records them.
fn applied_deployment() -> Value {
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

#[tokio::test]
async fn a_settled_session_sends_no_request_at_all() {
    let (ctx, mut server) = context_with(caches(
        vec![applied_deployment()],
        vec![pod("web-5d8b-k2v9p", Some(true))],
    ));
    let mut session = session("target: {kind: Deployment, name: web}", 600);

    // The first pass finds the change in place (read from the caches): it asks only what
    // it has not asked before (discovery, the access review), and writes the status.
    let reconciling = start(&session, &ctx);
    server.discovery().await;
    server.access_review(true).await;
    let status = server.status_patch(&session).await;
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(condition(&status, READY), ("True", "DebuggerRunning"));
    let target = status.target.clone().unwrap();
    assert_eq!(target.uid.as_deref(), Some(DEPLOYMENT_UID));
    server.event("Normal", "Active").await;
    server.finish(reconciling).await.unwrap();

    // The next pass over the same state: nothing to read, apply or write.
    session.status = Some(status);
    let again = start(&session, &ctx);
    assert_eq!(
        server.finish(again).await.unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
}

#[tokio::test]
async fn a_changed_debugger_is_applied_again() {
    let mut changed = applied_deployment();
    changed["spec"]["template"]["spec"]["containers"][1]["image"] = json!("alpine");
    let (ctx, mut server) = context_with(caches(vec![changed], Vec::new()));
    let session = session("target: {kind: Deployment, name: web}", 600);
    let reconciling = start(&session, &ctx);
    server.discovery().await;
    server.access_review(true).await;
    let apply = server
        .expect(Method::PATCH, &format!("{DEPLOYMENT}{SESSION_APPLY}"))
        .await;
    assert_eq!(
        apply.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
    apply.ok(&applied_deployment());
    server.status_patch(&session).await;
    server.event("Normal", "Injected").await;
    server.finish(reconciling).await.unwrap();
}

#[tokio::test]
async fn teardown_trusts_a_cache_that_shows_the_sessions_fields() {
    let (ctx, mut server) = context_with(caches(vec![applied_deployment()], Vec::new()));
    let mut session = session("target: {kind: Deployment, name: web}", 600);
    session.status = Some(active(&session));
    session.metadata.deletion_timestamp = Some(Time(ago(1)));
    let reconciling = start(&session, &ctx);

    // No read of the Deployment: the cache shows what the session owns.
    let call = server
        .expect(Method::PATCH, &format!("{DEPLOYMENT}{SESSION_APPLY}"))
        .await;
    assert_eq!(
        call.body,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}})
    );
    call.ok(&deployment(false));
    server.status_patch(&session).await;
    server.event("Normal", "Ended").await;
    server
        .expect(Method::PATCH, &format!("{SESSIONS}?"))
        .await
        .ok(&serde_json::to_value(&session).unwrap());
    server.finish(reconciling).await.unwrap();
}
