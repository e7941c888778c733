//! Counting the operator's own requests to the API server: a tower layer on the kube
//! [`Client`] that classifies every request by verb and resource, as the API server's
//! audit log and RBAC would name them, and counts it in `shellcar_api_requests_total`.

use std::task::{Context, Poll};

use http::{Method, Request};
use kube::Client;
use kube::client::ClientBuilder;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

/// The labels of one counted request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// get, list, watch, create, update, patch, delete or deletecollection.
    pub verb: String,
    /// The resource's plural, with its subresource (`deployments/status`); for a path
    /// that names no resource (discovery, `/version`), the path itself.
    pub resource: String,
}

/// Namespace subresources, which the path `/api/v1/namespaces/{name}/{sub}` names
/// (as the API server's own request parser knows them).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// The verb and resource of a request with `method` on `path` (without the query) whose
/// query is `query`, as the API server would name them.
fn classify(method: &Method, path: &str, query: Option<&str>) -> RequestLabels {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let rest = match parts.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => rest,
        ["apis", _group, _version, rest @ ..] if !rest.is_empty() => rest,
        _ => {
            return RequestLabels {
                verb: method.as_str().to_ascii_lowercase(),
                resource: path.to_owned(),
            };
        }
    };
    // namespaces/NS/RESOURCE/... is a namespaced resource; namespaces/NAME[/SUB] is a
    // Namespace itself.
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..]
            if !NAMESPACE_SUBRESOURCES.contains(resource) || !tail.is_empty() =>
        {
            &rest[2..]
        }
        _ => rest,
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub, ..] => (*resource, Some(*name), Some(*sub)),
        [] => ("", None, None),
    };
    let watch = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1"))
    });
    let verb = match *method {
        Method::GET | Method::HEAD if name.is_some() => "get",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        ref other => return labels(&other.as_str().to_ascii_lowercase(), resource, subresource),
    };
    labels(verb, resource, subresource)
}

fn labels(verb: &str, resource: &str, subresource: Option<&str>) -> RequestLabels {
    RequestLabels {
        verb: verb.to_owned(),
        resource: match subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        },
    }
}

/// The layer that counts every request passing through it in `counts`.
#[derive(Clone, Debug)]
pub struct CountRequests {
    counts: Family<RequestLabels, Counter>,
}

impl CountRequests {
    pub fn new(counts: Family<RequestLabels, Counter>) -> Self {
        CountRequests { counts }
    }
}

impl<S> Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counts: self.counts.clone(),
        }
    }
}

/// A service that counts each request, then hands it to the one it wraps.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    counts: Family<RequestLabels, Counter>,
}

impl<S, B> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> S::Future {
        let uri = request.uri();
        let labels = classify(request.method(), uri.path(), uri.query());
        self.counts.get_or_create(&labels).inc();
        self.inner.call(request)
    }
}

/// A client from the usual configuration (KUBECONFIG, ~/.kube/config or in-cluster)
/// whose every request is counted by `layer`.
pub async fn counted_client(layer: &CountRequests) -> Result<Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    Ok(ClientBuilder::try_from(config)?.with_layer(layer).build())
}

#[cfg(test)]
mod tests;
