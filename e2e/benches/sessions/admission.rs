//! What the admission webhook adds to `kubectl apply` of a session.

use anyhow::Result;
use kube::api::PostParams;
use shellcar::crd::TargetKind;
use shellcar_e2e::Fixture;
use shellcar_e2e::bench::report::{Samples, Table, Verdict};
use shellcar_e2e::session::session;
use shellcar_e2e::webhook::WebhookBypass;
use shellcar_e2e::workload::nginx_deployment;
use tokio::time::Instant;

/// Alternating pairs of dry-run creates.
const ROUNDS: usize = 20;

/// The same create with `dryRun=All` (admission webhooks still run; nothing is stored) in
/// a namespace the webhooks serve (`f`) and in one they skip (`skipped`), alternating,
/// each against a Deployment there.
pub async fn run(f: &Fixture, skipped: &Fixture, table: &mut Table) -> Result<()> {
    table.section("Admission: what the webhook adds to a create (dry run, alternating)");
    for fx in [f, skipped] {
        fx.workloads
            .deployments
            .create(&PostParams::default(), &nginx_deployment("adm", 0)?)
            .await?;
    }
    let bypass = WebhookBypass::install(skipped).await?;
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let request = session("adm", TargetKind::Deployment, "adm", "30m")?;
    let (mut served, mut bypassed) = (Samples::default(), Samples::default());
    for _ in 0..ROUNDS {
        for (fx, samples) in [(f, &mut served), (skipped, &mut bypassed)] {
            let start = Instant::now();
            fx.sessions.api.create(&params, &request).await?;
            samples.push(start.elapsed());
        }
    }
    bypass.remove().await?;
    table.samples("dry-run create, through the webhook", &served);
    table.samples("dry-run create, webhook skipped", &bypassed);
    table.compare("webhook's share", &served, &bypassed, |_, _| Verdict::Info);
    Ok(())
}
