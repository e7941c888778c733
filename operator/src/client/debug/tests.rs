use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};
use crate::crd::{Mode, PodSelection, Profile, TargetKind};

fn debug_args(args: &[&str]) -> DebugArgs {
    let cli = Cli::try_parse_from(["shellcar", "debug"].iter().chain(args)).unwrap();
    match cli.command {
        Command::Debug(args) => *args,
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn the_session_carries_what_the_command_line_says() {
    let args = debug_args(&[
        "deploy/web",
        "-n",
        "shop",
        "--mode=sidecar",
        "--profile",
        "netadmin",
        "--image",
        "busybox:1.36",
        "--ttl",
        "30m",
        "-c",
        "nginx",
        "--pods=all",
        "--",
        "sh",
        "-c",
        "sleep 1d",
    ]);
    let s = session(&args, "web-debug-abcde").unwrap();
    assert_eq!(s.metadata.name.as_deref(), Some("web-debug-abcde"));
    assert_eq!(s.spec.target.kind, TargetKind::Deployment);
    assert_eq!(s.spec.target.name, "web");
    assert_eq!(s.spec.target.container.as_deref(), Some("nginx"));
    assert_eq!(s.spec.mode, Mode::Sidecar);
    assert_eq!(s.spec.pods, PodSelection::All);
    assert_eq!(s.spec.debugger.profile, Profile::NetAdmin);
    assert_eq!(s.spec.debugger.image.as_deref(), Some("busybox:1.36"));
    assert_eq!(
        s.spec.debugger.command,
        Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "sleep 1d".to_owned()
        ])
    );
    assert_eq!(s.spec.debugger.args, None);
    assert_eq!(s.spec.ttl, "30m");
    assert_eq!(s.spec.requester, None);
}

#[test]
fn left_out_flags_leave_the_crd_defaults() {
    let args = debug_args(&["web-7d4b9-x"]);
    assert_eq!(args.target.kind, TargetKind::Pod);
    let s = session(&args, "n").unwrap();
    assert_eq!(s.spec.target.kind, TargetKind::Pod);
    assert_eq!(s.spec.target.container, None);
    assert_eq!(s.spec.mode, Mode::Auto);
    assert_eq!(s.spec.debugger.profile, Profile::General);
    assert_eq!(s.spec.debugger.image, None);
    assert_eq!(s.spec.debugger.command, None);
    assert_eq!(s.spec.ttl, "1h");

    let ending = session(&debug_args(&["deploy/web", "--end-on-exit"]), "n").unwrap();
    assert_eq!(ending.spec.debugger.command, Some(vec!["sh".to_owned()]));
    let own = debug_args(&["deploy/web", "--end-on-exit", "--", "bash", "-l"]);
    assert_eq!(
        session(&own, "n").unwrap().spec.debugger.command,
        Some(vec!["bash".to_owned(), "-l".to_owned()])
    );
}

#[test]
fn generated_names_follow_the_target() {
    let name = generated_name("web", &suffix(1));
    assert!(name.starts_with("web-debug-"), "{name}");
    assert_eq!(name.len(), "web-debug-".len() + 5);
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
    assert_ne!(suffix(1), suffix(2));
    let long = generated_name(&format!("{}-x", "a".repeat(39)), "bcdfg");
    assert_eq!(long, format!("{}-debug-bcdfg", "a".repeat(39)));
}

#[test]
fn ready_text_puts_the_session_name_first() {
    assert_eq!(
        ready_text("web-debug-x", "shop", "kubectl attach -it -n shop p -c c"),
        "session  web-debug-x\nattach   kubectl attach -it -n shop p -c c\n\
             end      shellcar end web-debug-x -n shop\n"
    );
}
