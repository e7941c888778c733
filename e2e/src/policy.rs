//! DebugPolicies for one test: cluster-scoped objects that select only the test's own
//! namespace, and are deleted when the test ends.
//!
//! A DebugPolicy governs every namespace its `namespaceSelector` matches, and tests in
//! other namespaces run meanwhile: a policy without a selector, or with one that other
//! namespaces match, would change what their sessions may do. [`Fixture::policy`]
//! therefore always writes the selector itself: label [`namespace_label`] of the test's
//! namespace, which no other namespace carries. The policy is deleted when its
//! [`TestPolicy`] is dropped, even when the test fails; policies of runs that were killed
//! are deleted by the next run after [`STALE_AFTER`].
//!
//! The admission webhook and the operator learn of a new policy (or a new namespace
//! label) asynchronously: [`TestPolicy::wait_ready`] waits for the operator's verdict on
//! the policy, [`Fixture::wait_admitted`] and [`Fixture::wait_refused_at_admission`] for
//! the webhook's on a session.

use std::cell::Cell;

use anyhow::{Context as _, Result, anyhow, bail};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use shellcar::crd::{DebugPolicy, DebugSession};

use crate::identity::User;
use crate::namespace::E2E_LABEL;
use crate::wait::{Polled, poll};
use crate::workload::pretty;
use crate::{Cluster, Fixture, TIMEOUT};

/// Prefix of the namespace labels that the tests' policies select.
pub const POLICY_LABEL_PREFIX: &str = "policy.e2e.shellcar.dev/";

/// Value of the label [`namespace_label`].
pub const SELECTED: &str = "yes";

/// Test policies older than this are deleted when a test creates one: a run that was
/// killed leaves its policies behind. No test takes this long.
pub const STALE_AFTER: SignedDuration = SignedDuration::from_mins(30);

/// How many answers in a row the webhook must give before a wait for its view of the
/// policies is over: several replicas serve it, and each learns of a change on its own.
const SETTLED: u32 = 3;

/// The label key that marks namespace `namespace` for its test's policies:
/// `policy.e2e.shellcar.dev/<namespace>`. Namespace names are unique, so no other
/// namespace, of this run or another, carries it.
pub fn namespace_label(namespace: &str) -> String {
    format!("{POLICY_LABEL_PREFIX}{namespace}")
}

/// The API resource of DebugPolicies, for untyped access (policies as a user writes them).
fn policy_resource() -> ApiResource {
    ApiResource::erase::<DebugPolicy>(&())
}

/// A DebugPolicy of one test, deleted when dropped (unless `SHELLCAR_E2E_KEEP` is set; it
/// selects only the kept namespace, so keeping it changes nothing elsewhere).
pub struct TestPolicy {
    pub name: String,
    api: Api<DynamicObject>,
    cluster: Cluster,
    /// Set once the policy is deleted (or handed to [`TestPolicy::delete`]).
    deleted: bool,
}

