//! Command line: `run` the controller, print the `crd`s; the client side (`debug`,
//! `attach`, `ls`, `end`, `extend`, `approve`, `reject`, `completion`), which also runs as
//! the kubectl plugin `kubectl shellcar`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::crd::{Mode, PodSelection, Profile};

mod target;

pub use target::{TargetError, TargetRef, short_kind};

/// The name kubectl looks for on PATH to run `kubectl shellcar`.
pub const PLUGIN_BINARY: &str = "kubectl-shellcar";

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
    /// Create a DebugSession for TARGET, wait until it is Ready, and attach to its debugger.
    Debug(Box<DebugArgs>),
    /// Wait until a DebugSession is Ready, then attach a terminal to its debugger.
    Attach(AttachArgs),
    /// List DebugSessions: target, mode, phase, requester, expiry.
    Ls(LsArgs),
    /// Delete a DebugSession and wait until its debugger is removed.
    End(EndArgs),
    /// Raise a DebugSession's ttl by a duration.
    Extend(ExtendArgs),
    /// Show a DebugSession that awaits approval, and approve it.
    Approve(DecideArgs),
    /// Show a DebugSession that awaits approval, and reject it.
    Reject(DecideArgs),
    /// Print a shell completion script.
    Completion(CompletionArgs),
    /// Kill every process of an ephemeral debugger container (run by the operator, from
    /// its own image, beside the debugger).
    #[command(hide = true)]
    StopDebugger(StopDebuggerArgs),
}

/// Parses the process's arguments. Run as `kubectl-shellcar` (by `kubectl shellcar`), help
/// and errors name the command `kubectl shellcar`.
pub fn parse() -> Cli {
    parse_from(std::env::args_os())
}

/// Parses `args` as [`parse`] does; exits with clap's message on an error.
pub fn parse_from<I, T>(args: I) -> Cli
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let matches = command_for(args.first().map(Path::new)).get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The clap command, named as the binary at `argv0` was invoked.
pub fn command_for(argv0: Option<&Path>) -> clap::Command {
    let plugin = argv0
        .and_then(Path::file_name)
        .is_some_and(|name| name == PLUGIN_BINARY);
    let command = Cli::command();
    if plugin {
        command.bin_name("kubectl shellcar")
    } else {
        command
    }
}

/// Which cluster and namespace a client command works in, as kubectl's flags of the same
/// names say.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// Namespace; default: the kubeconfig context's.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use; default: its current context.
    #[arg(long)]
    pub context: Option<String>,
    /// Path of the kubeconfig file; default: KUBECONFIG, ~/.kube/config, or in-cluster.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct DebugArgs {
    /// What to debug, as kubectl writes it: deploy/NAME, sts/NAME, ds/NAME, rs/NAME,
    /// pod/NAME, or a pod's name.
    pub target: TargetRef,
    #[command(flatten)]
    pub connection: ConnectArgs,
    /// How the debugger reaches the target; Auto: Sidecar for workloads, Ephemeral for pods.
    #[arg(long, default_value = "Auto", ignore_case = true,
          value_parser = PossibleValuesParser::new(["Auto", "Sidecar", "Ephemeral", "Copy"]).map(|s| mode(&s)))]
    pub mode: Mode,
    /// Security profile of the debugger, as in `kubectl debug --profile`.
    #[arg(long, default_value = "General", ignore_case = true,
          value_parser = PossibleValuesParser::new(["General", "Baseline", "Restricted", "NetAdmin", "SysAdmin"]).map(|s| profile(&s)))]
    pub profile: Profile,
    /// Image of the debugger; default: the operator's.
    #[arg(long)]
    pub image: Option<String>,
    /// How long the session lives, such as 30m or 1h30m; default: 1h.
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<String>,
    /// The target container whose processes matter most.
    #[arg(short, long)]
    pub container: Option<String>,
    /// Which pods of a workload an Ephemeral session debugs.
    #[arg(long, default_value = "One", ignore_case = true,
          value_parser = PossibleValuesParser::new(["One", "All"]).map(|s| pods(&s)))]
    pub pods: PodSelection,
    /// Name of the DebugSession; default: `<target>-debug-<5 characters>`.
    #[arg(long)]
    pub name: Option<String>,
    /// Attach once the session is Ready; default: when stdin is a terminal. With
    /// `--attach=false`, print the session's name and attach command instead.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub attach: Option<bool>,
    /// Delete the session when the attach ends, and wait until its debugger is removed.
    #[arg(long)]
    pub end_on_exit: bool,
    /// How long to wait for the session to become Ready (approval included).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// How long --end-on-exit waits for the debugger's removal.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub end_timeout: Duration,
    /// The debugger's command and arguments, after `--`; default: a shell that starts
    /// again when you leave it.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn mode(s: &str) -> Mode {
    match s.to_ascii_lowercase().as_str() {
        "sidecar" => Mode::Sidecar,
        "ephemeral" => Mode::Ephemeral,
        "copy" => Mode::Copy,
        _ => Mode::Auto,
    }
}

