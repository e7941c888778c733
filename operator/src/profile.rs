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
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(profile: Profile) -> serde_json::Value {
        serde_json::to_value(security_context(profile)).unwrap()
    }

    #[test]
    fn general_adds_ptrace_only() {
        assert_eq!(
            yaml(Profile::General),
            json!({"capabilities": {"add": ["SYS_PTRACE"]}})
        );
    }

    #[test]
    fn baseline_adds_nothing() {
        assert_eq!(yaml(Profile::Baseline), json!(null));
    }

    #[test]
    fn restricted_drops_everything() {
        assert_eq!(
            yaml(Profile::Restricted),
            json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"},
            })
        );
    }

    #[test]
    fn netadmin_and_sysadmin() {
        assert_eq!(
            yaml(Profile::NetAdmin),
            json!({"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}})
        );
        assert_eq!(yaml(Profile::SysAdmin), json!({"privileged": true}));
    }
}
