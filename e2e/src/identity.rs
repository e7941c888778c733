//! Users other than the admin: real ServiceAccounts of the test's namespace, each holding
//! only the Roles the test binds to it, with a client and a kubeconfig that carry its own
//! token.
//!
//! Since Kubernetes 1.24 no ServiceAccount gets a token Secret: the harness asks the
//! TokenRequest API (`serviceaccounts/token`) for a bound token, as kubelets and
//! `kubectl create token` do. The API server authenticates that token as
//! `system:serviceaccount:<namespace>:<name>`, in the groups `system:serviceaccounts`,
//! `system:serviceaccounts:<namespace>` and `system:authenticated`, with the
//! ServiceAccount's UID.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::{Value, json};
use shellcar::crd::DebugSession;

use crate::kubectl::{self, Scratch};
use crate::session::Sessions;
use crate::wait::{Polled, poll};
use crate::{Cluster, Fixture, TIMEOUT};

/// How long a test user's token lasts: longer than any test, short enough not to matter
/// if one leaks (the API server's floor is 10 minutes).
const TOKEN_SECONDS: i64 = 2 * 60 * 60;

/// The verbs a user needs on DebugSessions to try anything.
pub const SESSION_VERBS: &[&str] = &[
    "create", "get", "list", "watch", "update", "patch", "delete",
];

/// The identity of `client`'s user as the API server authenticates it (a
/// SelfSubjectReview), in `spec.requester`'s shape: what shellcar's webhook stamps, and what
/// its ValidatingAdmissionPolicy compares a session's requester with.
pub async fn requester_of(client: &Client) -> Result<Value> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .context("asking the API server who the user is")?;
    let info = review
        .status
        .and_then(|s| s.user_info)
        .context("the SelfSubjectReview has no userInfo")?;
    let mut requester = json!({"username": info.username});
    if let Some(uid) = info.uid.filter(|u| !u.is_empty()) {
        requester["uid"] = json!(uid);
    }
    if let Some(groups) = info.groups.filter(|g| !g.is_empty()) {
        requester["groups"] = json!(groups);
    }
    if let Some(extra) = info.extra.filter(|e| !e.is_empty()) {
        requester["extra"] = json!(extra);
    }
    Ok(requester)
}

/// The username the API server gives ServiceAccount `name` of `namespace`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// An RBAC rule allowing `verbs` on resource `K` (its API group and plural), on the
/// objects named `names` only, or on every object when `names` is empty.
pub fn rule_for<K: Resource<DynamicType = ()>>(verbs: &[&str], names: &[&str]) -> PolicyRule {
    let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![K::group(&()).into_owned()]),
        resources: Some(vec![K::plural(&()).into_owned()]),
        resource_names: (!names.is_empty()).then(|| owned(names)),
        verbs: owned(verbs),
        ..PolicyRule::default()
    }
}

/// What a Sidecar session on a Deployment needs from a requester who makes its change
/// directly: `patch` (and `get`, to look) on these Deployments only.
pub fn may_patch(deployments: &[&str]) -> PolicyRule {
    rule_for::<Deployment>(&["get", "patch"], deployments)
}

/// What a session on objects of `K` needs from a requester for whom shellcar makes the
/// change (a DebugPolicy's `access: Delegated`): the verb `debug` on these objects only.
/// As an administrator writes it in a Role; shellcar's own name for it is not imported,
/// so that a renamed verb fails here.
pub fn may_debug<K: Resource<DynamicType = ()>>(names: &[&str]) -> PolicyRule {
    rule_for::<K>(&["debug"], names)
}

/// A ServiceAccount of the test's namespace acting as a user: its own client and
/// kubeconfig (the admin's cluster URL and CA, the ServiceAccount's token, no client
/// certificate), and the RBAC given to it through [`User::grant`].
pub struct User {
    /// Name of the ServiceAccount.
    pub name: String,
    pub namespace: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub username: String,
    /// UID of the ServiceAccount, which the API server reports as the user's UID.
    pub uid: String,
    /// A client authenticated with the ServiceAccount's token.
    pub client: Client,
    /// The namespace's DebugSessions, as this user.
    pub sessions: Sessions,
    admin: Client,
    kubeconfig: PathBuf,
    // Last: removes the kubeconfig when dropped.
    _scratch: Scratch,
}

