//! The webhook is no oracle for whoever reaches its port: these tests post to the operator's
//! pods directly (the test process runs in the cluster's network namespace, which routes to
//! pod IPs), as anyone on the pod network could, trusting the webhook's own CA.
//!
//! - Garbage, other methods, paths and media types, and well-formed reviews of anything but
//!   a DebugSession (a Pod) get an HTTP client error and no AdmissionReview; a review of a
//!   DebugSession is answered, so the refusals are the webhook's.
//! - A flood from one address gets 429s with Retry-After, while DebugSessions created
//!   through the API server meanwhile are admitted: the API server has a budget of its own.
//! - The NetworkPolicy in shellcar-system is the one config/ ships, with the local
//!   cluster's CIDR (e2e/overlay). The bridge CNI here does not enforce NetworkPolicy, so
//!   this checks that it is accepted and as shipped, not that it keeps anyone out.
//!
//! The requests come from 10.87.0.1, node 1's own address, bound explicitly. The API
//! server, in the same network namespace, reaches the pods from another address (the
//! bridge's, or the link's to node 2: e2e/overlay says why), so the flood spends a budget
//! that is not the API server's. Unbound, the test would share the API server's address
//! and budget, as any client behind the same address (or NAT) does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::serde::Deserialize;
use kube::api::Api;
use kube::{Client, ResourceExt};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use shellcar::crd::TargetKind;
use shellcar_e2e::cluster::is_ready;
use shellcar_e2e::session::session;
use shellcar_e2e::wait::{Polled, poll};
use shellcar_e2e::webhook::STAMP;
use shellcar_e2e::{Cluster, Fixture, OPERATOR_NAMESPACE, TIMEOUT, attack, kubectl};
use tokio::net::TcpSocket;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

/// One test at a time: the flood spends the budget of the address all of them send from.
static ALONE: Mutex<()> = Mutex::const_new(());

/// Where the tests' requests come from: node 1's address, on lo of the network namespace
/// the tests run in (e2e/cluster), never the address the API server reaches the pods from.
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 87, 0, 1);
/// The webhook's port on the operator's pods, and the name its certificate is for.
const WEBHOOK_PORT: u16 = 9443;
const WEBHOOK_DNS: &str = "shellcar-webhook.shellcar-system.svc";
/// The Secret with the webhook's CA (ca.crt), as config/default names it.
const WEBHOOK_SECRET: &str = "shellcar-webhook-tls";
/// The NetworkPolicy of config/webhook, as config/default names it.
const NETWORK_POLICY: &str = "shellcar-controller";

/// The flood: clients per pod, and requests each sends one after another. 640 requests a
/// pod: past the default burst (200) unless they took longer than 8 s (50 a second).
const FLOOD_CONNECTIONS: usize = 8;
const FLOOD_REQUESTS: usize = 80;

/// The Deployment the flood test debugs.
const WEB: &str = "web";

/// An answer of the webhook, as far as the tests look.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: String,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    /// Whether the body is an AdmissionReview: what a refusal must never be.
    fn is_review(&self) -> bool {
        serde_json::from_str::<Value>(&self.body).is_ok_and(|v| v["kind"] == "AdmissionReview")
    }

    /// A client error in plain text, with no review.
    fn assert_refused(&self, status: StatusCode, what: &str) {
        assert_eq!(self.status, status, "{what}: {self:?}");
        assert!(
            self.content_type.starts_with("text/plain"),
            "{what}: {self:?}"
        );
        assert!(
            !self.is_review(),
            "{what} was answered with a review: {self:?}"
        );
    }
}

/// HTTPS to the operator's pods, trusting the webhook's CA, from [`SOURCE`].
#[derive(Clone)]
struct Webhook {
    tls: TlsConnector,
}

