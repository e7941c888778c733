//! Command line: `run` the controller, print the `crd`s, `attach` to a session, `approve`
//! or `reject` one.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

use crate::telemetry::LogFormat;

/// shellcar: declarative, audited, self-expiring debug shells beside Kubernetes workloads.
#[derive(Debug, Parser)]
#[command(name = "shellcar", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller, with the kubeconfig from KUBECONFIG, ~/.kube/config or the pod.
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition as YAML, or write each to its own file.
    Crd(CrdArgs),
    /// Wait until a DebugSession is Ready, then attach a terminal to its debugger.
    Attach(AttachArgs),
    /// Show a DebugSession that awaits approval, and approve it.
    Approve(DecideArgs),
    /// Show a DebugSession that awaits approval, and reject it.
    Reject(DecideArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Debugger image for sessions that name none.
    #[arg(long, env = "SHELLCAR_DEFAULT_IMAGE", default_value = "busybox")]
    pub default_image: String,
    /// Longest ttl a session may ask for.
    #[arg(long, env = "SHELLCAR_MAX_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub max_ttl: Duration,
    /// How long a session may go without a running debugger (a broken image, a pod no
    /// node can take) before it fails with reason StartTimeout and is torn down.
    #[arg(long, env = "SHELLCAR_START_DEADLINE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub start_deadline: Duration,
    /// Image prefix a debugger may use (repeat for several), matched where a path
    /// component, tag or digest ends: `registry.example` allows `registry.example/x`, not
    /// `registry.example.evil.io/x`. None allows every image.
    #[arg(
        long = "allowed-image",
        env = "SHELLCAR_ALLOWED_IMAGES",
        value_delimiter = ','
    )]
    pub allowed_images: Vec<String>,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "SHELLCAR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Address of the /livez and /readyz endpoints.
    #[arg(long, env = "SHELLCAR_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "SHELLCAR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Address of the admission webhook (HTTPS).
    #[arg(long, env = "SHELLCAR_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
    /// Elect a leader among the replicas: only the holder of the Lease --lease-name (in
    /// --namespace) reconciles; every replica serves the webhook. `--leader-elect=false`
    /// reconciles unconditionally: one replica only, or a run outside the cluster.
    #[arg(
        long,
        env = "SHELLCAR_LEADER_ELECT",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = true,
        default_missing_value = "true"
    )]
    pub leader_elect: bool,
    /// The coordination.k8s.io Lease the replicas elect their leader with.
    #[arg(long, default_value = "shellcar-controller")]
    pub lease_name: String,
    /// The operator's own namespace, where the webhook's certificate Secret and Service,
    /// and the leader's Lease, are.
    #[arg(long, env = "POD_NAMESPACE", default_value = "shellcar-system")]
    pub namespace: String,
    /// Service in front of the webhook; its DNS names go into the serving certificate.
    #[arg(long, default_value = "shellcar-webhook")]
    pub webhook_service: String,
    /// Secret that keeps the webhook's CA and serving certificate.
    #[arg(long, default_value = "shellcar-webhook-tls")]
    pub webhook_secret: String,
    /// MutatingWebhookConfiguration whose caBundle the operator keeps.
    #[arg(long, default_value = "shellcar-mutating")]
    pub mutating_webhook: String,
    /// ValidatingWebhookConfiguration whose caBundle the operator keeps.
    #[arg(long, default_value = "shellcar-validating")]
    pub validating_webhook: String,
    /// The webhook certificate in --webhook-secret is kept by cert-manager (config/certmanager):
    /// read it and serve it, never write it, and leave the caBundle to cert-manager.
    #[arg(long)]
    pub external_certificate: bool,
}

#[derive(Debug, clap::Args)]
pub struct CrdArgs {
    /// Write each CRD to DIR/<plural>.yaml (as committed in crds/) instead of printing.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Name of the DebugSession.
    pub name: String,
    /// Namespace of the DebugSession; default: the kubeconfig's.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// How long to wait for the session to become Ready.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Only print the attach command instead of running it.
    #[arg(long)]
    pub print: bool,
}

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// Name of the DebugSession.
    pub name: String,
    /// Namespace of the DebugSession; default: the kubeconfig's.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Why, in your words; recorded in the session's spec.approval. Default: none.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub reason: String,
    /// Decide without asking first (needed when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
}

#[cfg(test)]
mod tests {
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
    fn approve_and_reject_take_a_name_and_ask_by_default() {
        let cli = Cli::try_parse_from(["shellcar", "approve", "web-debug"]).unwrap();
        let Command::Approve(args) = cli.command else {
            panic!("parsed as another command");
        };
        assert_eq!(args.name, "web-debug");
        assert_eq!(args.namespace, None);
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
        assert_eq!(args.namespace.as_deref(), Some("shop"));
        assert_eq!(args.reason, "not during the sale");
        assert!(args.yes);

        let cli = Cli::try_parse_from(["shellcar", "approve", "--yes", "x", "--namespace=a"]);
        let Command::Approve(args) = cli.unwrap().command else {
            panic!("parsed as another command");
        };
        assert!(args.yes);
        assert_eq!(args.namespace.as_deref(), Some("a"));
    }

    #[test]
    fn approve_needs_a_name() {
        assert!(Cli::try_parse_from(["shellcar", "approve"]).is_err());
        assert!(Cli::try_parse_from(["shellcar", "reject", "-y"]).is_err());
    }
}
