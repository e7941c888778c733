//! The webhook's rate limit per source address: each peer gets a burst and a steady rate
//! of requests, counted before anything else is done with a request (a refused one costs
//! a map lookup). The API server reaches the webhook from its own addresses, so a flood
//! from elsewhere on the pod network spends only its own budget.
//!
//! The address is the TCP peer's, which [`super::http`] takes from the connection, never
//! from a header a client could set.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// How many requests each source may send.
pub fn quota(per_second: NonZeroU32, burst: NonZeroU32) -> Quota {
    Quota::per_second(per_second).allow_burst(burst)
}

/// A rate limiter keyed by source address.
pub struct SourceLimit<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
}

impl SourceLimit {
    /// A limit of `quota` for every source, on the system's monotonic clock.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, DefaultClock::default())
    }
}

impl<C: Clock> SourceLimit<C> {
    /// A limit of `quota` for every source, on `clock`.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        SourceLimit {
            limiter: RateLimiter::dashmap_with_clock(quota, clock),
        }
    }

    /// Counts one request from `source`: `Err` with how long until the next one would
    /// pass, when over the limit. An IPv4 address seen as an IPv6-mapped one (a listener
    /// on `[::]`) counts as itself.
    pub fn check(&self, source: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&source.to_canonical())
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Forgets the sources whose budget is full again, so that the map does not grow with
    /// every address ever seen.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many sources are remembered.
    pub fn sources(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests;
