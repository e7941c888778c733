//! The `DebugSession` custom resource.
//!
//! Doc comments on these types are user documentation: they become the CRD's
//! descriptions, which `kubectl explain debugsession.spec` prints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod approval;
mod policy;

pub use approval::Seen;
pub use policy::{
    Access, ApprovalRule, Approvers, DebugPolicy, DebugPolicySpec, DebugPolicyStatus,
};

/// A request for a debug shell beside the processes of a workload, for a limited time.
///
/// The operator adds a debugger container that shares the target's process namespace,
/// reports in status which pods carry it and how to attach, and removes it again when the
/// session is deleted or its ttl runs out. An expired session stays as an audit record.
// clippy reads the repeated printcolumn keys as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "debug.shellcar.dev",
    version = "v1alpha1",
    kind = "DebugSession",
    namespaced,
    shortname = "dbg",
    category = "shellcar",
    status = "DebugSessionStatus",
    doc = "A request for a time-limited debug shell that shares a workload's process namespace.",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.target.kind"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.name"),
    printcolumn(
        name = "Requester",
        type_ = "string",
        json_path = ".spec.requester.username"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".status.mode"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DebugSessionSpec {
    /// The object to debug. It must be in the session's own namespace.
    pub target: Target,

    /// How the debugger reaches the target. Auto (the default) picks Sidecar for workloads.
    /// Sidecar adds a container to the workload's pod template, which rolls the workload out.
    #[serde(default)]
    pub mode: Mode,

    /// Which pods of a workload an Ephemeral session debugs: One (the default) or All
    /// (at most 10). Copy mode always copies one pod; Sidecar mode changes the template.
    #[serde(default)]
    pub pods: PodSelection,

    /// The debugger container: image, command and security profile.
    #[serde(default)]
    pub debugger: Debugger,

    /// What happens to the target when the session ends.
    #[serde(default)]
    pub teardown: Teardown,

    /// How long the session lives, counted from its creation, as a duration such as `30m`,
    /// `1h` or `1h30m` (units h, m, s). When it runs out the debugger is removed and the
    /// session stays in phase Expired. Raising it before then extends the session. Default
    /// `1h`; the operator refuses more than its maximum (24h unless configured otherwise).
    #[serde(default = "default_ttl")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]{1,6}(h|m|s))+$"))]
    pub ttl: String,

    /// Who created the session. Set by shellcar's admission webhook from the identity that
    /// created the session; anything written here by hand is replaced. The operator acts
    /// only as far as this user's own RBAC permissions reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,

    /// The sign-off, where the DebugPolicy that admits the session requires one. Set by
    /// shellcar's admission webhook when an approver annotates the session with
    /// `debug.shellcar.dev/approve` (or `reject`); anything written here by hand is
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// A decision on a session that needs approval, as shellcar's webhook recorded it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Approved or Rejected.
    pub decision: Decision,
    /// User name of whoever decided; never the requester.
    pub approver: String,
    /// Why, in the approver's words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When the decision was made. An approved session's ttl counts from here.
    pub time: Time,
}

/// An approver's decision.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Decision {
    Approved,
    Rejected,
}

/// The identity that created a session, as the API server authenticated it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    /// User name, for example `jane@example.com` or
    /// `system:serviceaccount:shop:dev`.
    pub username: String,

    /// Unique ID of the user, if the authenticator provides one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,

    /// Groups the user belonged to when the session was created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,

    /// Further attributes from the authenticator (for example scopes), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<BTreeMap<String, Vec<String>>>,
}

fn default_ttl() -> String {
    "1h".to_owned()
}

/// The object whose processes the debugger joins.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Kind of the target: Deployment, StatefulSet, DaemonSet, ReplicaSet or Pod.
    pub kind: TargetKind,

    /// Name of the target, in the session's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Name of the container whose processes matter most. Optional: every container's
    /// processes are visible through the shared process namespace; when set, it must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub container: Option<String>,
}

/// Kinds of object a session can target.
/// The mode a session runs in once Auto is resolved. Not part of the schema: the
/// operator's plan, which status reports as a [`Mode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Sidecar,
    Ephemeral,
    Copy,
}

