//! DebugSessions: building, creating, waiting for a status, deleting.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::core::Status;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::Value;
use shellcar::crd::{DebugPod, DebugSession, DebugSessionSpec, Mode, Phase, TargetKind};

use crate::events::Events;
use crate::{Cluster, TIMEOUT};

/// A session on `kind`/`target` with the default debugger (the operator's default image),
/// built as a user writes it: fields left out get the CRD's defaults.
pub fn session(name: &str, kind: TargetKind, target: &str, ttl: &str) -> Result<DebugSession> {
    // From JSON rather than a struct literal, so that fields added to the spec later get
    // their defaults here too.
    let spec: DebugSessionSpec = serde_json::from_value(serde_json::json!({
        "target": {"kind": kind, "name": target},
        "ttl": ttl,
    }))
    .context("building a DebugSession spec")?;
    Ok(DebugSession::new(name, spec))
}

/// A Sidecar session `name` on Deployment `target` with the default debugger, as JSON as
/// a user writes it (for [`Sessions::create_raw`] and `kubectl apply`).
pub fn sidecar(name: &str, target: &str, ttl: &str) -> Result<Value> {
    let mut s = session(name, TargetKind::Deployment, target, ttl)?;
    s.spec.mode = Mode::Sidecar;
    Ok(serde_json::to_value(s)?)
}

/// The API server's refusal of a write (`what`, for the message): `result` must be an API
/// error with a 4xx code, as a webhook's denial, an invalid object or a forbidden request
/// are. Fails when the write was accepted, or failed in another way (no answer, a 5xx).
pub fn refusal<T: Debug>(what: &str, result: Result<T, kube::Error>) -> Result<Status> {
    match result {
        Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => Ok(*status),
        Err(e) => bail!("{what}: expected a refusal (4xx) from the API server, got {e:?}"),
        Ok(accepted) => bail!("{what}: expected a refusal, but it was accepted: {accepted:#?}"),
    }
}

/// Handle on the DebugSessions of one namespace.
pub struct Sessions {
    pub namespace: String,
    pub api: Api<DebugSession>,
    raw: Api<DynamicObject>,
    cluster: Cluster,
}

impl Sessions {
    /// As the cluster's admin.
    pub fn new(cluster: &Cluster, namespace: &str) -> Sessions {
        Sessions::with_client(cluster, cluster.client.clone(), namespace)
    }

    /// As the user of `client`; timeouts still report what the admin sees (Events, the
    /// operator's log).
    pub fn with_client(cluster: &Cluster, client: Client, namespace: &str) -> Sessions {
        Sessions {
            namespace: namespace.to_owned(),
            api: Api::namespaced(client.clone(), namespace),
            raw: Api::namespaced_with(client, namespace, &ApiResource::erase::<DebugSession>(&())),
            cluster: cluster.clone(),
        }
    }

    pub async fn create(&self, session: &DebugSession) -> Result<DebugSession> {
        self.api
            .create(&PostParams::default(), session)
            .await
            .with_context(|| format!("creating DebugSession {}", session.name_any()))
    }

