use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use shellcar::admission;
use shellcar::cli::{Cli, Command, RunArgs};
use shellcar::context::Policy;
use shellcar::telemetry::{self, Health, Metrics};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", shellcar::crds_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Attach(args) => {
            let code = shellcar::attach::attach(args).await?;
            Ok(ExitCode::from(code))
        }
        Command::Run(args) => run(*args).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let policy = Policy {
        default_image: args.default_image,
        max_ttl: args.max_ttl,
        allowed_images: args.allowed_images,
    };
    let webhook = admission::Settings {
        addr: args.webhook_addr,
        namespace: args.namespace,
        service: args.webhook_service,
        secret: args.webhook_secret,
        mutating: args.mutating_webhook,
        validating: args.validating_webhook,
        external_certificate: args.external_certificate,
    };
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let server = telemetry::serve(
        args.metrics_addr,
        args.health_addr,
        metrics.clone(),
        health.clone(),
    );
    let admission = admission::run(client.clone(), webhook, policy.clone(), health.clone());
    tokio::select! {
        result = shellcar::controller::run(client, policy, metrics, health) => result?,
        result = server => result.context("serving metrics and health")?,
        result = admission => result.context("serving the admission webhook")?,
    }
    Ok(())
}
