//! Session lifetimes: parsing `spec.ttl` and working out when a session expires.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Why a ttl was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TtlError {
    #[error("ttl {ttl:?} is not a duration such as 30m, 1h or 1h30m")]
    Malformed { ttl: String },
    #[error("ttl {ttl:?} must be longer than zero")]
    Zero { ttl: String },
    #[error("ttl {ttl:?} is longer than the maximum of {max}")]
    TooLong { ttl: String, max: String },
}

/// Parses a ttl such as `30m`, `1h` or `1h30m` and checks it against `max`.
///
/// The CRD schema already restricts the form to digits followed by `h`, `m` or `s`; this
/// parser accepts exactly that form, so a session that got past the schema on an older
/// CRD is refused here with the same words.
pub fn parse(ttl: &str, max: Duration) -> Result<Duration, TtlError> {
    let malformed = || TtlError::Malformed {
        ttl: ttl.to_owned(),
    };
    if ttl.is_empty() || !ttl.chars().all(|c| c.is_ascii_digit() || "hms".contains(c)) {
        return Err(malformed());
    }
    // humantime reads `1h30m` as well as `1h 30m`; the character check above keeps to
    // the compact form the schema allows.
    let parsed = humantime::parse_duration(ttl).map_err(|_| malformed())?;
    if parsed.is_zero() {
        return Err(TtlError::Zero {
            ttl: ttl.to_owned(),
        });
    }
    if parsed > max {
        return Err(TtlError::TooLong {
            ttl: ttl.to_owned(),
            max: humantime::format_duration(max).to_string(),
        });
    }
    Ok(parsed)
}

/// `d` as a ttl is written: `24h`, `30m`, `1h30m`, `45s` (whole seconds).
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// The instant a session created at `created` with lifetime `ttl` expires.
pub fn expires_at(created: Timestamp, ttl: Duration) -> Timestamp {
    let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
    created.checked_add(ttl).unwrap_or(Timestamp::MAX)
}

/// How long to sleep until `at`, or `None` once it has passed.
pub fn remaining(now: Timestamp, at: Timestamp) -> Option<Duration> {
    let left = at.duration_since(now);
    if left.is_positive() {
        Duration::try_from(left).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