impl Fixture {
    /// ServiceAccount `name` in the test's namespace as a user who may do everything with
    /// DebugSessions there ([`SESSION_VERBS`], bound as Role and RoleBinding
    /// `<name>-debugsessions`) and nothing else.
    pub async fn user(&self, name: &str) -> Result<User> {
        let user = User::create(&self.cluster, self.ns(), name).await?;
        user.grant(
            &format!("{name}-debugsessions"),
            vec![rule_for::<DebugSession>(SESSION_VERBS, &[])],
        )
        .await?;
        Ok(user)
    }
}

impl User {
    /// Creates ServiceAccount `name` in `namespace`, waits for its token, and builds its
    /// client and kubeconfig. The user holds no permission beyond what every
    /// authenticated user has until [`User::grant`].
    pub async fn create(cluster: &Cluster, namespace: &str, name: &str) -> Result<User> {
        let admin = cluster.client.clone();
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
        let account: ServiceAccount = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name},
        }))?;
        let account = accounts
            .create(&PostParams::default(), &account)
            .await
            .with_context(|| format!("creating ServiceAccount {namespace}/{name}"))?;
        let uid = account.uid().context("the ServiceAccount has no uid")?;
        let token = request_token(&admin, namespace, name).await?;
        let username = service_account_username(namespace, name);

        let scratch = Scratch::create(&format!("{namespace}-{name}"))?;
        let kubeconfig = write_kubeconfig(&scratch, &username, namespace, &token)?;
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await
        .with_context(|| format!("loading {}", kubeconfig.display()))?;
        let client = Client::try_from(config).context("building the user's client")?;
        Ok(User {
            sessions: Sessions::with_client(cluster, client.clone(), namespace),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            username,
            uid,
            client,
            admin,
            kubeconfig,
            _scratch: scratch,
        })
    }

    /// The kubeconfig file of this user, for `kubectl --kubeconfig`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs kubectl as this user (see [`kubectl::kubectl`]).
    pub async fn kubectl(&self, args: &[&str], stdin: Option<String>) -> Result<kubectl::Output> {
        kubectl::kubectl(Some(&self.kubeconfig), args, stdin).await
    }

    /// Creates, as the admin, Role `role` with `rules` and RoleBinding `role` binding it to
    /// this user, then waits until the API server's authorizer allows every verb of every
    /// rule to the user (RBAC takes effect asynchronously).
    pub async fn grant(&self, role: &str, rules: Vec<PolicyRule>) -> Result<()> {
        let ns = &self.namespace;
        let object: Role = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role},
            "rules": rules,
        }))?;
        Api::<Role>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating Role {ns}/{role}"))?;
        let binding: RoleBinding = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": self.name, "namespace": ns}],
        }))?;
        Api::<RoleBinding>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &binding)
            .await
            .with_context(|| format!("creating RoleBinding {ns}/{role}"))?;
        self.wait_authorized(&rules, true).await
    }

    /// Binds ClusterRole `cluster_role` (one that `config/rbac` ships, say) to this user
    /// in the user's namespace with RoleBinding `<user>-<cluster_role>`, then waits until
    /// the authorizer allows every verb of its rules to the user.
    pub async fn bind_cluster_role(&self, cluster_role: &str) -> Result<()> {
        let ns = &self.namespace;
        let rules = Api::<ClusterRole>::all(self.admin.clone())
            .get(cluster_role)
            .await
            .with_context(|| format!("reading ClusterRole {cluster_role}: is shellcar deployed?"))?
            .rules
            .unwrap_or_default();
        let name = format!("{}-{cluster_role}", self.name);
        let binding: RoleBinding = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": self.name, "namespace": ns}],
        }))?;
        Api::<RoleBinding>::namespaced(self.admin.clone(), ns)
            .create(&PostParams::default(), &binding)
            .await
            .with_context(|| format!("creating RoleBinding {ns}/{name}"))?;
        self.wait_authorized(&rules, true).await
    }

    /// The words in which shellcar refuses this user a session for lacking `verb` on
    /// `object` in the user's namespace, `object` as shellcar names it (`deployments.apps
    /// "web"`, `secrets "db"`): `user "<username>" may not <verb> <object> in namespace
    /// "<namespace>"`. shellcar adds what in the session needs it, in parentheses.
    pub fn denial(&self, verb: &str, object: &str) -> String {
        format!(
            r#"user "{}" may not {verb} {object} in namespace "{}""#,
            self.username, self.namespace
        )
    }

    /// Deletes RoleBinding `role` (made by [`User::grant`]) and waits until the authorizer
    /// denies the user every verb of Role `role`'s rules. (The tests' Roles do not
    /// overlap: another binding granting the same would keep this waiting.)
    pub async fn revoke(&self, role: &str) -> Result<()> {
        let ns = &self.namespace;
        let rules = Api::<Role>::namespaced(self.admin.clone(), ns)
            .get(role)
            .await
            .with_context(|| format!("reading Role {ns}/{role}"))?
            .rules
            .unwrap_or_default();
        Api::<RoleBinding>::namespaced(self.admin.clone(), ns)
            .delete(role, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting RoleBinding {ns}/{role}"))?;
        self.wait_authorized(&rules, false).await
    }

    /// Whether the authorizer allows this user `verb` on `resource` of `group` (the object
    /// `name`, or any) in the user's namespace, as `kubectl auth can-i` asks it.
    pub async fn can(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        name: Option<&str>,
    ) -> Result<bool> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(self.namespace.clone()),
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    name: name.map(str::to_owned),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = Api::<SelfSubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .with_context(|| format!("asking whether {} may {verb} {resource}", self.username))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// Waits until every verb of every rule is `allowed` (or every one denied).
    async fn wait_authorized(&self, rules: &[PolicyRule], allowed: bool) -> Result<()> {
        let mut asks = Vec::new();
        for rule in rules {
            let groups = rule.api_groups.clone().unwrap_or_default();
            let resources = rule.resources.clone().unwrap_or_default();
            let names: Vec<Option<String>> = match &rule.resource_names {
                Some(names) if !names.is_empty() => names.iter().cloned().map(Some).collect(),
                _ => vec![None],
            };
            for group in &groups {
                for resource in &resources {
                    for verb in &rule.verbs {
                        for name in &names {
                            asks.push((
                                verb.clone(),
                                group.clone(),
                                resource.clone(),
                                name.clone(),
                            ));
                        }
                    }
                }
            }
        }
        if asks.is_empty() {
            bail!("no permission to wait for in {rules:?}");
        }
        let what = if allowed { "allowed" } else { "denied" };
        poll(
            &format!("RBAC to have {} {what} {asks:?}", self.username),
            TIMEOUT,
            || async {
                let mut wrong = Vec::new();
                for (verb, group, resource, name) in &asks {
                    if self.can(verb, group, resource, name.as_deref()).await? != allowed {
                        wrong.push(format!("{verb} {resource}.{group} {name:?}"));
                    }
                }
                Ok(if wrong.is_empty() {
                    Polled::Done(())
                } else {
                    Polled::NotYet(format!("not yet {what}: {wrong:?}"))
                })
            },
        )
        .await
    }
}

