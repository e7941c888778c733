//! Load for the benchmark: many objects created by parallel clients, and waiting until
//! the cluster's own controllers have caught up with them.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use tokio::time::Instant;

use super::observe::Observer;
use crate::wait::{Polled, poll};

/// `count` clients, each with its own connection to the API server, as separate users'
/// tools would have.
pub async fn clients(count: usize) -> Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(Client::try_default().await?);
    }
    Ok(clients)
}

/// When a parallel creation began and when its last create returned.
#[derive(Clone, Copy, Debug)]
pub struct Created {
    pub first: Instant,
    pub last: Instant,
}

/// Creates `objects` in `namespace`, shared round-robin among `clients`, each client
/// creating its share one after the other, all clients at once.
pub async fn create_parallel<K>(
    clients: &[Client],
    namespace: &str,
    objects: Vec<K>,
) -> Result<Created>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static,
{
    let n = clients.len().max(1);
    let mut shares: Vec<Vec<K>> = vec![Vec::new(); n];
    for (i, object) in objects.into_iter().enumerate() {
        shares[i % n].push(object);
    }
    let first = Instant::now();
    let mut tasks = Vec::new();
    for (client, share) in clients.iter().zip(shares) {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        tasks.push(tokio::spawn(async move {
            let mut last = Instant::now();
            for object in share {
                api.create(&PostParams::default(), &object)
                    .await
                    .with_context(|| format!("creating {}", object.name_any()))?;
                last = Instant::now();
            }
            anyhow::Ok(last)
        }));
    }
    let mut last = first;
    for task in tasks {
        last = last.max(task.await.context("a creating task panicked")??);
    }
    Ok(Created { first, last })
}

/// Runs `each` on every name, shared round-robin among `clients` as in
/// [`create_parallel`].
pub async fn for_each_parallel<F, Fut>(
    clients: &[Client],
    names: &BTreeSet<String>,
    each: F,
) -> Result<()>
where
    F: Fn(Client, String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let n = clients.len().max(1);
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); n];
    for (i, name) in names.iter().enumerate() {
        shares[i % n].push(name.clone());
    }
    let mut tasks = Vec::new();
    for (client, share) in clients.iter().zip(shares) {
        let (client, each) = (client.clone(), each.clone());
        tasks.push(tokio::spawn(async move {
            for name in share {
                each(client.clone(), name).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a task panicked")??;
    }
    Ok(())
}

/// Waits until the Deployment controller has observed the latest generation of every
/// Deployment named in `names` (watching them); returns how long that took.
pub async fn deployments_observed(
    api: &Api<Deployment>,
    names: &BTreeSet<String>,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let mut observer = Observer::start(api.clone(), Default::default()).await?;
    observer
        .until_all(
            "the Deployment controller to observe every Deployment",
            names,
            timeout,
            |d: &Deployment| {
                d.metadata.generation.is_some()
                    && d.status.as_ref().and_then(|s| s.observed_generation)
                        >= d.metadata.generation
            },
        )
        .await?;
    Ok(start.elapsed())
}

/// Like [`deployments_observed`], but gives up after `within` and then says how many of
/// the Deployments were observed (listing them): for a load so large that the Deployment
/// controller (at its client's default 20 requests per second) would take many minutes.
pub async fn deployments_observed_within(
    api: &Api<Deployment>,
    names: &BTreeSet<String>,
    within: Duration,
) -> Result<(Duration, usize)> {
    let start = Instant::now();
    if deployments_observed(api, names, within).await.is_ok() {
        return Ok((start.elapsed(), names.len()));
    }
    let observed = api
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|d| {
            names.contains(&d.name_any())
                && d.metadata.generation.is_some()
                && d.status.as_ref().and_then(|s| s.observed_generation) >= d.metadata.generation
        })
        .count();
    Ok((start.elapsed(), observed))
}

/// Waits until namespace `name` is gone (its deletion already asked for); returns how
/// long that took.
pub async fn namespace_gone(client: &Client, name: &str, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let api: Api<Namespace> = Api::all(client.clone());
    poll(&format!("namespace {name} to be gone"), timeout, || async {
        Ok(match api.get_opt(name).await? {
            None => Polled::Done(()),
            Some(ns) => Polled::NotYet(format!(
                "phase {:?}",
                ns.status.and_then(|s| s.phase).unwrap_or_default()
            )),
        })
    })
    .await
    .map_err(|e| anyhow!("{e:#}"))?;
    Ok(start.elapsed())
}
