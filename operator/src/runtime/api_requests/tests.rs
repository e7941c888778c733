use super::*;

fn named(method: Method, uri: &str) -> (String, String) {
    let uri: http::Uri = uri.parse().unwrap();
    let l = classify(&method, uri.path(), uri.query());
    (l.verb, l.resource)
}

fn pair(verb: &str, resource: &str) -> (String, String) {
    (verb.to_owned(), resource.to_owned())
}

#[test]
fn requests_are_named_as_the_api_server_names_them() {
    let deployments = "/apis/apps/v1/namespaces/shop/deployments";
    for (method, uri, verb, resource) in [
        (Method::GET, format!("{deployments}/web"), "get", "deployments"),
        (Method::GET, format!("{deployments}?"), "list", "deployments"),
        (
            Method::GET,
            "/apis/apps/v1/deployments?&watch=true&timeoutSeconds=30".to_owned(),
            "watch",
            "deployments",
        ),
        (
            Method::PATCH,
            format!("{deployments}/web?&fieldManager=shellcar.dev%2Fdbg"),
            "patch",
            "deployments",
        ),
        (
            Method::PATCH,
            "/apis/debug.shellcar.dev/v1alpha1/namespaces/shop/debugsessions/dbg/status?&force=true".to_owned(),
            "patch",
            "debugsessions/status",
        ),
        (
            Method::POST,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews?".to_owned(),
            "create",
            "subjectaccessreviews",
        ),
        (
            Method::POST,
            "/api/v1/namespaces/shop/pods/web-1/eviction?".to_owned(),
            "create",
            "pods/eviction",
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/shop/pods/web-1/ephemeralcontainers?".to_owned(),
            "update",
            "pods/ephemeralcontainers",
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/shop/pods/web-1?".to_owned(),
            "delete",
            "pods",
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/shop/pods?&labelSelector=a".to_owned(),
            "deletecollection",
            "pods",
        ),
        // Namespaces themselves, and their subresources.
        (Method::GET, "/api/v1/namespaces?&watch=1".to_owned(), "watch", "namespaces"),
        (Method::GET, "/api/v1/namespaces/shop".to_owned(), "get", "namespaces"),
        (
            Method::PUT,
            "/api/v1/namespaces/shop/finalize".to_owned(),
            "update",
            "namespaces/finalize",
        ),
        // A namespaced resource that happens to be called like a subresource.
        (
            Method::GET,
            "/apis/example.com/v1/namespaces/shop/status/x".to_owned(),
            "get",
            "status",
        ),
        // Paths that name no resource.
        (Method::GET, "/version".to_owned(), "get", "/version"),
        (Method::GET, "/api/v1".to_owned(), "get", "/api/v1"),
        (Method::GET, "/apis/apps/v1".to_owned(), "get", "/apis/apps/v1"),
    ] {
        assert_eq!(named(method, &uri), pair(verb, resource), "{uri}");
    }
}

#[test]
fn a_watch_needs_the_watch_parameter_not_a_similar_one() {
    assert_eq!(
        named(Method::GET, "/api/v1/pods?&allowWatchBookmarks=true"),
        pair("list", "pods")
    );
    assert_eq!(
        named(Method::GET, "/api/v1/pods?&watch=false"),
        pair("list", "pods")
    );
}

#[tokio::test]
async fn the_layer_counts_each_request_it_passes_on() {
    use tower::ServiceExt;
    let counts = Family::<RequestLabels, Counter>::default();
    let (service, mut handle) = tower_test::mock::pair::<Request<()>, ()>();
    let mut counted = CountRequests::new(counts.clone()).layer(service);
    tokio::spawn(async move {
        while let Some((_, respond)) = handle.next_request().await {
            respond.send_response(());
        }
    });
    for uri in [
        "/api/v1/namespaces/shop/pods/a",
        "/api/v1/namespaces/shop/pods/b",
    ] {
        let request = Request::get(uri).body(()).unwrap();
        counted.ready().await.unwrap().call(request).await.unwrap();
    }
    let list = Request::get("/api/v1/pods").body(()).unwrap();
    counted.ready().await.unwrap().call(list).await.unwrap();
    let get = counts.get_or_create(&RequestLabels {
        verb: "get".to_owned(),
        resource: "pods".to_owned(),
    });
    assert_eq!(get.get(), 2);
    let list = counts.get_or_create(&RequestLabels {
        verb: "list".to_owned(),
        resource: "pods".to_owned(),
    });
    assert_eq!(list.get(), 1);
}
