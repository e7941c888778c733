//! The Pod Security preflight: whether the namespace's enforced Pod Security Standard lets
//! the debugger's securityContext in.
//!
//! Pod Security Admission refuses a pod, or an ephemeral container, whose containers break
//! the level in the namespace label [`ENFORCE_LABEL`]. Checking the debugger's own
//! securityContext ([`crate::rules::profile::security_context`]) first turns that refusal into one
//! sentence that names the rule and the profiles that would fit. Pure.
//!
//! Only the rules on a container's securityContext are checked, at the latest version of
//! the standards; the target's own pod spec is the target's business. The cluster-wide
//! defaults and exemptions of an `AdmissionConfiguration` are invisible from here.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::SecurityContext;

use crate::crd::Profile;

/// The namespace label whose value is the enforced Pod Security level.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Every profile, in the order messages list them.
const PROFILES: [Profile; 5] = [
    Profile::General,
    Profile::Baseline,
    Profile::Restricted,
    Profile::NetAdmin,
    Profile::SysAdmin,
];

/// Capabilities that the baseline level lets a container add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Capabilities that the restricted level lets a container add.
const RESTRICTED_CAPABILITIES: [&str; 1] = ["NET_BIND_SERVICE"];

/// A level of the Pod Security Standards, from the most permissive to the strictest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// The level as the label writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    /// The level a label value names exactly (Pod Security Admission compares
    /// case-sensitively), or `None`.
    fn parse(value: &str) -> Option<Level> {
        [Level::Privileged, Level::Baseline, Level::Restricted]
            .into_iter()
            .find(|l| l.as_str() == value)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level Pod Security Admission enforces in a namespace with labels `labels`.
///
/// Without the label: privileged, the admission plugin's built-in default (a cluster may
/// configure another default, which the operator cannot see; Pod Security Admission then
/// still refuses the debugger, only with its own message). With a value that is not a level:
/// restricted, as Pod Security Admission does itself (it fails closed, see `ParseLevel`
/// in k8s.io/pod-security-admission/api).
fn enforced(labels: &BTreeMap<String, String>) -> Level {
    match labels.get(ENFORCE_LABEL) {
        None => Level::Privileged,
        Some(value) => Level::parse(value).unwrap_or(Level::Restricted),
    }
}

/// The enforced Pod Security level forbids the debugger's profile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "namespace {namespace} enforces Pod Security level \"{level}\" ({label}), which forbids \
     profile {profile:?}: {reasons}; {fit}",
    label = label_note(.invalid_value.as_deref(), *.level),
    reasons = .reasons.join(", "),
    fit = fit_note(.fitting),
)]
pub struct Forbidden {
    /// The session's namespace.
    pub namespace: String,
    /// The level Pod Security Admission enforces there.
    pub level: Level,
    /// The label's value when it names no level (and Kubernetes reads it as restricted).
    pub invalid_value: Option<String>,
    /// The debugger's profile that the level forbids.
    pub profile: Profile,
    /// What breaks the level, each as `it ...`.
    pub reasons: Vec<String>,
    /// The profiles that the level allows.
    pub fitting: Vec<Profile>,
}

fn label_note(invalid_value: Option<&str>, level: Level) -> String {
    match invalid_value {
        None => format!("label {ENFORCE_LABEL}"),
        Some(value) => {
            format!(
                "label {ENFORCE_LABEL} is {value:?}, not a level, which Kubernetes reads as {level}"
            )
        }
    }
}

fn fit_note(fitting: &[Profile]) -> String {
    if fitting.is_empty() {
        return "no profile fits".to_owned();
    }
    let names: Vec<String> = fitting.iter().map(|p| format!("{p:?}")).collect();
    format!("profiles that fit: {}", names.join(", "))
}

/// Whether the debugger with `profile` may run in namespace `namespace` (with labels
/// `labels`) under its enforced Pod Security level.
pub fn check(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    profile: Profile,
) -> Result<(), Forbidden> {
    let level = enforced(labels);
    let reasons = violations(level, profile);
    if reasons.is_empty() {
        return Ok(());
    }
    let invalid_value = labels
        .get(ENFORCE_LABEL)
        .filter(|v| Level::parse(v).is_none())
        .cloned();
    Err(Forbidden {
        namespace: namespace.to_owned(),
        level,
        invalid_value,
        profile,
        reasons,
        fitting: fitting(level),
    })
}

/// The profiles whose securityContext `level` allows, in the CRD's order.
fn fitting(level: Level) -> Vec<Profile> {
    PROFILES
        .into_iter()
        .filter(|p| violations(level, *p).is_empty())
        .collect()
}

/// What in the debugger's securityContext under `profile` breaks `level`, each as `it ...`.
fn violations(level: Level, profile: Profile) -> Vec<String> {
    let sc = crate::rules::profile::security_context(profile).unwrap_or_default();
    let mut out = Vec::new();
    match level {
        Level::Privileged => {}
        Level::Baseline => {
            baseline(&sc, &mut out);
            added_beyond(&sc, &BASELINE_CAPABILITIES, &mut out);
        }
        Level::Restricted => {
            baseline(&sc, &mut out);
            // Stricter than the baseline list, so it replaces that rule.
            added_beyond(&sc, &RESTRICTED_CAPABILITIES, &mut out);
            restricted(&sc, &mut out);
        }
    }
    out
}

/// The baseline rules on a container's securityContext, but for capabilities.
fn baseline(sc: &SecurityContext, out: &mut Vec<String>) {
    if sc.privileged == Some(true) {
        out.push("it runs privileged".to_owned());
    }
    if sc
        .windows_options
        .as_ref()
        .and_then(|w| w.host_process)
        .unwrap_or(false)
    {
        out.push("it runs as a Windows HostProcess container".to_owned());
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        out.push("it asks for an unmasked /proc".to_owned());
    }
    if sc
        .seccomp_profile
        .as_ref()
        .is_some_and(|s| s.type_ == "Unconfined")
    {
        out.push("it runs without seccomp (Unconfined)".to_owned());
    }
}

/// The restricted rules on top of the baseline ones, but for capabilities added.
fn restricted(sc: &SecurityContext, out: &mut Vec<String>) {
    if sc.allow_privilege_escalation != Some(false) {
        out.push("it does not set allowPrivilegeEscalation: false".to_owned());
    }
    if sc.run_as_non_root != Some(true) {
        out.push("it does not set runAsNonRoot: true".to_owned());
    }
    if sc.run_as_user == Some(0) {
        out.push("it runs as user 0".to_owned());
    }
    let drops_all = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.drop.as_ref())
        .is_some_and(|d| d.iter().any(|c| c == "ALL"));
    if !drops_all {
        out.push("it does not drop capability ALL".to_owned());
    }
    let seccomp = sc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
    if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
        out.push("it does not set seccompProfile RuntimeDefault or Localhost".to_owned());
    }
}

/// Adds a reason when `sc` adds capabilities outside `allowed`.
fn added_beyond(sc: &SecurityContext, allowed: &[&str], out: &mut Vec<String>) {
    let beyond: Vec<&str> = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|c| !allowed.contains(c))
        .collect();
    match beyond.as_slice() {
        [] => {}
        [one] => out.push(format!("it adds capability {one}")),
        many => out.push(format!("it adds capabilities {}", many.join(", "))),
    }
}

#[cfg(test)]
mod tests;