impl From<Resolved> for Mode {
    fn from(mode: Resolved) -> Mode {
        match mode {
            Resolved::Sidecar => Mode::Sidecar,
            Resolved::Ephemeral => Mode::Ephemeral,
            Resolved::Copy => Mode::Copy,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TargetKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Pod,
}

impl TargetKind {
    /// True for the kinds that own a pod template.
    pub fn is_workload(self) -> bool {
        !matches!(self, TargetKind::Pod)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::DaemonSet => "DaemonSet",
            TargetKind::ReplicaSet => "ReplicaSet",
            TargetKind::Pod => "Pod",
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the debugger is attached to the target.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum Mode {
    /// Sidecar for workloads, Ephemeral for Pods.
    #[default]
    Auto,
    /// A container added to the workload's pod template; the workload rolls out.
    Sidecar,
    /// An ephemeral container added to a running Pod.
    Ephemeral,
    /// A copy of a Pod, with the debugger added and labels stripped.
    Copy,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Which pods of a workload a session debugs.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PodSelection {
    /// The first running pod, by name.
    #[default]
    One,
    /// Every running pod, at most 10.
    All,
}

/// What happens to the target when the session ends.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Teardown {
    /// Ephemeral containers cannot be removed from a pod. The debugger is always stopped;
    /// then Leave (the default) leaves the stopped container in the pod and says so in
    /// status, Label labels the pod `debug.shellcar.dev/ephemeral-debugged=true`, and
    /// Recycle evicts the pod through the Eviction API (respecting PodDisruptionBudgets)
    /// so that its controller replaces it; Recycle is refused for a pod that no
    /// controller owns.
    #[serde(default)]
    pub ephemeral: EphemeralTeardown,

    /// Sidecar mode, for a workload that does not replace its pods when its template
    /// changes (a ReplicaSet, an `OnDelete` StatefulSet or DaemonSet): pods that still run
    /// the debugger once the template is restored are listed in `status.leftovers` (Leave,
    /// the default), or evicted through the Eviction API, respecting PodDisruptionBudgets,
    /// so that the workload replaces them from the restored template (Recycle). A paused
    /// Deployment's pods are never evicted: its ReplicaSet would bring the debugger back.
    #[serde(default)]
    pub sidecar: SidecarTeardown,
}

/// What happens to a pod that still runs a Sidecar debugger after its template is
/// restored.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SidecarTeardown {
    #[default]
    Leave,
    Recycle,
}

/// What happens to a pod whose ephemeral debugger was stopped.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EphemeralTeardown {
    #[default]
    Leave,
    Label,
    Recycle,
}

/// The debugger container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Debugger {
    /// Image of the debugger. Default: the operator's `--default-image` (busybox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Entrypoint of the debugger. Default: a shell that starts again when you detach
    /// (`sh -c 'while true; do sh; done'`), so leaving with Ctrl-D does not restart the
    /// container. At most 64 items of at most 4096 characters each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Option<Vec<String>>,

    /// Arguments to the entrypoint. At most 64 items of at most 4096 characters each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Option<Vec<String>>,

    /// Security profile, with the meaning of `kubectl debug --profile`: General (adds
    /// SYS_PTRACE, the default), Baseline (no extra privileges), Restricted (non-root, no
    /// capabilities, RuntimeDefault seccomp), NetAdmin (adds NET_ADMIN and NET_RAW),
    /// SysAdmin (privileged).
    #[serde(default)]
    pub profile: Profile,

    /// Environment variables of the debugger container, at most 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub env: Option<Vec<EnvVar>>,

    /// Compute resources of the debugger container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Security profiles, as in `kubectl debug --profile`.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum Profile {
    #[default]
    General,
    Baseline,
    Restricted,
    NetAdmin,
    SysAdmin,
}

/// The condition types of a DebugSession's status (kstatus reads Ready, Reconciling and
/// Stalled).
pub mod conditions {
    /// The debugger runs in every pod the session asked for.
    pub const READY: &str = "Ready";
    /// The debugger is in place in the target (or a copy of it).
    pub const INJECTED: &str = "Injected";
    /// The session's ttl ran out.
    pub const EXPIRED: &str = "Expired";
    /// The operator is still working towards the spec.
    pub const RECONCILING: &str = "Reconciling";
    /// The operator cannot go on without a change from someone.
    pub const STALLED: &str = "Stalled";
}

/// Observed state of a DebugSession, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebugSessionStatus {
    /// Where the session is in its life: Pending, AwaitingApproval, Injecting, Active,
    /// Expired, Ended or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions: Ready (a debugger is running and attachable), Injected (the
    /// target carries the debugger), Expired (the ttl ran out), Reconciling and Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The mode the operator chose (Auto is resolved to Sidecar, Ephemeral or Copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,

    /// The target as resolved, with its UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ResolvedTarget>,