/// A bound token of ServiceAccount `name`, from the TokenRequest API.
async fn request_token(admin: &Client, namespace: &str, name: &str) -> Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(TOKEN_SECONDS),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token of ServiceAccount {namespace}/{name}"))?;
    let token = issued
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .with_context(|| format!("the TokenRequest for {namespace}/{name} returned no token"))?;
    Ok(token)
}

/// Writes a kubeconfig for `username` with `token` into `scratch`: the cluster entry of
/// the admin's current context (the `KUBECONFIG` the harness connects with, so the same
/// URL and CA), the token as the only credential.
fn write_kubeconfig(
    scratch: &Scratch,
    username: &str,
    namespace: &str,
    token: &str,
) -> Result<PathBuf> {
    let admin = Kubeconfig::read().context("reading the admin's kubeconfig (KUBECONFIG)")?;
    let context = admin
        .current_context
        .as_deref()
        .context("the admin's kubeconfig has no current-context")?;
    let cluster_name = admin
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .with_context(|| format!("no context {context} in the admin's kubeconfig"))?;
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .with_context(|| format!("no cluster {cluster_name} in the admin's kubeconfig"))?;
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": username, "user": {"token": token}}],
        "contexts": [{
            "name": username,
            "context": {"cluster": cluster_name, "user": username, "namespace": namespace},
        }],
        "current-context": username,
    });
    scratch.write_private("kubeconfig", &serde_json::to_vec_pretty(&config)?)
}
