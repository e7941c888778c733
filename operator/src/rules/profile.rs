//! Security profiles of the debugger container, as `kubectl debug --profile` defines them.

use k8s_openapi::api::core::v1::{Capabilities, SeccompProfile, SecurityContext};

use crate::crd::Profile;

fn add_capabilities(caps: &[&str]) -> Capabilities {
    Capabilities {
        add: Some(caps.iter().map(|c| (*c).to_owned()).collect()),
        drop: None,
    }
}

/// The debugger container's securityContext under `profile`; `None` leaves the
/// container at the pod's defaults.
pub fn security_context(profile: Profile) -> Option<SecurityContext> {
    match profile {
        // Signals and /proc/<pid>/root of other containers need ptrace rights.
        Profile::General => Some(SecurityContext {
            capabilities: Some(add_capabilities(&["SYS_PTRACE"])),
            ..Default::default()
        }),
        Profile::Baseline => None,
        Profile::Restricted => Some(SecurityContext {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".to_owned()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        Profile::NetAdmin => Some(SecurityContext {
            capabilities: Some(add_capabilities(&["NET_ADMIN", "NET_RAW"])),
            ..Default::default()
        }),
        Profile::SysAdmin => Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests;
