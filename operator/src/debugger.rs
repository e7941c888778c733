//! The debugger container, built from a session's `spec.debugger` and its profile. Every
//! mode starts from it: Sidecar and Copy add it as it is, Ephemeral wraps its command.

use k8s_openapi::api::core::v1::Container;

use crate::crd::Debugger;
use crate::profile;

/// The default entrypoint: a shell that is started again when the person attached to it
/// leaves with Ctrl-D, so that detaching does not restart the container.
pub fn default_command() -> Vec<String> {
    ["sh", "-c", "while true; do sh; done"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// The debugger container named `name`, built from the session's debugger spec.
pub fn container(debugger: &Debugger, name: &str, default_image: &str) -> Container {
    let command = match (&debugger.command, &debugger.args) {
        (Some(command), _) => Some(command.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(default_command()),
    };
    Container {
        name: name.to_owned(),
        image: Some(
            debugger
                .image
                .clone()
                .unwrap_or_else(|| default_image.to_owned()),
        ),
        command,
        args: debugger.args.clone(),
        env: debugger.env.clone(),
        resources: debugger.resources.clone(),
        security_context: profile::security_context(debugger.profile),
        // `kubectl attach -it` needs both.
        stdin: Some(true),
        tty: Some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
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
}