impl Webhook {
    /// Trusts the CA in the webhook's Secret, as the API server does with the caBundle.
    async fn new(client: &Client) -> Result<Webhook> {
        let secret = Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
            .get(WEBHOOK_SECRET)
            .await
            .with_context(|| format!("reading Secret {OPERATOR_NAMESPACE}/{WEBHOOK_SECRET}"))?;
        let ca = secret
            .data
            .as_ref()
            .and_then(|d| d.get("ca.crt"))
            .with_context(|| format!("Secret {WEBHOOK_SECRET} has no ca.crt"))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca.0) {
            roots.add(cert.context("reading the webhook's CA")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Webhook {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// An HTTP/1.1 connection to the webhook of the pod at `pod`, from [`SOURCE`].
    async fn connect(&self, pod: IpAddr) -> Result<SendRequest<Full<Bytes>>> {
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(SocketAddr::from((SOURCE, 0)))
            .with_context(|| {
                format!(
                    "binding {SOURCE}: run the tests inside the cluster's network namespace \
                     (`e2e/cluster exec -- cargo test -p shellcar-e2e`)"
                )
            })?;
        let tcp = socket
            .connect(SocketAddr::from((pod, WEBHOOK_PORT)))
            .await
            .with_context(|| format!("connecting to the webhook at {pod}:{WEBHOOK_PORT}"))?;
        let name = ServerName::try_from(WEBHOOK_DNS)?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with the webhook at {pod}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP handshake with the webhook")?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends one request over a new connection to `pod`.
    async fn send_once(
        &self,
        pod: IpAddr,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply> {
        let mut sender = self.connect(pod).await?;
        send(&mut sender, method, path, content_type, body).await
    }
}

/// Sends one request on `sender` and reads the whole answer.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Reply> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, WEBHOOK_DNS);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    sender.ready().await.context("the connection closed")?;
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body)))?)
        .await
        .context("posting to the webhook")?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status();
    let content_type = header(header::CONTENT_TYPE).unwrap_or_default();
    let retry_after = header(header::RETRY_AFTER);
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        content_type,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The addresses of the Ready operator pods: every replica serves the webhook.
async fn webhook_pods(cluster: &Cluster) -> Result<Vec<IpAddr>> {
    let mut ips = Vec::new();
    for pod in cluster.operator_pods().await? {
        if !is_ready(&pod) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .with_context(|| format!("operator pod {} has no IP", pod.name_any()))?;
        ips.push(ip.parse()?);
    }
    ensure!(!ips.is_empty(), "no Ready operator pod");
    Ok(ips)
}

/// An AdmissionReview as the API server sends one, for `kind` and `resource` (group
/// debug.shellcar.dev unless `group` says otherwise): an UPDATE that changes nothing.
fn review(group: &str, version: &str, kind: &str, resource: &str) -> Vec<u8> {
    let object = json!({
        "apiVersion": "debug.shellcar.dev/v1alpha1",
        "kind": "DebugSession",
        "metadata": {"name": "oracle", "namespace": "default", "uid": "o-1"},
        "spec": {"target": {"kind": "Deployment", "name": "web"}, "ttl": "5m"},
    });
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-oracle",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": "oracle", "namespace": "default",
            "operation": "UPDATE", "userInfo": {"username": "someone"},
            "object": object, "oldObject": object,
        }
    })
    .to_string()
    .into_bytes()
}

fn session_review() -> Vec<u8> {
    review(
        "debug.shellcar.dev",
        "v1alpha1",
        "DebugSession",
        "debugsessions",
    )
}

