//! The debugger container, built from a session's `spec.debugger` and its profile. Every
//! mode starts from it: Sidecar and Copy add it as it is, Ephemeral wraps its command.

use k8s_openapi::api::core::v1::Container;

use crate::crd::Debugger;
use crate::rules::profile;

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
mod tests;