    /// Every target this session has changed. The spec cannot be pointed elsewhere after
    /// creation; this list is kept anyway, and teardown cleans every entry of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub targets: Vec<ResolvedTarget>,

    /// Name of the debugger container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,

    /// When the debugger was first injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,

    /// When the session expires: its creation time plus its ttl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// When the debugger was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,

    /// A sentence for people on the state of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Pods that carry the debugger, and how to attach to each (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub pods: Vec<DebugPod>,

    /// What the session left behind after teardown, and why: for example a stopped
    /// ephemeral container, which Kubernetes cannot remove from a pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftovers: Vec<String>,

    /// The DebugPolicy that admits the session; `(built-in)` for the built-in default that
    /// applies where no policy selects the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,

    /// What the shared process namespace reveals to the debugger in the pods it joins, per
    /// container: Secret env vars (names only), Secret and projected volumes, the
    /// ServiceAccount token and hostPath mounts. Approvers read it before they approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub exposure: Vec<Exposure>,

    /// Changes other field managers made to the target's pod template while the session
    /// ran. Teardown removes only shellcar's own fields, so these changes stay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub target_changes: Vec<TargetChange>,
}

impl DebugSessionStatus {
    /// The condition of type `type_` (one of [`conditions`]), if status has it.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// What the debugger can read in one container of the pods it joins.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// Name of the container (init containers included).
    pub container: String,
    /// Env vars whose values come from Secrets, by name; never their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<SecretEnvVar>,
    /// Secrets whose every key becomes an env var of the container (`envFrom`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env_from: Vec<String>,
    /// Secret and projected volumes the container mounts, and where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_volumes: Vec<Mount>,
    /// Where the container holds the pod's ServiceAccount token, if it is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<TokenMount>,
    /// hostPath volumes the container mounts: a window onto the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_paths: Vec<Mount>,
    /// The node's namespaces the pod joins (`hostNetwork`, `hostIPC`, `hostPID`): through
    /// the container's processes the debugger reaches what they reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_namespaces: Vec<String>,
    /// The container runs privileged: its processes hold every capability and see the
    /// node's devices.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Capabilities the container adds (`securityContext.capabilities.add`), which its
    /// processes hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_capabilities: Vec<String>,
}

/// An env var filled from a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretEnvVar {
    /// Name of the env var.
    pub name: String,
    /// The Secret it comes from.
    pub secret: String,
}

/// A volume mounted into a container.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Name of the volume in the pod.
    pub volume: String,
    /// Where the container sees it.
    pub path: String,
    /// What it holds: `Secret db`, `Secrets a, b and a ServiceAccount token`, or the
    /// node's path for a hostPath volume.
    pub source: String,
}

/// The ServiceAccount token a container holds.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenMount {
    /// The ServiceAccount whose token it is.
    pub service_account: String,
    /// Where the container sees it.
    pub path: String,
}

/// Phases of a session.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, waiting for its target.
    Pending,
    /// The admitting DebugPolicy requires approval, and nobody has approved yet; nothing
    /// is changed until then.
    AwaitingApproval,
    /// The debugger was added; waiting for a pod to run it.
    Injecting,
    /// A debugger is running and attachable.
    Active,
    /// The ttl ran out and the debugger was removed.
    Expired,
    /// The session was deleted and the debugger removed.
    Ended,
    /// The spec cannot be carried out; see the conditions.
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Injecting => "Injecting",
            Phase::Active => "Active",
            Phase::Expired => "Expired",
            Phase::Ended => "Ended",
            Phase::Failed => "Failed",
        }
    }
}

/// The target, as the operator found it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTarget {
    pub kind: TargetKind,
    pub name: String,
    /// UID of the target. A change means the target was deleted and created again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A pod that carries the debugger.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebugPod {
    /// Name of the pod.
    pub name: String,
    /// Name of the debugger container in the pod.
    pub container: String,
    /// Whether the debugger container is running.
    pub ready: bool,
    /// The command that attaches a terminal to the debugger.
    pub attach: String,
    /// For a Copy session, the pod this one is a copy of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<String>,
    /// Why the debugger is not running here, as Kubernetes says it: a waiting reason such
    /// as ImagePullBackOff or CrashLoopBackOff, or Unschedulable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The kubelet's or scheduler's message that goes with `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A change another field manager made to the target's pod template during the session.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetChange {
    /// The field manager that changed the template, such as `kubectl-edit` or
    /// `argocd-controller`.
    pub manager: String,
    /// When it last changed it.
    pub time: Time,
}

#[cfg(test)]
mod tests;
