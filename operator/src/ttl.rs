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
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_ttls_are_written() {
        for (secs, text) in [
            (86400, "24h"),
            (1800, "30m"),
            (5400, "1h30m"),
            (45, "45s"),
            (0, "0s"),
        ] {
            assert_eq!(format(Duration::from_secs(secs)), text);
        }
        assert_eq!(
            parse(&format(Duration::from_secs(3725)), Duration::MAX),
            Ok(Duration::from_secs(3725))
        );
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!(parse("30m", DAY), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("1h", DAY), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1h30m", DAY), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("20s", DAY), Ok(Duration::from_secs(20)));
        assert_eq!(parse("24h", DAY), Ok(DAY));
    }

    #[test]
    fn refuses_malformed_ttls() {
        for bad in ["", "30", "m", "1 h", "1d", "-5m", "1.5h", "10x", "1h 30m"] {
            assert!(
                matches!(parse(bad, DAY), Err(TtlError::Malformed { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn refuses_zero_and_too_long() {
        assert!(matches!(parse("0s", DAY), Err(TtlError::Zero { .. })));
        let err = parse("25h", DAY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ttl \"25h\" is longer than the maximum of 1day"
        );
        assert!(matches!(
            parse("999999h", DAY),
            Err(TtlError::TooLong { .. })
        ));
    }

    #[test]
    fn expiry_is_creation_plus_ttl() {
        let created: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let at = expires_at(created, Duration::from_secs(1800));
        assert_eq!(at.to_string(), "2026-11-23T10:30:00Z");
        let now: Timestamp = "2026-11-23T10:20:00Z".parse().unwrap();
        assert_eq!(remaining(now, at), Some(Duration::from_secs(600)));
        assert_eq!(remaining(at, at), None);
    }
}
