use std::sync::Mutex;

use tokio::time::Instant;

use super::*;

#[derive(Debug, thiserror::Error)]
#[error("not yet")]
struct NotYet;

#[tokio::test(start_paused = true)]
async fn retry_waits_from_one_second_doubling_to_thirty_forever() {
    let attempts = Mutex::new(Vec::new());
    let value = retry("testing", || {
        let mut attempts = attempts.lock().unwrap();
        attempts.push(Instant::now());
        let n = attempts.len();
        async move { if n < 9 { Err(NotYet) } else { Ok(n) } }
    })
    .await;
    assert_eq!(value, 9);
    let attempts = attempts.into_inner().unwrap();
    let waits: Vec<u64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
}

#[tokio::test(start_paused = true)]
async fn retry_every_waits_the_same_each_time() {
    let attempts = Mutex::new(Vec::new());
    retry_every("testing", Duration::from_secs(2), || {
        let mut attempts = attempts.lock().unwrap();
        attempts.push(Instant::now());
        let n = attempts.len();
        async move { if n < 5 { Err(NotYet) } else { Ok(()) } }
    })
    .await;
    let attempts = attempts.into_inner().unwrap();
    let waits: Vec<u64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(waits, [2, 2, 2, 2]);
}

#[test]
fn an_error_reads_with_its_causes() {
    #[derive(Debug, thiserror::Error)]
    #[error("reading the Lease")]
    struct Outer(#[source] NotYet);
    assert_eq!(error_chain(&Outer(NotYet)), "reading the Lease: not yet");
}