impl Fixture {
    /// Sets label `key=value` on the test's namespace.
    pub async fn label_namespace(&self, key: &str, value: &str) -> Result<()> {
        let ns = self.ns();
        let patch = json!({"metadata": {"labels": {key: value}}});
        Api::<Namespace>::all(self.cluster.client.clone())
            .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("labelling namespace {ns} {key}={value}"))?;
        Ok(())
    }

    /// Creates DebugPolicy `<namespace>-<suffix>` with `spec` (camelCase JSON, as a user
    /// writes it) that selects the test's namespace only: the namespace is labelled
    /// [`namespace_label`]`=`[`SELECTED`] and the policy's `namespaceSelector` is set to
    /// that label. `spec` must not have a selector of its own. The policy is labelled
    /// [`E2E_LABEL`]`=true`, and deleted when the returned guard is dropped.
    pub async fn policy(&self, suffix: &str, spec: Value) -> Result<TestPolicy> {
        let Value::Object(spec) = spec else {
            bail!("a DebugPolicy spec must be an object: {spec}");
        };
        if spec.contains_key("namespaceSelector") {
            bail!(
                "test policies select the test's namespace only; their selector is set \
                 by Fixture::policy, not by the test: {}",
                pretty(&Value::Object(spec))
            );
        }
        let label = namespace_label(self.ns());
        self.label_namespace(&label, SELECTED).await?;
        let selector = json!({"matchLabels": {label: SELECTED}});
        self.policy_selecting(suffix, selector, Value::Object(spec))
            .await
    }

    /// Creates DebugPolicy `<namespace>-<suffix>` with `spec` and namespaceSelector
    /// `selector` as written, deleted when the returned guard is dropped. Unlike
    /// [`Fixture::policy`], it may select namespaces of other tests: only for tests that
    /// run alone in their test binary, and with a selector that changes nothing for the
    /// others for as long as the policy exists.
    pub async fn policy_selecting(
        &self,
        suffix: &str,
        selector: Value,
        spec: Value,
    ) -> Result<TestPolicy> {
        let Value::Object(mut spec) = spec else {
            bail!("a DebugPolicy spec must be an object: {spec}");
        };
        spec.insert("namespaceSelector".to_owned(), selector);
        let api: Api<DynamicObject> =
            Api::all_with(self.cluster.client.clone(), &policy_resource());
        delete_stale(&api).await?;
        let name = format!("{}-{suffix}", self.ns());
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": DebugPolicy::api_version(&()),
            "kind": DebugPolicy::kind(&()),
            "metadata": {"name": name, "labels": {E2E_LABEL: "true"}},
            "spec": spec,
        }))?;
        api.create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating DebugPolicy {name}"))?;
        eprintln!("test policy: {name}");
        Ok(TestPolicy {
            name,
            api,
            cluster: self.cluster.clone(),
            deleted: false,
        })
    }

    /// Waits until shellcar's webhook admits session `manifest` (JSON as a user writes
    /// it) in the test's namespace, [`SETTLED`] times in a row, asking with dry-run
    /// creates that change nothing. For a session that a policy created (or a namespace
    /// labelled) just before allows: the webhook learns of it asynchronously.
    pub async fn wait_admitted(&self, manifest: &Value) -> Result<()> {
        self.admitted(&self.cluster.client, self.ns(), "the admin", manifest)
            .await
    }

    /// [`Fixture::wait_admitted`], creating as `user`: for what a policy's `access`
    /// decides, which depends on who asks.
    pub async fn wait_admitted_as(&self, user: &User, manifest: &Value) -> Result<()> {
        self.admitted(&user.client, self.ns(), &user.username, manifest)
            .await
    }

    /// [`Fixture::wait_admitted`] in namespace `namespace` instead of the test's own: for
    /// namespaces shellcar treats apart (kube-system, its own).
    pub async fn wait_admitted_in(&self, namespace: &str, manifest: &Value) -> Result<()> {
        self.admitted(&self.cluster.client, namespace, "the admin", manifest)
            .await
    }

    async fn admitted(
        &self,
        client: &Client,
        namespace: &str,
        who: &str,
        manifest: &Value,
    ) -> Result<()> {
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        self.settle_admission(
            client,
            namespace,
            &format!("shellcar's webhook to admit session {name} from {who} in {namespace}"),
            manifest,
            |answer| match answer {
                Ok(_) => Ok(None),
                Err(message) => Ok(Some(format!("refused: {message}"))),
            },
        )
        .await
        .map(|_| ())
    }

    /// Waits until shellcar's webhook refuses session `manifest` (JSON as a user writes
    /// it) in the test's namespace with a message containing every one of `parts`,
    /// [`SETTLED`] times in a row, asking with dry-run creates that change nothing; returns
    /// the last message. For a session that a policy created (or a namespace labelled)
    /// just before forbids.
    pub async fn wait_refused_at_admission(
        &self,
        manifest: &Value,
        parts: &[&str],
    ) -> Result<String> {
        self.refused(
            &self.cluster.client,
            self.ns(),
            "the admin",
            manifest,
            parts,
        )
        .await
    }

    /// [`Fixture::wait_refused_at_admission`] in namespace `namespace` instead of the
    /// test's own: for namespaces shellcar treats apart (kube-system, its own).
    pub async fn wait_refused_at_admission_in(
        &self,
        namespace: &str,
        manifest: &Value,
        parts: &[&str],
    ) -> Result<String> {
        self.refused(
            &self.cluster.client,
            namespace,
            "the admin",
            manifest,
            parts,
        )
        .await
    }

    /// [`Fixture::wait_refused_at_admission`], creating as `user`: for what a policy's
    /// `access` decides, which depends on who asks.
    pub async fn wait_refused_at_admission_as(
        &self,
        user: &User,
        manifest: &Value,
        parts: &[&str],
    ) -> Result<String> {
        self.refused(&user.client, self.ns(), &user.username, manifest, parts)
            .await
    }

    async fn refused(
        &self,
        client: &Client,
        namespace: &str,
        who: &str,
        manifest: &Value,
        parts: &[&str],
    ) -> Result<String> {
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        self.settle_admission(
            client,
            namespace,
            &format!(
                "shellcar's webhook to refuse session {name} from {who} in {namespace} naming {parts:?}"
            ),
            manifest,
            |answer| match answer {
                Ok(created) => Ok(Some(format!(
                    "admitted: {}",
                    pretty(&serde_json::to_value(created)?)
                ))),
                Err(message) if parts.iter().all(|p| message.contains(p)) => Ok(None),
                Err(message) => Ok(Some(format!("refused, without {parts:?}: {message}"))),
            },
        )
        .await
    }

    /// Dry-run creates `manifest` with `client` until `verdict` is content with the answer
    /// (`None`) [`SETTLED`] times in a row; returns the last refusal's message (empty when
    /// admitted). `verdict` gets the created object, or the message of a 4xx refusal.
    async fn settle_admission(
        &self,
        client: &Client,
        namespace: &str,
        what: &str,
        manifest: &Value,
        verdict: impl Fn(Result<&DynamicObject, &str>) -> Result<Option<String>>,
    ) -> Result<String> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &ApiResource::erase::<DebugSession>(&()),
        );
        let object: DynamicObject =
            serde_json::from_value(manifest.clone()).context("a session manifest")?;
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let streak = Cell::new(0);
        let settled = poll(what, TIMEOUT, || async {
            let (unmet, message) = match api.create(&dry_run, &object).await {
                Ok(created) => (verdict(Ok(&created))?, String::new()),
                Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                    (verdict(Err(e.message.as_str()))?, e.message.clone())
                }
                Err(e) => return Err(e).context("dry-run create of a session"),
            };
            Ok(match unmet {
                None if streak.get() + 1 >= SETTLED => Polled::Done(message),
                None => {
                    streak.set(streak.get() + 1);
                    Polled::NotYet(format!("answered so {} time(s) in a row", streak.get()))
                }
                Some(last) => {
                    streak.set(0);
                    Polled::NotYet(last)
                }
            })
        })
        .await;
        match settled {
            Ok(message) => Ok(message),
            Err(e) => Err(anyhow!(
                "{e:#}\n--- operator log (tail) ---\n{}",
                self.cluster.operator_log_tail().await
            )),
        }
    }
}

