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
