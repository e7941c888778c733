use super::*;
use crate::crd::Profile;
use serde_json::json;

#[test]
fn default_debugger_is_an_attachable_looping_shell() {
    let c = container(&Debugger::default(), "shellcar-x-1", "busybox");
    let c = serde_json::to_value(c).unwrap();
    assert_eq!(
        c,
        json!({
            "name": "shellcar-x-1",
            "image": "busybox",
            "command": ["sh", "-c", "while true; do sh; done"],
            "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}},
            "stdin": true,
            "tty": true,
        })
    );
}

#[test]
fn user_command_args_env_and_profile_are_kept() {
    let debugger: Debugger = serde_yaml::from_str(
        r#"
image: nicolaka/netshoot
args: ["-l"]
profile: NetAdmin
env: [{name: A, value: b}]
resources: {limits: {memory: 64Mi}}
"#,
    )
    .unwrap();
    let c = container(&debugger, "c", "busybox");
    assert_eq!(c.image.as_deref(), Some("nicolaka/netshoot"));
    assert_eq!(c.command, None, "args alone keep the image's entrypoint");
    assert_eq!(c.args, Some(vec!["-l".to_owned()]));
    assert_eq!(c.env.unwrap()[0].name, "A");
    assert!(c.resources.unwrap().limits.unwrap().contains_key("memory"));
    assert_eq!(
        c.security_context.unwrap().capabilities.unwrap().add,
        Some(vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()])
    );
    let restricted = Debugger {
        profile: Profile::Restricted,
        command: Some(vec!["top".to_owned()]),
        ..Default::default()
    };
    let c = container(&restricted, "c", "busybox");
    assert_eq!(c.command, Some(vec!["top".to_owned()]));
    assert_eq!(c.security_context.unwrap().run_as_non_root, Some(true));
}
