use super::*;
use governor::clock::FakeRelativeClock;
use std::net::{Ipv4Addr, Ipv6Addr};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

#[test]
fn a_source_gets_its_burst_then_waits_while_another_still_passes() {
    let clock = FakeRelativeClock::default();
    let limit = SourceLimit::with_clock(quota(nz(2), nz(3)), clock.clone());
    for n in 1..=3 {
        assert_eq!(limit.check(ip(1)), Ok(()), "request {n} of the burst");
    }
    let wait = limit.check(ip(1)).unwrap_err();
    // Two per second: the next request passes half a second later.
    assert_eq!(wait, Duration::from_millis(500));
    assert_eq!(
        limit.check(ip(2)),
        Ok(()),
        "another source has its own budget"
    );

    clock.advance(wait);
    assert_eq!(limit.check(ip(1)), Ok(()), "the budget refills at the rate");
    assert!(limit.check(ip(1)).is_err());
}

#[test]
fn an_ipv4_mapped_address_shares_the_budget_of_the_ipv4_address() {
    let limit = SourceLimit::with_clock(quota(nz(1), nz(1)), FakeRelativeClock::default());
    let v4 = Ipv4Addr::new(10, 87, 0, 1);
    assert_eq!(limit.check(IpAddr::V4(v4)), Ok(()));
    assert!(limit.check(IpAddr::V6(v4.to_ipv6_mapped())).is_err());
    assert_eq!(limit.check(IpAddr::V6(Ipv6Addr::LOCALHOST)), Ok(()));
}

#[test]
fn idle_sources_are_forgotten_once_their_budget_is_full_again() {
    let clock = FakeRelativeClock::default();
    let limit = SourceLimit::with_clock(quota(nz(1), nz(2)), clock.clone());
    for last in 1..=10 {
        assert_eq!(limit.check(ip(last)), Ok(()));
    }
    assert_eq!(limit.sources(), 10);
    limit.forget_idle();
    assert_eq!(limit.sources(), 10, "each has spent some of its budget");
    clock.advance(Duration::from_secs(2));
    limit.forget_idle();
    assert_eq!(limit.sources(), 0);
}
