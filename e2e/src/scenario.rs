//! Steps that many scenarios share: a namespace with one nginx workload to debug, a
//! session on it, a session the operator refuses, a refusal that changed nothing, a
//! Secret for a debugger's env.

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use shellcar::crd::{DebugSession, Phase, TargetKind};
use shellcar::naming;

use crate::Fixture;
use crate::pod::nginx_pod;
use crate::session::{condition, session};
use crate::workload::{Snapshot, nginx_deployment};

impl Fixture {
    /// A fresh fixture (see [`Fixture::new`]) whose namespace holds the nginx Deployment
    /// `name` (see [`nginx_deployment`]) with `replicas` pods, rolled out. Returns it with
    /// the Deployment's pod template as the API server stores it: the "before" that
    /// teardown must restore exactly.
    pub async fn with_deployment(
        topic: &str,
        name: &str,
        replicas: i32,
    ) -> Result<(Fixture, Value)> {
        let f = Fixture::new(topic).await?;
        f.workloads
            .create_deployment(&nginx_deployment(name, replicas)?)
            .await?;
        let template = f.workloads.template(name).await?;
        Ok((f, template))
    }

    /// A fresh fixture (see [`Fixture::new`]) whose namespace holds the bare nginx Pod
    /// `name` (see [`nginx_pod`]; with `readiness`, a readiness probe), Ready. Returns it
    /// with the pod as it is before any session.
    pub async fn with_pod(topic: &str, name: &str, readiness: bool) -> Result<(Fixture, Pod)> {
        let f = Fixture::new(topic).await?;
        let pod = f.workloads.create_pod(&nginx_pod(name, readiness)?).await?;
        Ok((f, pod))
    }

    /// Creates session `session_name` on Deployment `deployment` with the default debugger and
    /// mode, and waits until it is Active (see [`crate::session::Sessions::wait_active`]).
    /// Returns the name of its debugger container.
    pub async fn debug_deployment(
        &self,
        session_name: &str,
        deployment: &str,
        ttl: &str,
    ) -> Result<String> {
        self.sessions
            .create(&session(
                session_name,
                TargetKind::Deployment,
                deployment,
                ttl,
            )?)
            .await?;
        self.sessions.wait_active(session_name).await?;
        Ok(naming::container_name(session_name))
    }

    /// Secret `name` holding `key: value`, created as the admin in the test's namespace.
    pub async fn create_secret(&self, name: &str, key: &str, value: &str) -> Result<()> {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {key: value},
        }))?;
        Api::<Secret>::namespaced(self.cluster.client.clone(), self.ns())
            .create(&PostParams::default(), &secret)
            .await
            .with_context(|| format!("creating Secret {name}"))?;
        Ok(())
    }

    /// Asserts that a refusal left the namespace as it was: no session, and its
    /// workloads as in `before` (generation, template, pods).
    pub async fn assert_nothing_changed(&self, before: &Snapshot) -> Result<()> {
        let sessions = self.sessions.names().await?;
        assert!(
            sessions.is_empty(),
            "sessions exist after a refusal: {sessions:?}"
        );
        assert_eq!(
            &self.workloads.snapshot().await?,
            before,
            "the namespace's workloads changed"
        );
        Ok(())
    }

    /// Waits until the operator has given up on session `name` for `reason`, and asserts
    /// what a user is told: phase Failed, Ready=False and Stalled=True both with `reason`,
    /// and a Warning Event `reason` on the session. Returns the session.
    pub async fn assert_failed(&self, name: &str, reason: &str) -> Result<DebugSession> {
        let s = self
            .sessions
            .wait_refused(name, Phase::Failed, reason)
            .await?;
        let stalled = condition(&s, "Stalled").context("no Stalled condition")?;
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", reason),
            "{:#?}",
            s.status
        );
        self.events
            .wait_for("DebugSession", name, "Warning", reason)
            .await?;
        Ok(s)
    }
}
