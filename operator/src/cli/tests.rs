use super::*;

fn run_args(args: &[&str]) -> RunArgs {
    let cli = Cli::try_parse_from(["shellcar", "run"].iter().chain(args)).unwrap();
    match cli.command {
        Command::Run(args) => *args,
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn leader_election_is_on_unless_turned_off() {
    assert!(run_args(&[]).leader_elect);
    assert!(run_args(&["--leader-elect"]).leader_elect);
    assert!(!run_args(&["--leader-elect=false"]).leader_elect);
    // Not a flag followed by a stray word that leaves election on.
    assert!(Cli::try_parse_from(["shellcar", "run", "--leader-elect", "false"]).is_err());
    assert_eq!(run_args(&[]).lease_name, "shellcar-controller");
    assert_eq!(run_args(&["--lease-name=other"]).lease_name, "other");
}

#[test]
fn watch_namespaces_is_a_list_and_empty_by_default() {
    assert!(run_args(&[]).watch_namespaces.is_empty());
    assert_eq!(
        run_args(&["--watch-namespaces=shop,team-b"]).watch_namespaces,
        ["shop", "team-b"]
    );
    assert_eq!(
        run_args(&["--watch-namespaces", "shop", "--watch-namespaces", "b"]).watch_namespaces,
        ["shop", "b"]
    );
}

#[test]
fn the_webhook_limits_each_source_generously_and_asks_no_certificate_by_default() {
    let defaults = run_args(&[]);
    assert_eq!(
        (
            defaults.webhook_rate_limit.get(),
            defaults.webhook_burst.get()
        ),
        (50, 200)
    );
    assert_eq!(defaults.webhook_client_ca, None);
    let set = run_args(&[
        "--webhook-rate-limit=5",
        "--webhook-burst=10",
        "--webhook-client-ca=/etc/shellcar/client-ca.crt",
    ]);
    assert_eq!(
        (set.webhook_rate_limit.get(), set.webhook_burst.get()),
        (5, 10)
    );
    assert_eq!(
        set.webhook_client_ca.as_deref(),
        Some(Path::new("/etc/shellcar/client-ca.crt"))
    );
    // No limit of zero: it would refuse the API server too.
    assert!(Cli::try_parse_from(["shellcar", "run", "--webhook-rate-limit=0"]).is_err());
    assert!(Cli::try_parse_from(["shellcar", "run", "--webhook-burst=0"]).is_err());
}

#[test]
fn approve_and_reject_take_a_name_and_ask_by_default() {
    let cli = Cli::try_parse_from(["shellcar", "approve", "web-debug"]).unwrap();
    let Command::Approve(args) = cli.command else {
        panic!("parsed as another command");
    };
    assert_eq!(args.name, "web-debug");
    assert_eq!(args.connection.namespace, None);
    assert_eq!(args.reason, "");
    assert!(!args.yes);

    let cli = Cli::try_parse_from([
        "shellcar",
        "reject",
        "web-debug",
        "-n",
        "shop",
        "--reason",
        "not during the sale",
        "-y",
    ])
    .unwrap();
    let Command::Reject(args) = cli.command else {
        panic!("parsed as another command");
    };
    assert_eq!(args.name, "web-debug");
    assert_eq!(args.connection.namespace.as_deref(), Some("shop"));
    assert_eq!(args.reason, "not during the sale");
    assert!(args.yes);

    let cli = Cli::try_parse_from(["shellcar", "approve", "--yes", "x", "--namespace=a"]);
    let Command::Approve(args) = cli.unwrap().command else {
        panic!("parsed as another command");
    };
    assert!(args.yes);
    assert_eq!(args.connection.namespace.as_deref(), Some("a"));
}

fn debug_args(args: &[&str]) -> Result<DebugArgs, clap::Error> {
    let cli = Cli::try_parse_from(["shellcar", "debug"].iter().chain(args))?;
    match cli.command {
        Command::Debug(args) => Ok(*args),
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn debug_attaches_by_terminal_unless_told_and_takes_a_command_after_dashes() {
    let args = debug_args(&["deploy/web"]).unwrap();
    assert_eq!(args.attach, None);
    assert!(!args.end_on_exit);
    assert!(args.command.is_empty());
    assert_eq!(args.connection.namespace, None);
    assert_eq!(args.timeout, Duration::from_secs(300));

    let args = debug_args(&[
        "--attach=false",
        "sts/db",
        "--context",
        "prod",
        "--kubeconfig=/tmp/kc",
        "--end-on-exit",
        "--",
        "sh",
        "-c",
        "ps ax",
    ])
    .unwrap();
    assert_eq!(args.attach, Some(false));
    assert!(args.end_on_exit);
    assert_eq!(args.target.to_string(), "sts/db");
    assert_eq!(args.connection.context.as_deref(), Some("prod"));
    assert_eq!(
        args.connection.kubeconfig.as_deref(),
        Some(Path::new("/tmp/kc"))
    );
    assert_eq!(args.command, ["sh", "-c", "ps ax"]);
    assert_eq!(
        debug_args(&["pod/x", "--attach"]).unwrap().attach,
        Some(true)
    );
    // Not a flag followed by a stray word that turns attaching on.
    assert!(debug_args(&["pod/x", "--attach", "false"]).is_err());
    // Words before `--` are not the command.
    assert!(debug_args(&["pod/x", "sh"]).is_err());
}

#[test]
fn debug_refuses_unknown_kinds_modes_and_ttls_before_connecting() {
    let err = debug_args(&["svc/web"]).unwrap_err().to_string();
    assert!(
        err.contains("deploy (deployment), sts (statefulset)"),
        "{err}"
    );
    assert!(debug_args(&["deploy/web", "--mode=sideways"]).is_err());
    assert!(debug_args(&["deploy/web", "--profile=root"]).is_err());
    assert!(debug_args(&["deploy/web", "--ttl=1 hour"]).is_err());
    assert!(debug_args(&["deploy/web", "--ttl=1h30m"]).is_ok());
    assert!(debug_args(&[]).is_err());
}

#[test]
fn client_commands_share_the_connection_flags() {
    let cli = Cli::try_parse_from(["shellcar", "ls", "-A", "--context", "c"]).unwrap();
    let Command::Ls(args) = cli.command else {
        panic!("parsed as another command");
    };
    assert!(args.all_namespaces);
    assert_eq!(args.connection.context.as_deref(), Some("c"));

    let cli = Cli::try_parse_from(["shellcar", "extend", "s", "30m", "-n", "shop"]).unwrap();
    let Command::Extend(args) = cli.command else {
        panic!("parsed as another command");
    };
    assert_eq!(args.duration, Duration::from_secs(1800));
    assert_eq!(args.connection.namespace.as_deref(), Some("shop"));
    assert!(Cli::try_parse_from(["shellcar", "extend", "s", "soon"]).is_err());

    let cli = Cli::try_parse_from(["shellcar", "attach", "s", "--kubeconfig", "k"]).unwrap();
    let Command::Attach(args) = cli.command else {
        panic!("parsed as another command");
    };
    assert_eq!(args.connection.kubeconfig.as_deref(), Some(Path::new("k")));
    assert!(Cli::try_parse_from(["shellcar", "completion", "zsh"]).is_ok());
    assert!(Cli::try_parse_from(["shellcar", "completion", "tcsh"]).is_err());
}

#[test]
fn as_a_kubectl_plugin_help_names_kubectl_shellcar() {
    let mut plugin = command_for(Some(Path::new("/usr/local/bin/kubectl-shellcar")));
    assert!(
        plugin
            .render_usage()
            .to_string()
            .contains("kubectl shellcar"),
        "{}",
        plugin.render_usage()
    );
    let mut plain = command_for(Some(Path::new("/usr/bin/shellcar")));
    assert!(!plain.render_usage().to_string().contains("kubectl"));
}

#[test]
fn approve_needs_a_name() {
    assert!(Cli::try_parse_from(["shellcar", "approve"]).is_err());
    assert!(Cli::try_parse_from(["shellcar", "reject", "-y"]).is_err());
}
