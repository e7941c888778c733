use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector;
use kube::runtime::reflector::store::Writer;

use super::*;

fn cm(ns: &str, name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.namespace = Some(ns.to_owned());
    cm.metadata.name = Some(name.to_owned());
    cm.data = Some([("v".to_owned(), value.to_owned())].into());
    cm
}

/// What the store holds, as `namespace/name=value`, sorted.
fn held(store: &Store<ConfigMap>) -> Vec<String> {
    let mut out: Vec<String> = store
        .state()
        .iter()
        .map(|c| {
            format!(
                "{}/{}={}",
                c.metadata.namespace.as_deref().unwrap(),
                c.metadata.name.as_deref().unwrap(),
                c.data.as_ref().unwrap()["v"]
            )
        })
        .collect();
    out.sort();
    out
}

/// A merge of the watches of namespaces a and b, and the reflector it feeds.
fn merging() -> (Merge<ConfigMap>, Writer<ConfigMap>, Store<ConfigMap>) {
    let (store, writer) = reflector::store::<ConfigMap>();
    let merge = Merge::new(vec!["a".to_owned(), "b".to_owned()], store.clone(), |m| {
        m.namespace.as_deref()
    });
    (merge, writer, store)
}

/// Feeds `event` of watch `i` through `merge` into `writer`; returns how many events
/// passed.
fn feed(
    merge: &mut Merge<ConfigMap>,
    writer: &mut Writer<ConfigMap>,
    i: usize,
    event: Event<ConfigMap>,
) -> usize {
    let out = merge.on(i, event);
    for e in &out {
        writer.apply_watcher_event(e);
    }
    out.len()
}

#[tokio::test]
async fn the_store_is_ready_once_every_namespace_has_listed() {
    let (mut merge, mut writer, store) = merging();
    feed(&mut merge, &mut writer, 0, Event::Init);
    feed(
        &mut merge,
        &mut writer,
        0,
        Event::InitApply(cm("a", "x", "1")),
    );
    assert_eq!(feed(&mut merge, &mut writer, 0, Event::InitDone), 0);
    // a's watch goes on while b still lists: held back, then passed with the list.
    feed(&mut merge, &mut writer, 0, Event::Apply(cm("a", "x", "2")));
    feed(&mut merge, &mut writer, 0, Event::Apply(cm("a", "y", "1")));
    feed(&mut merge, &mut writer, 0, Event::Delete(cm("a", "y", "1")));
    feed(&mut merge, &mut writer, 1, Event::Init);
    feed(
        &mut merge,
        &mut writer,
        1,
        Event::InitApply(cm("b", "x", "1")),
    );
    assert!(store.state().is_empty());
    assert!(
        tokio::time::timeout(
            std::time::Duration::from_millis(10),
            store.wait_until_ready()
        )
        .await
        .is_err(),
        "ready before b listed"
    );
    feed(&mut merge, &mut writer, 1, Event::InitDone);
    store.wait_until_ready().await.unwrap();
    assert_eq!(held(&store), ["a/x=2", "b/x=1"]);

    // From then on, changes pass as they come.
    assert_eq!(
        feed(&mut merge, &mut writer, 1, Event::Apply(cm("b", "z", "1"))),
        1
    );
    feed(&mut merge, &mut writer, 0, Event::Delete(cm("a", "x", "2")));
    assert_eq!(held(&store), ["b/x=1", "b/z=1"]);
}

#[test]
fn a_new_list_of_one_namespace_leaves_the_others_alone() {
    let (mut merge, mut writer, store) = merging();
    for (i, ns) in [(0, "a"), (1, "b")] {
        feed(&mut merge, &mut writer, i, Event::Init);
        feed(
            &mut merge,
            &mut writer,
            i,
            Event::InitApply(cm(ns, "x", "1")),
        );
        feed(
            &mut merge,
            &mut writer,
            i,
            Event::InitApply(cm(ns, "y", "1")),
        );
        feed(&mut merge, &mut writer, i, Event::InitDone);
    }
    assert_eq!(held(&store), ["a/x=1", "a/y=1", "b/x=1", "b/y=1"]);

    // b's watch lost its place and lists again: y is gone, x changed, w is new.
    feed(&mut merge, &mut writer, 1, Event::Init);
    feed(
        &mut merge,
        &mut writer,
        1,
        Event::InitApply(cm("b", "x", "2")),
    );
    feed(
        &mut merge,
        &mut writer,
        1,
        Event::InitApply(cm("b", "w", "1")),
    );
    assert_eq!(held(&store), ["a/x=1", "a/y=1", "b/x=1", "b/y=1"]);
    let passed = merge.on(1, Event::InitDone);
    assert!(
        passed
            .iter()
            .all(|e| matches!(e, Event::Apply(_) | Event::Delete(_))),
        "a new list of one namespace must not replace the store"
    );
    for e in &passed {
        writer.apply_watcher_event(e);
    }
    assert_eq!(held(&store), ["a/x=1", "a/y=1", "b/w=1", "b/x=2"]);
}
