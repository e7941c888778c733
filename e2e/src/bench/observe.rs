//! Timing by watch: what the benchmark waits for is seen the moment the API server sends
//! it, not at the next poll. A task reads the watch and stamps each event with the instant
//! it arrived; the benchmark then looks through the stamped events at its own pace.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the watch said about one object, and when.
#[derive(Clone, Debug)]
pub enum Seen<K> {
    Applied(K),
    Deleted(K),
}

impl<K> Seen<K> {
    pub fn object(&self) -> &K {
        match self {
            Seen::Applied(k) | Seen::Deleted(k) => k,
        }
    }
}

/// A running watch whose events are stamped with their arrival.
pub struct Observer<K> {
    events: mpsc::UnboundedReceiver<(Instant, Seen<K>)>,
    task: JoinHandle<()>,
}

impl<K> Drop for Observer<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watch configuration for the one object named `name`.
pub fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

impl<K> Observer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching and returns once the initial list is in: everything that happens
    /// from then on is seen.
    pub async fn start(api: Api<K>, config: watcher::Config) -> Result<Observer<K>> {
        let (tx, events) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut stream = watcher(api, config).default_backoff().boxed();
            while let Some(event) = stream.next().await {
                let now = Instant::now();
                let seen = match event {
                    Ok(watcher::Event::Apply(k) | watcher::Event::InitApply(k)) => Seen::Applied(k),
                    Ok(watcher::Event::Delete(k)) => Seen::Deleted(k),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(ready) = ready_tx.take() {
                            let _ = ready.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Init) => continue,
                    Err(e) => {
                        eprintln!("watch error (retrying): {e}");
                        continue;
                    }
                };
                if tx.send((now, seen)).is_err() {
                    return;
                }
            }
        });
        tokio::time::timeout(crate::TIMEOUT, ready)
            .await
            .map_err(|_| anyhow!("the watch did not list within {:?}", crate::TIMEOUT))?
            .map_err(|_| anyhow!("the watch ended before it listed"))?;
        Ok(Observer { events, task })
    }

    /// Forgets what was seen so far.
    pub fn drain(&mut self) {
        while self.events.try_recv().is_ok() {}
    }

    /// The next event, within `timeout` of now.
    async fn next(&mut self, what: &str, deadline: Instant) -> Result<(Instant, Seen<K>)> {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => bail!("the watch ended while waiting for {what}"),
            Err(_) => bail!("timed out waiting for {what}"),
        }
    }

    /// Waits for the first object applied (added or changed) that satisfies `pred`, and
    /// returns the instant it arrived, with the object.
    pub async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&K) -> bool,
    ) -> Result<(Instant, K)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let (at, Seen::Applied(k)) = self.next(what, deadline).await?
                && pred(&k)
            {
                return Ok((at, k));
            }
        }
    }

    /// Waits until the object named `name` is deleted; returns when that arrived.
    pub async fn until_deleted(&mut self, name: &str, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        let what = format!("{name} to be deleted");
        loop {
            if let (at, Seen::Deleted(k)) = self.next(&what, deadline).await?
                && k.name_any() == name
            {
                return Ok(at);
            }
        }
    }

    /// Waits until every object named in `names` has once been seen satisfying `pred`;
    /// returns the instant the last of them was. `pred` should not turn false again once
    /// true (a status written, a generation observed), or the answer means little.
    pub async fn until_all(
        &mut self,
        what: &str,
        names: &BTreeSet<String>,
        timeout: Duration,
        pred: impl Fn(&K) -> bool,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        let mut missing = names.clone();
        let mut last = Instant::now();
        while !missing.is_empty() {
            let (at, seen) = self
                .next(&format!("{what} ({} left)", missing.len()), deadline)
                .await?;
            if let Seen::Applied(k) = seen
                && pred(&k)
                && missing.remove(&k.name_any())
            {
                last = at;
            }
        }
        Ok(last)
    }

    /// Waits until every object named in `names` has been deleted; returns the instant
    /// the last deletion arrived.
    pub async fn until_all_deleted(
        &mut self,
        what: &str,
        names: &BTreeSet<String>,
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        let mut missing = names.clone();
        let mut last = Instant::now();
        while !missing.is_empty() {
            let (at, seen) = self
                .next(&format!("{what} ({} left)", missing.len()), deadline)
                .await?;
            if let Seen::Deleted(k) = seen
                && missing.remove(&k.name_any())
            {
                last = at;
            }
        }
        Ok(last)
    }
}
