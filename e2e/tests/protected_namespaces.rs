//! kube-system and the operator's own namespace are protected (issue 18 item 9): a session
//! there is refused at `kubectl apply` unless a DebugPolicy names the namespace in its
//! namespaceSelector (`kubernetes.io/metadata.name`); a policy that selects every
//! namespace does not count.
//!
//! A policy with an empty namespaceSelector governs every namespace, so it would change
//! what the sessions of other tests may do: it exists only inside [`ALONE`], in this test
//! binary of its own, which cargo runs alone, and it allows what the built-in default
//! allows. The Deployment debugged in kube-system is the test's own, deleted at the end.

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use shellcar::crd::TargetKind;
use shellcar_e2e::session::session;
use shellcar_e2e::workload::{Workloads, nginx_deployment};
use shellcar_e2e::{Fixture, OPERATOR_NAMESPACE, attack, kubectl};
use tokio::sync::Mutex;

/// One test at a time: one of them has a policy that selects every namespace.
static ALONE: Mutex<()> = Mutex::const_new(());

/// The namespace of the cluster's own components.
const KUBE_SYSTEM: &str = "kube-system";

/// The label the API server gives every namespace, holding its name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The ttl of every session here: it never runs.
const TTL: &str = "10m";

/// The operator's own Deployment, as config/default names it.
const OPERATOR_DEPLOYMENT: &str = shellcar_e2e::cluster::OPERATOR_DEPLOYMENT;

/// Session `name` on Deployment `target`, as JSON as a user writes it.
fn request(name: &str, target: &str) -> Result<Value> {
    Ok(serde_json::to_value(session(
        name,
        TargetKind::Deployment,
        target,
        TTL,
    )?)?)
}

/// What the refusal in `namespace` names: the namespace, and how to allow it.
fn refusal(namespace: &str) -> [String; 2] {
    [
        format!("namespace {namespace} is protected"),
        format!("matchLabels {{{NAME_LABEL}: {namespace}}}"),
    ]
}

/// `kubectl apply` of `manifest` in `namespace` as the admin, which must be refused with
/// a message naming every one of `parts`, and create nothing.
async fn assert_apply_refused(
    attack: &str,
    f: &Fixture,
    namespace: &str,
    manifest: &Value,
    parts: &[String],
) -> Result<()> {
    let name = manifest["metadata"]["name"]
        .as_str()
        .context("the manifest has no name")?;
    let out = kubectl::apply(None, namespace, manifest).await?;
    let sessions = shellcar_e2e::session::Sessions::new(&f.cluster, namespace);
    let created = sessions.api.get_opt(name).await?.is_some();
    attack::record(
        attack,
        "refused at kubectl apply, naming the namespace and how to allow it; nothing created",
        attack::observed(out.status.success(), &out.stderr),
        !out.status.success() && !created && parts.iter().all(|p| out.stderr.contains(p.as_str())),
    );
    assert!(
        !out.status.success(),
        "`{}` of session {namespace}/{name} succeeded; it must be refused naming {parts:?}: {out:#?}",
        out.command
    );
    for part in parts {
        assert!(
            out.stderr.contains(part.as_str()),
            "the refusal of session {namespace}/{name} must name {part:?}; stderr: {}",
            out.stderr
        );
    }
    assert!(
        !created,
        "session {namespace}/{name} exists after its refusal"
    );
    Ok(())
}

/// A Deployment of the test's own in kube-system, deleted when dropped.
struct SystemDeployment {
    name: String,
}

impl SystemDeployment {
    async fn create(f: &Fixture, name: &str) -> Result<SystemDeployment> {
        let workloads = Workloads::new(&f.cluster.client, KUBE_SYSTEM);
        // Guarded before it is created: a failed rollout still deletes it.
        let guard = SystemDeployment {
            name: name.to_owned(),
        };
        workloads
            .create_deployment(&nginx_deployment(name, 1)?)
            .await
            .with_context(|| format!("creating Deployment {KUBE_SYSTEM}/{name}"))?;
        Ok(guard)
    }
}