    /// Creates `session`, again while the API server cannot reach a webhook replica: a
    /// replica just killed stays a Service endpoint for a few seconds, and the webhook
    /// fails closed (as a user would, this tries again, up to 30 times a second apart;
    /// anything else is an error at once).
    pub async fn create_through_failover(&self, session: &DebugSession) -> Result<DebugSession> {
        let mut tries = 0;
        loop {
            match self.create(session).await {
                Ok(created) => return Ok(created),
                Err(e) if tries < 30 && format!("{e:#}").contains("failed calling webhook") => {
                    tries += 1;
                    eprintln!("  create refused while a webhook replica is gone; again ({tries})");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates a session from raw JSON, as `kubectl apply` would send it; the error is the
    /// API server's, so tests can check that the schema refused it.
    pub async fn create_raw(&self, object: Value) -> Result<DynamicObject, kube::Error> {
        let object: DynamicObject =
            serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
        self.raw.create(&PostParams::default(), &object).await
    }

    /// The session exactly as the API server returns it, as JSON: fields this crate's
    /// types may not know yet (or would reject) read as they are stored.
    pub async fn get_json(&self, name: &str) -> Result<Value> {
        let object = self
            .raw
            .get(name)
            .await
            .with_context(|| format!("reading DebugSession {}/{name}", self.namespace))?;
        Ok(serde_json::to_value(object)?)
    }

    /// The names of the namespace's sessions.
    pub async fn names(&self) -> Result<Vec<String>> {
        let list = self.api.list(&Default::default()).await?;
        Ok(list.items.iter().map(ResourceExt::name_any).collect())
    }

    /// Waits until session `name` satisfies `pred`, watching it; returns it.
    ///
    /// On timeout the error shows the session's status, its Events and the operator's log.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&DebugSession) -> bool,
    ) -> Result<DebugSession> {
        self.wait_within(name, what, TIMEOUT, pred).await
    }

    /// [`Sessions::wait`] with a bound other than [`TIMEOUT`], for what the operator does
    /// only periodically.
    pub async fn wait_within(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&DebugSession) -> bool,
    ) -> Result<DebugSession> {
        let cond = |s: Option<&DebugSession>| s.is_some_and(&pred);
        let found =
            tokio::time::timeout(timeout, await_condition(self.api.clone(), name, cond)).await;
        match found {
            Ok(Ok(Some(session))) => Ok(session),
            Ok(Ok(None)) => Err(anyhow!("DebugSession {name} is gone, waiting for {what}")),
            Ok(Err(e)) => Err(e).with_context(|| format!("watching DebugSession {name}")),
            Err(_) => Err(self.timed_out(name, what, timeout).await),
        }
    }

    /// Waits until the session is Active with a Ready pod, and returns it.
    pub async fn wait_active(&self, name: &str) -> Result<DebugSession> {
        self.wait(name, "phase Active with Ready=True and a ready pod", |s| {
            phase(s) == Some(Phase::Active)
                && condition_is(s, "Ready", "True")
                && !ready_pods(s).is_empty()
        })
        .await
    }

    /// Waits until the session's ttl has run out (phase Expired) and asserts what status
    /// then says: condition Expired=True, Ready=False, and no pod listed, the debugger
    /// being gone from them. Returns the session, which stays as a record.
    pub async fn wait_expired(&self, name: &str) -> Result<DebugSession> {
        let s = self
            .wait(name, "phase Expired", |s| phase(s) == Some(Phase::Expired))
            .await?;
        let status = s.status.as_ref().context("no status")?;
        assert!(condition_is(&s, "Expired", "True"), "{status:#?}");
        assert!(condition_is(&s, "Ready", "False"), "{status:#?}");
        assert!(
            status.pods.is_empty(),
            "an expired session lists pods: {status:#?}"
        );
        Ok(s)
    }

    /// Waits until the session is in phase `expected` with its Ready condition False for
    /// `reason`, as the operator reports a session it cannot (or can no longer) serve.
    pub async fn wait_refused(
        &self,
        name: &str,
        expected: Phase,
        reason: &str,
    ) -> Result<DebugSession> {
        let what = format!("phase {expected:?} with Ready=False reason {reason}");
        self.wait(name, &what, |s| {
            phase(s) == Some(expected)
                && condition(s, "Ready").is_some_and(|c| c.status == "False" && c.reason == reason)
        })
        .await
    }

    /// Removes every finalizer of session `name`, as a cluster admin can (the
    /// ValidatingAdmissionPolicy lets only holders of the `finalize` verb do it).
    pub async fn strip_finalizers(&self, name: &str) -> Result<()> {
        let strip: kube::api::Patch<Value> = kube::api::Patch::Json(serde_json::from_value(
            serde_json::json!([{"op": "remove", "path": "/metadata/finalizers"}]),
        )?);
        self.api
            .patch(name, &kube::api::PatchParams::default(), &strip)
            .await
            .with_context(|| format!("stripping the finalizers of session {name}"))?;
        Ok(())
    }

    /// Deletes the session and waits until it is gone, i.e. the operator has torn it down
    /// and released its finalizer.
    pub async fn delete_and_wait_gone(&self, name: &str) -> Result<()> {
        let uid = self.delete(name).await?;
        self.wait_gone(name, &uid).await
    }

    /// Asks for the session's deletion and returns its UID, for [`Sessions::wait_gone`].
    pub async fn delete(&self, name: &str) -> Result<String> {
        let session = self.api.get(name).await?;
        self.api
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting DebugSession {name}"))?;
        Ok(session.uid().unwrap_or_default())
    }

    /// Waits until the session with `uid` is gone.
    pub async fn wait_gone(&self, name: &str, uid: &str) -> Result<()> {
        self.wait_gone_within(name, uid, TIMEOUT).await
    }

    /// Waits at most `timeout` until the session with `uid` is gone.
    pub async fn wait_gone_within(&self, name: &str, uid: &str, timeout: Duration) -> Result<()> {
        let gone = tokio::time::timeout(
            timeout,
            await_condition(self.api.clone(), name, conditions::is_deleted(uid)),
        )
        .await;
        match gone {
            Ok(result) => result.map(|_| ()).context("watching the deletion"),
            Err(_) => Err(self
                .timed_out(
                    name,
                    "its deletion (teardown, then the finalizer released)",
                    timeout,
                )
                .await),
        }
    }

    async fn timed_out(&self, name: &str, what: &str, timeout: Duration) -> anyhow::Error {
        let state = match self.api.get_opt(name).await {
            Ok(Some(s)) => serde_yaml::to_string(&s).unwrap_or_default(),
            Ok(None) => "(gone)".to_owned(),
            Err(e) => format!("(cannot read it: {e})"),
        };
        let events = Events::new(&self.cluster.client, &self.namespace)
            .for_object("DebugSession", name)
            .await
            .map(|es| format!("{es:#?}"))
            .unwrap_or_else(|e| format!("(cannot list events: {e})"));
        let log = self.cluster.operator_log_tail().await;
        anyhow!(
            "timed out after {timeout:?} waiting for DebugSession {}/{name}: {what}\n\
             --- session ---\n{state}\n--- events ---\n{events}\n--- operator log (tail) ---\n{log}",
            self.namespace
        )
    }
}

pub fn phase(session: &DebugSession) -> Option<Phase> {
    session.status.as_ref().and_then(|s| s.phase)
}

pub fn condition<'a>(session: &'a DebugSession, type_: &str) -> Option<&'a Condition> {
    session
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// Name of the DebugPolicy that admitted the session (`(built-in)` for the built-in
/// default), from its status.
pub fn admitted_by(session: &DebugSession) -> Option<&str> {
    session.status.as_ref()?.policy.as_deref()
}

/// True when condition `type_` has status `status` ("True" or "False").
pub fn condition_is(session: &DebugSession, type_: &str, status: &str) -> bool {
    condition(session, type_).is_some_and(|c| c.status == status)
}

/// The pods in the session's status whose debugger is running.
pub fn ready_pods(session: &DebugSession) -> Vec<DebugPod> {
    session
        .status
        .as_ref()
        .map(|s| s.pods.iter().filter(|p| p.ready).cloned().collect())
        .unwrap_or_default()
}
