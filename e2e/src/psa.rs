//! Pod Security Admission as the oracle of shellcar's Pod Security preflight: the
//! debugger's securityContext under each profile, written down here independently of the
//! operator, a target pod that every level admits, and the API server's own verdict on an
//! ephemeral debugger, asked with a server-side dry run that changes nothing.

use std::fmt;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use shellcar::crd::Profile;

/// The namespace label whose value Pod Security Admission enforces.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// The Pod Security levels, from the most permissive to the strictest.
pub const LEVELS: [&str; 3] = ["privileged", "baseline", "restricted"];

/// Every debugger profile, in the CRD's order.
pub const PROFILES: [Profile; 5] = [
    Profile::General,
    Profile::Baseline,
    Profile::Restricted,
    Profile::NetAdmin,
    Profile::SysAdmin,
];

/// The busybox image of the local cluster, which the debugger and [`restricted_pod`] run.
pub const BUSYBOX_IMAGE: &str = "shellcar.local/busybox:1.36";

/// Name of the container of [`restricted_pod`].
pub const APP_CONTAINER: &str = "app";

/// A user that is not root, for pods whose debugger must run as non-root (the Restricted
/// profile sets `runAsNonRoot`, and busybox's image runs as root).
pub const NON_ROOT_USER: i64 = 65534;

/// The debugger's securityContext under `profile`, as the CRD documents the profiles
/// (those of `kubectl debug --profile`); `null` when the profile sets none.
pub fn security_context(profile: Profile) -> Value {
    match profile {
        Profile::General => json!({"capabilities": {"add": ["SYS_PTRACE"]}}),
        Profile::Baseline => Value::Null,
        Profile::Restricted => json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
        }),
        Profile::NetAdmin => json!({"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}),
        Profile::SysAdmin => json!({"privileged": true}),
    }
}

/// A bare Pod `name` that every Pod Security level admits, so that Pod Security
/// Admission's verdict on an ephemeral container added to it is a verdict on that
/// container alone.
///
/// Its one container (`app`, busybox sleeping) sets the restricted settings itself; the
/// pod sets only `runAsUser` (not root), which decides no level's rule for a container
/// that does not set it (the rules need `runAsNonRoot: true`, which stays per container),
/// and lets a Restricted debugger start.
pub fn restricted_pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": NON_ROOT_USER},
            "containers": [{
                "name": APP_CONTAINER,
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
                "securityContext": security_context(Profile::Restricted),
            }],
        },
    }))?)
}

/// A verdict on a debugger: shellcar's at create, or Pod Security Admission's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Refused, with the message the user is shown.
    Refused(String),
}

impl Verdict {
    pub fn admitted(&self) -> bool {
        matches!(self, Verdict::Admitted)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Admitted => "admitted",
            Verdict::Refused(_) => "refused",
        })
    }
}

/// What Pod Security Admission answers when ephemeral container `name` with `profile`'s
/// securityContext, aimed at `target`, is added to pod `pod` through
/// `pods/ephemeralcontainers` (as shellcar's Ephemeral mode and `kubectl debug` add
/// theirs), with `dryRun=All`: the API server admits it or refuses it, and stores nothing.
/// Fails on any answer that is not Pod Security's (another refusal, no answer).
pub async fn dry_run_ephemeral(
    pods: &Api<Pod>,
    pod: &str,
    target: &str,
    name: &str,
    profile: Profile,
) -> Result<Verdict> {
    let mut container = json!({
        "name": name,
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh"],
        "stdin": true,
        "tty": true,
        "targetContainerName": target,
    });
    let context = security_context(profile);
    if !context.is_null() {
        container["securityContext"] = context;
    }
    let patch = json!({"spec": {"ephemeralContainers": [container]}});
    let params = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    match pods
        .patch_ephemeral_containers(pod, &params, &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => Ok(Verdict::Admitted),
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("violates PodSecurity") => {
            Ok(Verdict::Refused(e.message.clone()))
        }
        Err(e) => Err(e).with_context(|| {
            format!("dry-run adding ephemeral container {name} ({profile:?}) to pod {pod}")
        }),
    }
}

/// The table of a test's verdicts: a row per level, a column per profile, each cell
/// as given (`shellcar/PSA`).
pub fn table(cells: &[(&str, Vec<(Profile, String)>)]) -> String {
    const WIDTH: usize = 22;
    let mut out = format!("{:<12}", "level");
    for profile in PROFILES {
        out.push_str(&format!("{:<WIDTH$}", format!("{profile:?}")));
    }
    out.push('\n');
    for (level, row) in cells {
        out.push_str(&format!("{level:<12}"));
        for (_, cell) in row {
            out.push_str(&format!("{cell:<WIDTH$}"));
        }
        out.push('\n');
    }
    out
}
