//! Retrying and reporting failures: the one retry helper every start-up step uses, and
//! how an error reads with its causes.

use std::time::Duration;

use backon::{BackoffBuilder, ConstantBuilder, ExponentialBuilder, Retryable};
use tracing::warn;

/// The first wait of a [`retry`]; each failure doubles it, up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait of a [`retry`]: an API server that comes back is noticed within it.
const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// `error` and its sources, joined with ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Retries `attempt` until it succeeds, logging each failure as `what`: at start the API
/// server, RBAC or a Secret may not be there yet. It waits 1 s after the first failure,
/// doubling to at most 30 s.
pub async fn retry<T, E, F>(what: &str, attempt: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_WAIT)
        .with_factor(2.0)
        .with_max_delay(LONGEST_WAIT)
        .without_max_times();
    forever(what, backoff, attempt).await
}

/// Retries `attempt` every `delay` until it succeeds, logging each failure as `what`: for
/// a step whose timing others count on, as the leader election's.
pub async fn retry_every<T, E, F>(what: &str, delay: Duration, attempt: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let backoff = ConstantBuilder::default()
        .with_delay(delay)
        .without_max_times();
    forever(what, backoff, attempt).await
}

/// Retries `attempt` as `backoff` says, logging each failure as `what` with the wait
/// that follows it.
async fn forever<T, E, F>(
    what: &str,
    backoff: impl BackoffBuilder + Clone,
    mut attempt: impl FnMut() -> F,
) -> T
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    // The backoffs of this module never run out; were one to, it would start over.
    loop {
        let outcome = (&mut attempt)
            .retry(backoff.clone())
            .notify(|e: &E, delay: Duration| {
                warn!(error = %error_chain(e), retry_in = ?delay, "{what}");
            })
            .await;
        match outcome {
            Ok(value) => return value,
            Err(e) => warn!(error = %error_chain(&e), "{what}"),
        }
    }
}

#[cfg(test)]
mod tests;
