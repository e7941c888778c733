//! What `make bench` (`e2e/benches/sessions`) is built from: its scale, watches that time
//! what they see, the operator's own metrics, load from parallel clients, and the table
//! it prints.

pub mod load;
pub mod metrics;
pub mod observe;
pub mod operator;
pub mod report;

use std::time::Duration;

use anyhow::{Context as _, Result};

/// How much the benchmark does. Each number can be lowered (or raised) with an
/// environment variable, to develop at a small scale: `SHELLCAR_BENCH_SESSIONS=50`.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Alternating pairs per comparison (`SHELLCAR_BENCH_PAIRS`, at least 5 for the table
    /// to mean something).
    pub pairs: usize,
    /// Sessions created at once, on as many Deployments (`SHELLCAR_BENCH_SESSIONS`).
    pub sessions: usize,
    /// Unrelated Deployments for the memory comparison (`SHELLCAR_BENCH_UNRELATED`).
    pub unrelated: usize,
    /// Parallel clients that create them (`SHELLCAR_BENCH_CLIENTS`).
    pub clients: usize,
    /// Session lifecycles whose API requests are counted (`SHELLCAR_BENCH_LIFECYCLES`).
    pub lifecycles: usize,
    /// How long the settled operator is watched (`SHELLCAR_BENCH_IDLE_SECONDS`).
    pub idle: Duration,
    /// Which parts run (`SHELLCAR_BENCH_ONLY`, comma-separated; default all).
    pub only: Option<Vec<String>>,
}

impl Scale {
    pub fn from_env() -> Result<Scale> {
        Ok(Scale {
            pairs: var("SHELLCAR_BENCH_PAIRS", 7)?,
            sessions: var("SHELLCAR_BENCH_SESSIONS", 1000)?,
            unrelated: var("SHELLCAR_BENCH_UNRELATED", 5000)?,
            clients: var("SHELLCAR_BENCH_CLIENTS", 8)?.max(1),
            lifecycles: var("SHELLCAR_BENCH_LIFECYCLES", 5)?,
            idle: Duration::from_secs(var("SHELLCAR_BENCH_IDLE_SECONDS", 60)?),
            only: std::env::var("SHELLCAR_BENCH_ONLY")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()),
        })
    }

    /// Whether part `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name))
    }
}

fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}