impl TestPolicy {
    /// The policy as the API server returns it, as JSON.
    pub async fn get_json(&self) -> Result<Value> {
        let object = self
            .api
            .get(&self.name)
            .await
            .with_context(|| format!("reading DebugPolicy {}", self.name))?;
        Ok(serde_json::to_value(object)?)
    }

    /// Waits until the operator has judged the policy's current spec
    /// (`status.observedGeneration` is `metadata.generation`) with condition Ready of
    /// status `status` ("True" or "False"), and returns that condition. Ready=True says
    /// the operator (and so the webhook that runs with it) holds the policy.
    pub async fn wait_ready(&self, status: &str) -> Result<Value> {
        let judged = poll(
            &format!("DebugPolicy {} to be judged with Ready={status}", self.name),
            TIMEOUT,
            || async {
                let policy = self.get_json().await?;
                let generation = &policy["metadata"]["generation"];
                let ready = policy["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Ready");
                Ok(match ready {
                    Some(c)
                        if !generation.is_null()
                            && policy["status"]["observedGeneration"] == *generation
                            && c["status"] == status =>
                    {
                        Polled::Done(c.clone())
                    }
                    _ => Polled::NotYet(format!(
                        "generation {generation}, status {}",
                        policy["status"]
                    )),
                })
            },
        )
        .await;
        match judged {
            Ok(condition) => Ok(condition),
            Err(e) => Err(anyhow!(
                "{e:#}\n--- operator log (tail) ---\n{}",
                self.cluster.operator_log_tail().await
            )),
        }
    }

    /// Deletes the policy, as a user would, and waits until it is gone.
    pub async fn delete(mut self) -> Result<()> {
        self.deleted = true;
        self.api
            .delete(&self.name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting DebugPolicy {}", self.name))?;
        poll(
            &format!("DebugPolicy {} to be gone", self.name),
            TIMEOUT,
            || async {
                Ok(match self.api.get_opt(&self.name).await? {
                    None => Polled::Done(()),
                    Some(p) => Polled::NotYet(format!(
                        "still there, deletionTimestamp {:?}, finalizers {:?}",
                        p.metadata.deletion_timestamp,
                        p.finalizers()
                    )),
                })
            },
        )
        .await
    }
}

impl Drop for TestPolicy {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        if std::env::var_os("SHELLCAR_E2E_KEEP").is_some() {
            eprintln!("keeping DebugPolicy {} (SHELLCAR_E2E_KEEP)", self.name);
            return;
        }
        // As TestNamespace's drop: a runtime and a client of its own, on another thread.
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let api: Api<DynamicObject> =
                    Api::all_with(Client::try_default().await?, &policy_resource());
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(e.into()),
                }
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "could not delete DebugPolicy {}: {e:#}; it selects only its test's \
                 namespace, delete it by hand",
                self.name
            ),
            Err(_) => eprintln!(
                "could not delete DebugPolicy {}: thread panicked",
                self.name
            ),
        }
    }
}

/// Deletes test policies left by earlier runs.
async fn delete_stale(api: &Api<DynamicObject>) -> Result<()> {
    let now = Timestamp::now();
    let policies = api
        .list(&ListParams::default().labels(&format!("{E2E_LABEL}=true")))
        .await
        .context("listing test DebugPolicies")?;
    for policy in policies {
        let stale = policy
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| now.duration_since(t.0) > STALE_AFTER);
        if stale && policy.metadata.deletion_timestamp.is_none() {
            eprintln!("deleting stale test DebugPolicy {}", policy.name_any());
            // Another test may be deleting it at the same moment.
            if let Err(e) = api
                .delete(&policy.name_any(), &DeleteParams::background())
                .await
            {
                eprintln!(
                    "could not delete stale DebugPolicy {}: {e}",
                    policy.name_any()
                );
            }
        }
    }
    Ok(())
}
