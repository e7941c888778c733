//! What the cluster can do, found out once by discovery.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;

/// What the cluster can do, found out once by discovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The `pods/ephemeralcontainers` subresource is served. Every Kubernetes API server
    /// of a supported version ([`crate::runtime::version::OLDEST_SUPPORTED`]) serves it, with no
    /// feature gate to turn it off since 1.27; a Kubernetes-like server that leaves it out
    /// gets Copy mode for Pods (and a clear refusal of mode Ephemeral) instead of 404s.
    pub ephemeral_containers: bool,
}

impl Capabilities {
    /// The capabilities of an API server that serves `core` (its `v1` resources).
    pub fn from_discovery(core: &APIResourceList) -> Self {
        Capabilities {
            ephemeral_containers: core
                .resources
                .iter()
                .any(|r| r.name == "pods/ephemeralcontainers"),
        }
    }
}

/// Finds out what the cluster serves: whether it has ephemeral containers.
pub async fn discover(client: &Client) -> Result<Capabilities, kube::Error> {
    let core = client.list_core_api_resources("v1").await?;
    Ok(Capabilities::from_discovery(&core))
}

#[cfg(test)]
mod tests;
