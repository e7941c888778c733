//! The webhook's I/O seam: the [`Io`] trait the review logic asks through, so that it is
//! tested with a fake, and [`KubeIo`], the real one against the API server. The dry run
//! sends the change the session's own mode builds ([`modes::dry_run`]).

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, PodSpec};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::crd::{DebugPolicy, DebugSession, Requester};
use crate::k8s::access::{self, Check};
use crate::k8s::workload;
use crate::rules::govern::{Surroundings, live_before};
use crate::rules::validate::Plan;
use crate::session::Error;
use crate::session::modes::{self, DryRun};

/// The webhook's I/O.
pub trait Io: Send + Sync + 'static {
    /// Whether `requester` passes every check of any one of `alternatives`
    /// (SubjectAccessReviews; [`access::authorize`]).
    fn authorize(
        &self,
        requester: &Requester,
        alternatives: &[Vec<Check>],
    ) -> impl Future<Output = Result<(), access::Error>> + Send;

    /// The pod spec of the session's target (a Pod's spec, a workload's template), or
    /// `None` if the target does not exist yet.
    fn target_pod_spec(
        &self,
        session: &DebugSession,
    ) -> impl Future<Output = Result<Option<PodSpec>, kube::Error>> + Send;

    /// What decides whether a session in `namespace` is allowed: the policies, the
    /// namespace's labels, and how many live sessions it has.
    fn surroundings(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<Surroundings, kube::Error>> + Send;

    /// The exact change the session would make, sent with `dryRun=All`: the change its
    /// mode's own apply sends.
    fn try_change(
        &self,
        session: &DebugSession,
        plan: &Plan,
    ) -> impl Future<Output = Result<DryRun, Error>> + Send;
}

/// The webhook's I/O against the API server.
pub struct KubeIo {
    pub client: Client,
}

impl Io for KubeIo {
    async fn authorize(
        &self,
        requester: &Requester,
        alternatives: &[Vec<Check>],
    ) -> Result<(), access::Error> {
        access::authorize(&self.client, requester, alternatives).await
    }

    async fn target_pod_spec(
        &self,
        session: &DebugSession,
    ) -> Result<Option<PodSpec>, kube::Error> {
        let target = &session.spec.target;
        let ns = session.namespace().unwrap_or_default();
        match workload::pod_spec(&self.client, &ns, target.kind, &target.name).await {
            Ok(spec) => Ok(spec),
            Err(workload::Error::Kube { source, .. }) => Err(source),
            Err(workload::Error::NoTemplate { .. }) => Ok(None),
        }
    }

    async fn surroundings(&self, namespace: &str) -> Result<Surroundings, kube::Error> {
        let policies = Api::<DebugPolicy>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let ns = Api::<Namespace>::all(self.client.clone())
            .get(namespace)
            .await?;
        let sessions = Api::<DebugSession>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await?;
        // The session being created comes after every one there is.
        let live_sessions = live_before(&sessions.items, namespace, None);
        Ok(Surroundings {
            policies: policies.items.into_iter().map(Arc::new).collect(),
            labels: ns.labels().clone(),
            live_sessions: Some(live_sessions),
        })
    }

    async fn try_change(&self, session: &DebugSession, plan: &Plan) -> Result<DryRun, Error> {
        modes::dry_run(&self.client, session, plan).await
    }
}
