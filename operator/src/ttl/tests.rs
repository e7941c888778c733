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
