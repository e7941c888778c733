use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use shellcar::admission;
use shellcar::cli::{self, Cli, Command, RunArgs};
use shellcar::client;
use shellcar::context::Policy;
use shellcar::crd::Decision;
use shellcar::leader::{self, Election};
use shellcar::telemetry::{self, Health, Metrics};
use shellcar::version;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// Errors are printed as one line of causes, `error: what: why`, without a backtrace: they
/// are for the person at the terminal (a refused approval, a missing kubeconfig).
#[tokio::main]
async fn main() -> ExitCode {
    match command(cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn command(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crd(args) => {
            match args.out_dir {
                None => print!("{}", shellcar::crds_yaml()?),
                Some(dir) => {
                    for (file, yaml) in shellcar::crds()? {
                        let path = dir.join(file);
                        std::fs::write(&path, yaml)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Debug(args) => Ok(ExitCode::from(client::debug::debug(*args).await?)),
        Command::Attach(args) => Ok(ExitCode::from(client::attach::attach(args).await?)),
        Command::Ls(args) => Ok(ExitCode::from(client::sessions::ls(args).await?)),
        Command::End(args) => Ok(ExitCode::from(client::sessions::end(args).await?)),
        Command::Extend(args) => Ok(ExitCode::from(client::sessions::extend(args).await?)),
        Command::Approve(args) => {
            let code = client::approve::decide(Decision::Approved, args).await?;
            Ok(ExitCode::from(code))
        }
        Command::Reject(args) => {
            let code = client::approve::decide(Decision::Rejected, args).await?;
            Ok(ExitCode::from(code))
        }
        Command::Completion(args) => {
            // Named as invoked: `shellcar`, or `kubectl-shellcar` on PATH as a plugin.
            let name = std::env::args_os()
                .next()
                .as_deref()
                .and_then(|argv0| std::path::Path::new(argv0).file_name())
                .map_or_else(
                    || "shellcar".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(*args).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(args.log_format);
    let metrics = Arc::new(Metrics::default());
    let client = shellcar::api_requests::counted_client(&metrics.count_requests())
        .await
        .context("no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let policy = Policy {
        default_image: args.default_image,
        max_ttl: args.max_ttl,
        allowed_images: args.allowed_images,
        start_deadline: args.start_deadline,
    };
    let election = args.leader_elect.then(|| Election {
        namespace: args.namespace.clone(),
        lease: args.lease_name,
        identity: leader::identity(),
    });
    let webhook = admission::Settings {
        addr: args.webhook_addr,
        namespace: args.namespace,
        service: args.webhook_service,
        secret: args.webhook_secret,
        mutating: args.mutating_webhook,
        validating: args.validating_webhook,
        external_certificate: args.external_certificate,
    };
    let health = Arc::new(Health::default());
    let server = telemetry::serve(
        args.metrics_addr,
        args.health_addr,
        metrics.clone(),
        health.clone(),
    );
    let work = async move {
        let mut shutdown = Box::pin(shutdown());
        let supported = tokio::select! {
            supported = version::check(&client, &health) => supported,
            () = &mut shutdown => return Ok(()),
        };
        if !supported {
            // Live, not ready, and idle: see version::check.
            shutdown.await;
            return Ok(());
        }
        let admission = admission::run(client.clone(), webhook, policy.clone(), health.clone());
        let controller = {
            let (client, metrics) = (client.clone(), metrics.clone());
            move |stop| {
                shellcar::controller::run(client.clone(), policy.clone(), metrics.clone(), stop)
            }
        };
        // Every replica serves metrics, health and the webhook; the controller runs on the
        // leader only. Shutdown goes through the leader: it stops the controller, releases
        // the Lease, and then the process exits.
        let controller = leader::run(client, election, metrics, health, controller, shutdown);
        tokio::select! {
            result = controller => result.context("running the controller"),
            result = admission => result.context("serving the admission webhook"),
        }
    };
    tokio::select! {
        result = server => result.context("serving metrics and health")?,
        result = work => result?,
    }
    Ok(())
}

/// Resolves at SIGTERM (the kubelet stopping the pod) or Ctrl+C.
async fn shutdown() {
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot handle SIGTERM; Ctrl+C still shuts down");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => info!("SIGTERM: shutting down"),
        Ok(()) = tokio::signal::ctrl_c() => info!("Ctrl+C: shutting down"),
    }
}
