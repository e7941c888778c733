//! Harness for shellcar's end-to-end tests against a real cluster.
//!
//! The tests assume the local cluster is up and the operator is deployed into it
//! (`make e2e` does both); they never run the operator themselves. Run them inside the
//! cluster's network namespace:
//!
//! ```text
//! e2e/cluster exec -- cargo test -p shellcar-e2e -- --test-threads=3
//! ```
//!
//! Each test works in a namespace of its own ([`TestNamespace`]), so tests in one binary
//! can run in parallel. Set `SHELLCAR_E2E_KEEP=1` to keep the namespaces for inspection.

pub mod attack;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod events;
pub mod exec;
pub mod identity;
pub mod kubectl;
pub mod leader;
pub mod namespace;
pub mod pod;
pub mod policy;
pub mod prometheus;
pub mod psa;
pub mod scenario;
pub mod script;
pub mod session;
pub mod wait;
pub mod webhook;
pub mod workload;

pub use cluster::{Cluster, OPERATOR_NAMESPACE};
pub use namespace::TestNamespace;

use std::time::Duration;

/// Upper bound for anything the tests wait for: not a timing assertion, only a bound so a
/// broken operator fails a test instead of hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(120);

use anyhow::Result;

use crate::events::Events;
use crate::session::Sessions;
use crate::workload::Workloads;

/// What most tests start from: a connected cluster with shellcar deployed and a fresh
/// namespace, with handles on its workloads, sessions and Events.
pub struct Fixture {
    pub cluster: Cluster,
    pub workloads: Workloads,
    pub sessions: Sessions,
    pub events: Events,
    // Last: the namespace is deleted when the fixture is dropped.
    pub namespace: TestNamespace,
}

impl Fixture {
    /// Connects (checking that shellcar is deployed) and creates namespace `e2e-<topic>-*`.
    pub async fn new(topic: &str) -> Result<Fixture> {
        let cluster = Cluster::connect().await?;
        let namespace = TestNamespace::create(&cluster, topic).await?;
        let ns = namespace.name();
        Ok(Fixture {
            workloads: Workloads::new(&cluster.client, ns),
            sessions: Sessions::new(&cluster, ns),
            events: Events::new(&cluster.client, ns),
            cluster,
            namespace,
        })
    }

    /// Name of the test's namespace.
    pub fn ns(&self) -> &str {
        self.namespace.name()
    }
}
