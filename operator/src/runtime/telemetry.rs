//! Logs, metrics and health endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::crd::Phase;
use crate::runtime::api_requests::{CountRequests, RequestLabels};

/// Starts logging; `RUST_LOG` overrides the default level (info).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// The operator's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Family<CategoryLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    duration: Histogram,
    time_to_ready: Histogram,
    teardown: Histogram,
    sessions: Family<PhaseLabels, Gauge>,
    leader: Gauge,
    resident_memory: Gauge,
    api_requests: Family<RequestLabels, Counter>,
    webhook_refused: Family<ReasonLabels, Counter>,
    phases: Mutex<HashMap<String, Phase>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("shellcar");
        let reconciles = Counter::default();
        let failures = Family::<CategoryLabels, Counter>::default();
        let refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "refusals",
            "Sessions refused or ended early, by reason (PolicyDenied, Forbidden, NotApproved, ...)",
            refusals.clone(),
        );
        let duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        // From a session's creation to its first Ready: a sidecar waits for a rollout and
        // image pulls (seconds to minutes), an ephemeral container for one pod.
        let time_to_ready = Histogram::new([
            0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ]);
        // Undoing a session's changes: a patch, or a rollout back when pods are recycled.
        let teardown = Histogram::new([
            0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ]);
        let sessions = Family::<PhaseLabels, Gauge>::default();
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciliations that failed, by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconciliation took",
            duration.clone(),
        );
        registry.register(
            "time_to_ready_seconds",
            "Time from a session's creation to its first Ready (a debugger runs)",
            time_to_ready.clone(),
        );
        registry.register(
            "teardown_duration_seconds",
            "How long tearing a session down (undoing its changes) took",
            teardown.clone(),
        );
        registry.register(
            "sessions",
            "Debug sessions known to the operator, by phase",
            sessions.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this replica leads: holds the Lease and runs the controller (1), or stands by (0)",
            leader.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the operator process",
            resident_memory.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests the operator sent to the API server, by verb and resource (with subresource)",
            api_requests.clone(),
        );
        let webhook_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "webhook_refused",
            "Requests to the admission webhook answered with no review, by reason (RateLimited, NotFound, Malformed, NotDebugSession, ...)",
            webhook_refused.clone(),
        );
        Metrics {
            api_requests,
            webhook_refused,
            resident_memory,
            registry,
            reconciles,
            failures,
            refusals,
            duration,
            time_to_ready,
            teardown,
            sessions,
            leader,
            phases: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Counts a reconciliation that took `elapsed`.
    pub fn reconciled(&self, elapsed: Duration) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Records how long a session took from its creation to its first Ready.
    pub fn time_to_ready(&self, elapsed: Duration) {
        self.time_to_ready.observe(elapsed.as_secs_f64());
    }

    /// Records how long undoing a session's changes took.
    pub fn teardown(&self, elapsed: Duration) {
        self.teardown.observe(elapsed.as_secs_f64());
    }

    /// Counts a failed reconciliation.
    pub fn failed(&self, category: &str) {
        self.failures
            .get_or_create(&CategoryLabels {
                category: category.to_owned(),
            })
            .inc();
    }

    /// Counts a session that went to Failed for `reason`.
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a request the admission webhook refused to review, for `reason`.
    pub fn webhook_refused(&self, reason: &str) {
        self.webhook_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records the phase of session `key` (`None` once it is gone) and refreshes the gauge.
    pub fn session_phase(&self, key: String, phase: Option<Phase>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        match phase {
            Some(phase) => phases.insert(key, phase),
            None => phases.remove(&key),
        };
        self.refresh_sessions(&phases);
    }

    /// Forgets every session: a replica that stops leading no longer knows their phases,
    /// and must not keep reporting them next to the new leader's.
    pub fn forget_sessions(&self) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        phases.clear();
        // No series at all, as on a replica that never led.
        self.sessions.clear();
    }

    /// Sets the gauge of every phase to its count in `phases`.
    fn refresh_sessions(&self, phases: &HashMap<String, Phase>) {
        for p in [
            Phase::Pending,
            Phase::AwaitingApproval,
            Phase::Injecting,
            Phase::Active,
            Phase::Expired,
            Phase::Ended,
            Phase::Failed,
        ] {
            let count = phases.values().filter(|v| **v == p).count();
            self.sessions
                .get_or_create(&PhaseLabels {
                    phase: p.as_str().to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The client layer that counts API requests in `shellcar_api_requests_total`; see
    /// [`crate::runtime::api_requests::counted_client`].
    pub fn count_requests(&self) -> CountRequests {
        CountRequests::new(self.api_requests.clone())
    }

    /// Whether this replica leads: holds the Lease and runs the controller.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory.set(rss);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// VmRSS of this process, from /proc (Linux only; `None` elsewhere).
fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Liveness and readiness of a replica. Ready means it can serve the admission webhook,
/// which every replica does: a standby that does not reconcile is Ready too (the Service
/// sends it admission reviews). Whether it leads is the `shellcar_leader` gauge.
#[derive(Default)]
pub struct Health {
    webhook_ready: AtomicBool,
    stopped: AtomicBool,
    /// Why this replica will never be ready, e.g. an unsupported Kubernetes version.
    refused: OnceLock<String>,
}

impl Health {
    /// The admission webhook has its certificate and serves.
    pub fn set_webhook_ready(&self) {
        self.webhook_ready.store(true, Ordering::Relaxed);
    }

    /// This replica will never be ready, for `reason`: it stays live (restarting it
    /// would not help) and `/readyz` answers with the reason. The first reason stays.
    pub fn refuse(&self, reason: String) {
        let _ = self.refused.set(reason);
    }

    /// Ready, or why not.
    pub fn readiness(&self) -> Result<(), &str> {
        if let Some(reason) = self.refused.get() {
            Err(reason)
        } else if self.webhook_ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("webhook certificate not ready")
        }
    }

    /// The controller of the leader ended without being asked to; the process should be
    /// restarted.
    pub fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Live: no controller has ended without being asked to.
    pub fn is_live(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed)
    }
}

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn livez(State(health): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if health.is_live() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "controller stopped\n")
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    match health.readiness() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

/// Serves `/metrics` on `metrics_addr` and `/livez`, `/readyz` on `health_addr`.
pub async fn serve(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    metrics_state: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<()> {
    let metrics_app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(metrics_state);
    let health_app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(health);
    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr).await?;
    let health_listener = tokio::net::TcpListener::bind(health_addr).await?;
    tracing::info!(%metrics_addr, %health_addr, "serving metrics and health");
    tokio::try_join!(
        axum::serve(metrics_listener, metrics_app).into_future(),
        axum::serve(health_listener, health_app).into_future(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