/// Waits until a review of a DebugSession from [`SOURCE`] is answered again on every pod:
/// the flood's budget has refilled, for whatever runs next.
async fn wait_answered(webhook: &Webhook, pods: &[IpAddr]) -> Result<()> {
    for &pod in pods {
        poll(
            &format!("the webhook at {pod} to answer {SOURCE} again"),
            TIMEOUT,
            || async {
                let reply = webhook
                    .send_once(
                        pod,
                        Method::POST,
                        "/validate",
                        Some("application/json"),
                        session_review(),
                    )
                    .await?;
                Ok(if reply.status == StatusCode::OK {
                    Polled::Done(())
                } else {
                    Polled::NotYet(format!("{reply:?}"))
                })
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn what_is_not_a_review_of_a_debug_session_gets_a_client_error_and_no_review() -> Result<()> {
    let _alone = ALONE.lock().await;
    let cluster = Cluster::connect().await?;
    let webhook = Webhook::new(&cluster.client).await?;
    let json = Some("application/json");
    for pod in webhook_pods(&cluster).await? {
        let cases = [
            (
                "garbage",
                Method::POST,
                "/validate",
                json,
                b"garbage".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "an empty object",
                Method::POST,
                "/mutate",
                json,
                b"{}".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "a review of a Pod",
                Method::POST,
                "/validate",
                json,
                review("", "v1", "Pod", "pods"),
                StatusCode::BAD_REQUEST,
            ),
            (
                "a review of a Pod, to /mutate",
                Method::POST,
                "/mutate",
                json,
                review("", "v1", "Pod", "pods"),
                StatusCode::BAD_REQUEST,
            ),
            (
                "a review of a DebugPolicy",
                Method::POST,
                "/validate",
                json,
                review(
                    "debug.shellcar.dev",
                    "v1alpha1",
                    "DebugPolicy",
                    "debugpolicies",
                ),
                StatusCode::BAD_REQUEST,
            ),
            (
                "text/plain",
                Method::POST,
                "/validate",
                Some("text/plain"),
                session_review(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "GET",
                Method::GET,
                "/validate",
                None,
                Vec::new(),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                "another path",
                Method::POST,
                "/",
                json,
                session_review(),
                StatusCode::NOT_FOUND,
            ),
        ];
        for (what, method, path, content_type, body, status) in cases {
            let reply = webhook
                .send_once(pod, method, path, content_type, body)
                .await
                .with_context(|| format!("{what} to {pod}"))?;
            attack::record(
                &format!("someone on the pod network sends the webhook {what}"),
                &format!("HTTP {status} and no AdmissionReview"),
                format!(
                    "HTTP {} {}",
                    reply.status,
                    if reply.is_review() {
                        "with a review"
                    } else {
                        "and no review"
                    }
                ),
                reply.status == status && !reply.is_review(),
            );
            reply.assert_refused(status, &format!("{what} to {pod}"));
        }
        // The same webhook answers a review of a DebugSession: the refusals above are its
        // own judgment, not a port that answers nothing.
        let reply = webhook
            .send_once(pod, Method::POST, "/validate", json, session_review())
            .await?;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(reply.is_review(), "{reply:?}");
    }
    Ok(())
}

/// What one flooding connection saw: answers by status, and the 429s that broke the rules.
#[derive(Default)]
struct Flooded {
    judged: usize,
    limited: usize,
    other: Vec<String>,
    bad_429: Vec<String>,
}

/// One client sending [`FLOOD_REQUESTS`] garbage requests to `pod` back to back, on a new
/// connection whenever the webhook closes one (it may, after a request whose body it did
/// not read).
async fn flood_one(webhook: Webhook, pod: IpAddr) -> Result<Flooded> {
    let garbage = || {
        (
            Method::POST,
            "/validate",
            Some("application/json"),
            b"garbage".to_vec(),
        )
    };
    let mut sender = webhook.connect(pod).await?;
    let mut seen = Flooded::default();
    for _ in 0..FLOOD_REQUESTS {
        if sender.is_closed() {
            sender = webhook.connect(pod).await?;
        }
        let (method, path, content_type, body) = garbage();
        let reply = match send(&mut sender, method, path, content_type, body).await {
            Ok(reply) => reply,
            Err(_) => {
                sender = webhook.connect(pod).await?;
                let (method, path, content_type, body) = garbage();
                send(&mut sender, method, path, content_type, body).await?
            }
        };
        match reply.status {
            // Under the limit, garbage is judged: 400.
            StatusCode::BAD_REQUEST => seen.judged += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                seen.limited += 1;
                if reply.retry_after.is_none() || reply.is_review() {
                    seen.bad_429.push(format!("{reply:?}"));
                }
            }
            _ => seen.other.push(format!("{reply:?}")),
        }
    }
    Ok(seen)
}

#[tokio::test]
async fn a_flood_from_one_address_is_refused_while_the_api_server_still_admits_sessions()
-> Result<()> {
    let _alone = ALONE.lock().await;
    let (f, _) = Fixture::with_deployment("oracle", WEB, 1).await?;
    let webhook = Webhook::new(&f.cluster.client).await?;
    let pods = webhook_pods(&f.cluster).await?;

    let mut flood = Vec::new();
    for &pod in &pods {
        for _ in 0..FLOOD_CONNECTIONS {
            flood.push(tokio::spawn(flood_one(webhook.clone(), pod)));
        }
    }
    // Meanwhile, through the API server, whose reviews come from another address: each
    // create goes through both webhooks, on whichever replica the API server picks.
    let mut created = Vec::new();
    for n in 0..3 {
        let name = format!("during-flood-{n}");
        let result = f
            .sessions
            .create(&session(&name, TargetKind::Deployment, WEB, "5m")?)
            .await;
        created.push((name, result));
    }
    let mut seen = Flooded::default();
    for connection in flood {
        let one = connection.await??;
        seen.judged += one.judged;
        seen.limited += one.limited;
        seen.other.extend(one.other);
        seen.bad_429.extend(one.bad_429);
    }
    // And right after it, while the flooding address has no budget left.
    let name = "after-flood".to_owned();
    let result = f
        .sessions
        .create(&session(&name, TargetKind::Deployment, WEB, "5m")?)
        .await;
    created.push((name, result));
    let after = wait_answered(&webhook, &pods).await;

    for (name, result) in created {
        let session = result
            .with_context(|| format!("creating {name} through the API server during the flood"))?;
        assert!(
            session.annotations().contains_key(STAMP),
            "{name} was not stamped by the mutating webhook: {:?}",
            session.metadata
        );
    }
    attack::record(
        "someone on the pod network floods the webhook with reviews",
        "429 with Retry-After past the per-source limit; the API server's creates still admitted",
        format!(
            "{} answered, {} limited, {} 429s without Retry-After or with a review, {} other answers",
            seen.judged,
            seen.limited,
            seen.bad_429.len(),
            seen.other.len()
        ),
        seen.limited > 0 && seen.bad_429.is_empty() && seen.other.is_empty(),
    );
    assert!(
        seen.limited > 0,
        "no 429 in a flood of {} requests from {SOURCE} ({} judged)",
        seen.judged + seen.limited,
        seen.judged
    );
    assert!(
        seen.bad_429.is_empty(),
        "429s without Retry-After or with a review: {:?}",
        seen.bad_429
    );
    assert!(
        seen.other.is_empty(),
        "unexpected answers: {:?}",
        seen.other
    );
    after
}

/// Renders `dir` (relative to the repository) as `kubectl apply -k` would send it.
async fn rendered(dir: &str) -> Result<Vec<Value>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    let dir = dir.to_string_lossy().into_owned();
    let out = kubectl::kubectl(None, &["kustomize", &dir], None).await?;
    if !out.status.success() {
        bail!("`{}` failed: {}", out.command, out.stderr);
    }
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&out.stdout) {
        docs.push(serde_yaml::from_value::<Value>(
            serde_yaml::Value::deserialize(doc)?,
        )?);
    }
    Ok(docs)
}

/// The spec of the NetworkPolicy rendered from `dir`.
async fn rendered_policy_spec(dir: &str) -> Result<Value> {
    let docs = rendered(dir).await?;
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == NETWORK_POLICY)
        .with_context(|| format!("{dir} renders no NetworkPolicy {NETWORK_POLICY}"))?;
    Ok(policy["spec"].clone())
}

#[tokio::test]
async fn the_network_policy_is_in_place_as_config_ships_it() -> Result<()> {
    let cluster = Cluster::connect().await?;
    let live = Api::<NetworkPolicy>::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE)
        .get(NETWORK_POLICY)
        .await
        .with_context(|| format!("reading NetworkPolicy {OPERATOR_NAMESPACE}/{NETWORK_POLICY}"))?;
    let live = serde_json::to_value(live.spec.context("the NetworkPolicy has no spec")?)?;

    // What was deployed: config/default with the local cluster's CIDR (e2e/overlay).
    let deployed = serde_json::to_value(serde_json::from_value::<
        k8s_openapi::api::networking::v1::NetworkPolicySpec,
    >(rendered_policy_spec("e2e/overlay").await?)?)?;
    assert_eq!(
        live, deployed,
        "the NetworkPolicy differs from e2e/overlay's"
    );

    // And that is what config/ ships, but for the placeholder CIDR of the webhook's rule.
    let mut shipped = rendered_policy_spec("config/default").await?;
    shipped["ingress"][0]["from"] = deployed["ingress"][0]["from"].clone();
    let shipped = serde_json::to_value(serde_json::from_value::<
        k8s_openapi::api::networking::v1::NetworkPolicySpec,
    >(shipped)?)?;
    assert_eq!(live, shipped, "the NetworkPolicy differs from config/'s");

    // It selects the pods that serve the webhook, and admits its port only from ipBlocks.
    let pods = cluster.operator_pods().await?;
    let selector = &live["podSelector"]["matchLabels"];
    for pod in &pods {
        let labels = pod.labels();
        for (key, value) in selector.as_object().context("no matchLabels")? {
            assert_eq!(
                labels.get(key).map(String::as_str),
                value.as_str(),
                "pod {} is not selected by {key}",
                pod.name_any()
            );
        }
    }
    let webhook_rules: Vec<&Value> = live["ingress"]
        .as_array()
        .context("no ingress rules")?
        .iter()
        .filter(|rule| {
            rule["ports"]
                .as_array()
                .is_some_and(|ports| ports.iter().any(|p| p["port"] == WEBHOOK_PORT))
        })
        .collect();
    assert_eq!(webhook_rules.len(), 1, "{live}");
    let from = webhook_rules[0]["from"].as_array().context("no from")?;
    assert!(
        !from.is_empty() && from.iter().all(|peer| peer.get("ipBlock").is_some()),
        "the webhook's port is open to more than ipBlocks: {from:?}"
    );
    Ok(())
}
