//! The `DebugPolicy` custom resource: what a cluster allows sessions to do, and who must
//! sign off. Doc comments are user documentation (`kubectl explain debugpolicy.spec`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Mode, Profile};

/// What DebugSessions may do in the namespaces a policy selects.
///
/// A session must fit at least one policy whose namespaceSelector matches its namespace;
/// policies add to each other, as RBAC rules do. Where no policy selects a namespace, a
/// built-in default applies: profiles General, Baseline and Restricted, every mode, ttls
/// up to the operator's `--max-ttl`, images from its `--allowed-image` list, no approval.
/// NetAdmin and SysAdmin are never allowed without a policy that names them.
// clippy reads the repeated printcolumn keys as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "debug.shellcar.dev",
    version = "v1alpha1",
    kind = "DebugPolicy",
    shortname = "dbgpol",
    category = "shellcar",
    status = "DebugPolicyStatus",
    doc = "What DebugSessions may do in the namespaces a policy selects, and who must approve them.",
    printcolumn(name = "Access", type_ = "string", json_path = ".spec.access"),
    printcolumn(
        name = "Approval",
        type_ = "boolean",
        json_path = ".spec.approval.required"
    ),
    printcolumn(name = "Max TTL", type_ = "string", json_path = ".spec.maxTTL"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DebugPolicySpec {
    /// The namespaces this policy governs, by their labels. Absent or empty: every
    /// namespace, except the protected ones: `kube-system` and the operator's own
    /// namespace (`shellcar-system`) are governed only by policies that name them, as
    /// `matchLabels: {kubernetes.io/metadata.name: kube-system}` or a `matchExpressions`
    /// entry on key `kubernetes.io/metadata.name` with operator `In` that lists the name.
    /// Where no policy names a protected namespace, sessions there are refused (reason
    /// NamespaceProtected); the built-in default never applies there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Images a debugger may use, as globs on the whole image reference: `*` matches
    /// within one path segment (never across a `/`), `**` across segments, `?` one
    /// character. `registry.example/tools/*` allows `registry.example/tools/busybox:1.36`,
    /// not `registry.example/tools/x/busybox`. A pattern matches the reference as written
    /// or as the runtime resolves it: `docker.io/library/busybox:*` allows `busybox:1.36`.
    /// Absent: the operator's `--allowed-image` list, or any image when that is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub images: Option<Vec<String>>,

    /// The image must be pinned by digest (`...@sha256:<64 hex digits>`).
    #[serde(default)]
    pub require_digest: bool,

    /// Security profiles a debugger may use. Absent: General, Baseline and Restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<Profile>>,

    /// Modes a session may run in (Sidecar, Ephemeral, Copy; Auto is judged by the mode it
    /// resolves to). Absent: every mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modes: Option<Vec<Mode>>,

    /// Longest ttl a session may ask for, such as `30m` or `2h`. Absent: the operator's
    /// `--max-ttl`, which also caps this.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "maxTTL")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]{1,6}(h|m|s))+$"))]
    pub max_ttl: Option<String>,

    /// Most live sessions (not yet Expired, Ended or Failed) one namespace may have under
    /// this policy; a session beyond it is refused when it is created. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // int32, not schemars' uint32: the API server warns at every apply about a format it
    // does not know.
    #[schemars(range(min = 0), extend("format" = "int32"))]
    pub max_sessions_per_namespace: Option<u32>,

    /// Whether the debugger's env may take values from Secrets (`valueFrom.secretKeyRef`).
    /// The requester must be able to read those Secrets in any case. Default false.
    #[serde(default)]
    pub secret_env: bool,

    /// Sign-off before a session starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,

    /// Who may ask for a session, by what they hold on the target. Direct (the default,
    /// and the built-in default where no policy selects a namespace): the requester must
    /// be able to make the session's change themselves (`patch` on the workload, on
    /// `pods/ephemeralcontainers`, or `create` on pods), so shellcar lends nothing.
    /// Delegated: the requester must hold the verb `debug` on the target (for example
    /// `debug` on `deployments.apps` `web`, as the ClusterRole `shellcar-debugger`
    /// grants), and shellcar makes the change with its own power, under this policy and
    /// its approval; direct power does not count. Either: one or the other. Env from a
    /// Secret or ConfigMap needs `get` on it in every case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// What a requester must hold on the target for shellcar to debug it for them.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Access {
    /// The permissions to make the session's change themselves.
    #[default]
    Direct,
    /// The verb `debug` on the target; shellcar acts with its own power.
    Delegated,
    /// Either of the two.
    Either,
}

/// Whether sessions need approval, and how long one may wait for it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRule {
    /// Sessions under this policy wait in phase AwaitingApproval, changing nothing, until
    /// someone other than the requester who may `approve` debugsessions in the namespace,
    /// and whom `approvers` names, approves them (`shellcar approve NAME`, or the
    /// annotation `debug.shellcar.dev/approve`). The ttl counts from the approval.
    #[serde(default)]
    pub required: bool,

    /// Who may approve or reject sessions under this policy, besides holding the verb
    /// `approve` (or `reject`) on debugsessions in the namespace: a user named in `users`,
    /// or a member of a group in `groups`. A ServiceAccount
    /// (`system:serviceaccount:<namespace>:<name>`) counts only when `users` names it;
    /// its groups (such as `system:serviceaccounts`) never do. Absent: anyone but the
    /// requester who holds the verb, except ServiceAccounts. Present but naming nobody:
    /// the policy is malformed (reason InvalidApprovers) and admits nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,

    /// How long a session may wait for approval, such as `1h`; then it fails with reason
    /// NotApproved. Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]{1,6}(h|m|s))+$"))]
    pub deadline: Option<String>,
}

/// The people who may decide on sessions under a policy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// User names as the API server authenticates them, for example `jane@example.com`
    /// or `system:serviceaccount:ops:release-bot`. The only way a ServiceAccount approves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub users: Vec<String>,

    /// Groups whose members may decide, for example `oncall`. Groups of ServiceAccounts
    /// (`system:serviceaccounts`, `system:serviceaccounts:<namespace>`) let no
    /// ServiceAccount decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub groups: Vec<String>,
}

/// Observed state of a DebugPolicy, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebugPolicyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready: the policy is well formed and in force. False with a reason (for example
    /// InvalidGlob) when it is malformed; a malformed policy admits no session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
