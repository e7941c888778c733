use super::*;

#[test]
fn watch_retries_double_to_five_seconds_and_start_over_on_reset() {
    let mut backoff = WatchBackoff::default();
    let delays: Vec<u64> = backoff
        .by_ref()
        .take(6)
        .map(|d| d.as_millis() as u64)
        .collect();
    assert_eq!(delays, [500, 1000, 2000, 4000, 5000, 5000]);
    backoff.reset();
    assert_eq!(backoff.next(), Some(Duration::from_millis(500)));
}

#[tokio::test]
async fn only_changed_fingerprints_and_every_deletion_pass() {
    let pod = |name: &str, generation: i64| {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_owned());
        pod.metadata.generation = Some(generation);
        pod
    };
    let fingerprint: fn(&Pod) -> u64 = |p| p.metadata.generation.unwrap_or_default() as u64;
    let events = futures::stream::iter(vec![
        Ok(watcher::Event::Init),
        Ok(watcher::Event::InitApply(pod("a", 1))),
        Ok(watcher::Event::InitDone),
        Ok(watcher::Event::Apply(pod("a", 1))),
        Ok(watcher::Event::Apply(pod("a", 2))),
        Ok(watcher::Event::Delete(pod("a", 2))),
        Ok(watcher::Event::Apply(pod("a", 2))),
    ]);
    let passed: Vec<(String, i64)> = changed(events, fingerprint)
        .map(|p| {
            let p = p.unwrap();
            (p.name_any(), p.metadata.generation.unwrap())
        })
        .collect()
        .await;
    let a = |g| ("a".to_owned(), g);
    // Unchanged: swallowed; a deletion passes, and a recreation after it too.
    assert_eq!(passed, [a(1), a(2), a(2), a(2)]);
}

#[test]
fn pods_map_to_the_sessions_their_annotations_name() {
    let pod: Pod = serde_yaml::from_str(
        r#"
metadata:
  name: web-1
  namespace: shop
  annotations:
    debug.shellcar.dev/shellcar-a-1: a
    debug.shellcar.dev/shellcar-b-2: b
    kubectl.kubernetes.io/restartedAt: "now"
"#,
    )
    .unwrap();
    let mut refs: Vec<(String, Option<String>)> = sessions_of_pod(&pod)
        .into_iter()
        .map(|r| (r.name, r.namespace))
        .collect();
    refs.sort();
    let shop = Some("shop".to_owned());
    assert_eq!(
        refs,
        [("a".to_owned(), shop.clone()), ("b".to_owned(), shop)]
    );
}