impl Drop for SystemDeployment {
    fn drop(&mut self) {
        // As TestPolicy's drop: a runtime and a client of its own, on another thread.
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let api: Api<Deployment> =
                    Api::namespaced(Client::try_default().await?, KUBE_SYSTEM);
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
                "could not delete Deployment {KUBE_SYSTEM}/{}: {e:#}; delete it by hand",
                self.name
            ),
            Err(_) => eprintln!(
                "could not delete Deployment {KUBE_SYSTEM}/{}: thread panicked",
                self.name
            ),
        }
    }
}

/// A cluster admin's session on a Deployment in kube-system is refused at apply, naming
/// the namespace and how to allow it; a policy that selects every namespace does not lift
/// the refusal; a policy that names kube-system does, and the webhook admits the session.
#[tokio::test]
async fn kube_system_needs_a_policy_that_names_it() -> Result<()> {
    let _alone = ALONE.lock().await;
    let f = Fixture::new("protected").await?;
    // The test's namespace name is unique: so are the names derived from it.
    let target = SystemDeployment::create(&f, f.ns()).await?;
    let manifest = request("system-debug", &target.name)?;
    let parts = refusal(KUBE_SYSTEM);
    let parts_str: Vec<&str> = parts.iter().map(String::as_str).collect();

    f.wait_refused_at_admission_in(KUBE_SYSTEM, &manifest, &parts_str)
        .await?;
    assert_apply_refused(
        "a cluster admin debugs a Deployment in kube-system with no policy naming it",
        &f,
        KUBE_SYSTEM,
        &manifest,
        &parts,
    )
    .await?;

    // Every namespace, kube-system included, but not by name: still refused. It allows
    // what the built-in default allows, so other namespaces lose nothing meanwhile.
    let everything = f
        .policy_selecting("everything", json!({}), json!({"secretEnv": true}))
        .await?;
    everything.wait_ready("True").await?;
    f.wait_refused_at_admission_in(KUBE_SYSTEM, &manifest, &parts_str)
        .await?;
    assert_apply_refused(
        "a cluster admin debugs kube-system under a policy that selects every namespace but not kube-system by name",
        &f, KUBE_SYSTEM, &manifest, &parts).await?;
    everything.delete().await?;

    // By name: admitted (a dry run: nothing is changed in kube-system).
    let named = f
        .policy_selecting(
            "kube-system",
            json!({"matchLabels": {NAME_LABEL: KUBE_SYSTEM}}),
            json!({}),
        )
        .await?;
    named.wait_ready("True").await?;
    f.wait_admitted_in(KUBE_SYSTEM, &manifest).await?;

    // Named in a matchExpressions entry with operator In: admitted too.
    named.delete().await?;
    let listed = f
        .policy_selecting(
            "kube-system-in",
            json!({"matchExpressions": [
                {"key": NAME_LABEL, "operator": "In", "values": [KUBE_SYSTEM, f.ns()]}
            ]}),
            json!({}),
        )
        .await?;
    listed.wait_ready("True").await?;
    f.wait_admitted_in(KUBE_SYSTEM, &manifest).await?;
    drop(listed);
    drop(target);
    Ok(())
}

/// A session in the operator's own namespace, on the operator itself, is refused at apply
/// in the same words, and nothing of the operator changes.
#[tokio::test]
async fn the_operators_own_namespace_is_protected() -> Result<()> {
    let _alone = ALONE.lock().await;
    let f = Fixture::new("protected-own").await?;
    let deployments: Api<Deployment> =
        Api::namespaced(f.cluster.client.clone(), OPERATOR_NAMESPACE);
    let before = deployments.get(OPERATOR_DEPLOYMENT).await?;
    let manifest = request(&format!("{}-operator", f.ns()), OPERATOR_DEPLOYMENT)?;
    let parts = refusal(OPERATOR_NAMESPACE);
    let parts_str: Vec<&str> = parts.iter().map(String::as_str).collect();

    f.wait_refused_at_admission_in(OPERATOR_NAMESPACE, &manifest, &parts_str)
        .await?;
    assert_apply_refused(
        "a cluster admin debugs the operator's own Deployment in its namespace",
        &f,
        OPERATOR_NAMESPACE,
        &manifest,
        &parts,
    )
    .await?;

    let after = deployments.get(OPERATOR_DEPLOYMENT).await?;
    assert_eq!(
        before.metadata.generation,
        after.metadata.generation,
        "the operator's Deployment {} changed",
        after.name_any()
    );
    Ok(())
}
