//! A temporary, labelled namespace per test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use crate::wait::{Polled, poll};
use crate::{Cluster, TIMEOUT};

/// Label on every namespace the tests create.
pub const E2E_LABEL: &str = "shellcar.dev/e2e";

/// Namespaces of earlier runs older than this are deleted when a test starts: a run that
/// was killed leaves its namespaces behind. No test takes this long.
const STALE_AFTER: SignedDuration = SignedDuration::from_mins(30);

/// A namespace created for one test, deleted when dropped (unless `SHELLCAR_E2E_KEEP` is
/// set, to inspect what a failed test left).
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// Creates `e2e-<topic>-<unique suffix>`, labelled [`E2E_LABEL`]`=true`.
    pub async fn create(cluster: &Cluster, topic: &str) -> Result<TestNamespace> {
        let api: Api<Namespace> = Api::all(cluster.client.clone());
        delete_stale(&api).await?;
        let mut attempt = 0;
        loop {
            let name = format!("e2e-{topic}-{}", unique_suffix());
            let namespace = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some([(E2E_LABEL.to_owned(), "true".to_owned())].into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            match api.create(&PostParams::default(), &namespace).await {
                Ok(_) => {
                    eprintln!("test namespace: {name}");
                    let namespace = TestNamespace { name };
                    namespace.wait_default_service_account(cluster).await?;
                    return Ok(namespace);
                }
                // a suffix taken by another test: draw again
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => attempt += 1,
                Err(e) => return Err(e).with_context(|| format!("creating namespace {name}")),
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Pods are refused until the namespace's `default` ServiceAccount exists.
    async fn wait_default_service_account(&self, cluster: &Cluster) -> Result<()> {
        let api: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), &self.name);
        poll(
            &format!("ServiceAccount {}/default", self.name),
            TIMEOUT,
            || async {
                Ok(match api.get_opt("default").await? {
                    Some(_) => Polled::Done(()),
                    None => Polled::NotYet("absent".to_owned()),
                })
            },
        )
        .await
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("SHELLCAR_E2E_KEEP").is_some() {
            eprintln!("keeping namespace {} (SHELLCAR_E2E_KEEP)", self.name);
            return;
        }
        // Drop cannot await, and the test's runtime may be shutting down: delete from a
        // thread with a runtime of its own. Deletion is not awaited; the namespace
        // controller finishes it.
        // The test's client cannot be used here: its connection worker is a task of the
        // test's runtime, which this blocking drop stalls.
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let api: Api<Namespace> = Api::all(Client::try_default().await?);
                api.delete(&name, &DeleteParams::background()).await?;
                Ok(())
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not delete namespace {}: {e:#}", self.name),
            Err(_) => eprintln!("could not delete namespace {}: thread panicked", self.name),
        }
    }
}

/// Deletes e2e namespaces left by earlier runs.
async fn delete_stale(api: &Api<Namespace>) -> Result<()> {
    let now = Timestamp::now();
    let namespaces = api
        .list(&ListParams::default().labels(&format!("{E2E_LABEL}=true")))
        .await
        .context("listing e2e namespaces")?;
    for ns in namespaces {
        let stale = ns
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| now.duration_since(t.0) > STALE_AFTER);
        if stale && ns.metadata.deletion_timestamp.is_none() {
            eprintln!("deleting stale test namespace {}", ns.name_any());
            // Another test may be deleting it at the same moment.
            if let Err(e) = api
                .delete(&ns.name_any(), &DeleteParams::background())
                .await
            {
                eprintln!("could not delete stale namespace {}: {e}", ns.name_any());
            }
        }
    }
    Ok(())
}

/// Six hex digits, distinct between the tests of one run and unlikely to repeat across runs.
fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = nanos
        .wrapping_mul(2_654_435_761)
        .wrapping_add(std::process::id().wrapping_mul(40_503))
        .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(97_531));
    format!("{:06x}", mixed & 0xff_ffff)
}
