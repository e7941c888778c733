//! Waiting with a bound.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::{Instant, sleep};

/// How often polled conditions are checked.
const POLL: Duration = Duration::from_millis(500);

/// Calls `check` until it returns `Some`, at most for `timeout`.
///
/// On timeout the error says what was awaited and what `check` last reported through
/// `last`, so a failing test shows the state it was stuck in.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Polled<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await? {
            Polled::Done(value) => return Ok(value),
            Polled::NotYet(last) => last,
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        sleep(POLL).await;
    }
}

/// One check of [`poll`]: done, or not yet with a description of what was seen.
pub enum Polled<T> {
    Done(T),
    NotYet(String),
}