fn profile(s: &str) -> Profile {
    match s.to_ascii_lowercase().as_str() {
        "baseline" => Profile::Baseline,
        "restricted" => Profile::Restricted,
        "netadmin" => Profile::NetAdmin,
        "sysadmin" => Profile::SysAdmin,
        _ => Profile::General,
    }
}

fn pods(s: &str) -> PodSelection {
    if s.eq_ignore_ascii_case("all") {
        PodSelection::All
    } else {
        PodSelection::One
    }
}

/// A ttl in the form the CRD accepts, checked before anything is sent.
fn parse_ttl(s: &str) -> Result<String, crate::ttl::TtlError> {
    crate::ttl::parse(s, Duration::MAX).map(|_| s.to_owned())
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub connection: ConnectArgs,
    /// List the sessions of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(Debug, clap::Args)]
pub struct EndArgs {
    /// Name of the DebugSession.
    pub name: String,
    #[command(flatten)]
    pub connection: ConnectArgs,
    /// How long to wait for the debugger's removal.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct ExtendArgs {
    /// Name of the DebugSession.
    pub name: String,
    /// How much longer, such as 30m or 1h.
    #[arg(value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    pub connection: ConnectArgs,
}

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// How the controller writes its log.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    // No doc comments here: clap would add them to `--help`.
    Text,
    Json,
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
    /// Image a debugger may use, or a registry or path it may come from (repeat for
    /// several), compared as the runtime resolves references: `busybox` allows
    /// `docker.io/library/busybox:1.36`; `registry.example` allows `registry.example/x`, not
    /// `registry.example:5000/x` or `registry.example.evil.io/x`; `localhost:5000/` a
    /// registry with a port; `busybox:1.36` only that tag. None allows every image.
    #[arg(
        long = "allowed-image",
        env = "SHELLCAR_ALLOWED_IMAGES",
        value_delimiter = ','
    )]
    pub allowed_images: Vec<String>,
    /// Image of the container that stops Ephemeral debuggers from outside their own image
    /// (it runs `shellcar stop-debugger`). Default: the image this operator runs from, read
    /// from its own pod (POD_NAME, POD_NAMESPACE).
    #[arg(long, env = "SHELLCAR_STOPPER_IMAGE")]
    pub stopper_image: Option<String>,
    /// How often the leader looks for debuggers whose session is gone (a finalizer removed
    /// by hand) and removes them; it also looks when it starts leading.
    #[arg(long, env = "SHELLCAR_SWEEP_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,
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
    /// Admission requests per second the webhook answers from one source address (the
    /// TCP peer), once its --webhook-burst is spent; over it, HTTP 429 with Retry-After.
    /// Each API server is one source, and sends two reviews per DebugSession write.
    #[arg(long, env = "SHELLCAR_WEBHOOK_RATE_LIMIT", default_value = "50")]
    pub webhook_rate_limit: NonZeroU32,
    /// Requests one source address may send at once before --webhook-rate-limit applies.
    #[arg(long, env = "SHELLCAR_WEBHOOK_BURST", default_value = "200")]
    pub webhook_burst: NonZeroU32,
    /// PEM file of the CA (or CAs) whose client certificates the webhook requires: TLS
    /// handshakes without such a certificate fail. Give the API server a certificate from
    /// it in its AdmissionConfiguration's kubeConfigFile. Read once at start; a new CA
    /// takes a restart. Default: no client certificate asked.
    #[arg(long, env = "SHELLCAR_WEBHOOK_CLIENT_CA", value_name = "FILE")]
    pub webhook_client_ca: Option<PathBuf>,
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
    /// and the leader's Lease, are. Like kube-system, it is protected: a session there
    /// needs a DebugPolicy that names it.
    #[arg(long, env = "POD_NAMESPACE", default_value = "shellcar-system")]
    pub namespace: String,
    /// Watch and act in these namespaces only (comma-separated, or repeat the flag), with
    /// namespaced reads and RBAC Roles there (config/namespaced); the webhook refuses
    /// sessions elsewhere. None: every namespace.
    #[arg(
        long = "watch-namespaces",
        env = "SHELLCAR_WATCH_NAMESPACES",
        value_delimiter = ',',
        value_name = "NAMESPACES"
    )]
    pub watch_namespaces: Vec<String>,
    /// Service in front of the webhook; its DNS names go into the serving certificate.
    #[arg(long, default_value = "shellcar-webhook")]
    pub webhook_service: String,
    /// Secret that keeps the webhook's CA and serving certificate.
    #[arg(long, default_value = "shellcar-webhook-tls")]
    pub webhook_secret: String,
    /// Secret that keeps the key of the admission stamp, with which the webhook seals each
    /// session's requester and approval and the reconciler checks them. Created if absent;
    /// only the operator should read it.
    #[arg(long, default_value = "shellcar-admission-key")]
    pub stamp_secret: String,
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
pub struct StopDebuggerArgs {
    /// The debugger's container ID, as the pod's status gives it (`containerd://<hex>`).
    pub container_id: String,
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
    #[command(flatten)]
    pub connection: ConnectArgs,
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
    #[command(flatten)]
    pub connection: ConnectArgs,
    /// Why, in your words; recorded in the session's spec.approval. Default: none.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub reason: String,
    /// Decide without asking first (needed when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
}

#[cfg(test)]
mod tests;
