//! Ephemeral mode with each debugging profile: General, Baseline, Restricted, NetAdmin and
//! SysAdmin, each against `kubectl debug POD --target nginx --profile=P` with the same
//! profile ([`compare::ephemeral`]), all five in a namespace of their own under one
//! DebugPolicy, so that they are measured alike. General repeats the `compare` part's
//! Ephemeral row (measured there without a policy), so that this part alone shows all
//! five.
//!
//! NetAdmin and SysAdmin are refused by shellcar's built-in default policy: the part
//! creates a DebugPolicy that selects its namespace and allows all five, and deletes it at
//! the end.

use anyhow::Result;
use serde_json::json;
use shellcar_e2e::Fixture;
use shellcar_e2e::bench::Scale;
use shellcar_e2e::bench::report::Table;
use shellcar_e2e::psa::PROFILES;

use crate::compare;

pub async fn run(scale: &Scale, f: &Fixture, table: &mut Table) -> Result<()> {
    let policy = f
        .policy("all-profiles", json!({"profiles": PROFILES}))
        .await?;
    policy.wait_ready("True").await?;
    table.section(&format!(
        "Profiles: Ephemeral with each kubectl debug --profile, under DebugPolicy {}",
        policy.name
    ));
    for profile in PROFILES {
        // A profile that fails leaves a line, and the others still run.
        if let Err(e) = compare::ephemeral(scale, f, table, profile).await {
            table.note(&format!("profile {profile:?} FAILED: {e:#}"));
        }
    }
    policy.delete().await
}
