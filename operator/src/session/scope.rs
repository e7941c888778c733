//! Where the controller reads: every namespace, or each of `--watch-namespaces`. The one
//! place that turns the watched namespaces into Api's, and that merges one watch per
//! namespace into the events of a single watch, for a single reflector.
//!
//! A reflector takes one watch: each `InitDone` replaces its whole store with what was
//! listed since the `Init`. So the watches of several namespaces cannot feed it as they
//! come: [`merge`] holds back the first lists until every namespace has listed once, then
//! passes them on as one list; a later list of one namespace (after its watch lost its
//! place) becomes a deletion of what it no longer holds and an update of the rest.

use std::collections::HashSet;

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};

use crate::rules::namespaces::Namespaces;

/// The namespaces the controller reads: empty for every one.
#[derive(Clone, Debug)]
pub struct Scope {
    namespaces: Vec<String>,
}

impl Scope {
    /// The watched namespaces of `namespaces`.
    pub fn of(namespaces: &Namespaces) -> Scope {
        Scope {
            namespaces: namespaces.watched().to_vec(),
        }
    }

    /// One Api over every namespace, or one in each watched namespace; each with the
    /// namespace it covers (`None`: every one).
    pub fn apis<K>(&self, client: &Client) -> Vec<Scoped<Api<K>>>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if self.namespaces.is_empty() {
            return vec![(None, Api::all(client.clone()))];
        }
        let within = |ns: &String| (Some(ns.clone()), Api::namespaced(client.clone(), ns));
        self.namespaces.iter().map(within).collect()
    }

    /// As [`Scope::apis`], for a kind known at run time (a workload kind).
    pub fn apis_with(
        &self,
        client: &Client,
        resource: &ApiResource,
    ) -> Vec<Scoped<Api<DynamicObject>>> {
        if self.namespaces.is_empty() {
            return vec![(None, Api::all_with(client.clone(), resource))];
        }
        let within = |ns: &String| {
            let api = Api::namespaced_with(client.clone(), ns, resource);
            (Some(ns.clone()), api)
        };
        self.namespaces.iter().map(within).collect()
    }

    /// The watches of Namespaces with `config`: of all of them, or of each watched one by
    /// its name (a field selector, which RBAC grants by `resourceNames`: no cluster-wide
    /// list of namespaces is needed).
    pub fn namespace_watches(
        &self,
        client: &Client,
        config: &watcher::Config,
    ) -> Vec<Scoped<(Api<Namespace>, watcher::Config)>> {
        let api = Api::<Namespace>::all(client.clone());
        if self.namespaces.is_empty() {
            return vec![(None, (api, config.clone()))];
        }
        let by_name = |ns: &String| {
            let config = config.clone().fields(&format!("metadata.name={ns}"));
            (Some(ns.clone()), (api.clone(), config))
        };
        self.namespaces.iter().map(by_name).collect()
    }
}

/// Something that covers one namespace, or every one (`None`).
pub type Scoped<T> = (Option<String>, T);

/// The watch events of one stream per namespace.
pub type Watch<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// Which namespace an object belongs to, as a watch of that namespace sees it: its
/// namespace for namespaced kinds, its name for a Namespace.
pub type ScopeOf = fn(&ObjectMeta) -> Option<&str>;

/// `watches`, one per namespace (the namespace it covers, and its events), as the events
/// of one watch over them all, for the reflector of `store`; a single watch as it is.
pub fn merge<K>(mut watches: Vec<Scoped<Watch<K>>>, store: Store<K>, scope_of: ScopeOf) -> Watch<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    if watches.len() == 1
        && let Some((_, watch)) = watches.pop()
    {
        return watch;
    }
    let (scopes, watches): (Vec<_>, Vec<_>) = watches.into_iter().unzip();
    let tagged = watches
        .into_iter()
        .enumerate()
        .map(|(i, watch)| watch.map(move |event| (i, event)));
    let mut merging = Merge::new(
        scopes.into_iter().map(Option::unwrap_or_default).collect(),
        store,
        scope_of,
    );
    stream::select_all(tagged)
        .flat_map(move |(i, event)| {
            let out = match event {
                Ok(event) => merging.on(i, event).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            stream::iter(out)
        })
        .boxed()
}

/// The state of [`merge`].
pub struct Merge<K: Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// The namespace of each watch.
    scopes: Vec<String>,
    /// What the reflector holds: a later list deletes what it no longer holds.
    store: Store<K>,
    scope_of: ScopeOf,
    /// Per watch, the list under way.
    listing: Vec<Option<Vec<K>>>,
    /// Per watch, its first list (kept up to date by its events), until every watch has
    /// one; then `None`, and events pass.
    first: Option<Vec<Option<Vec<K>>>>,
}

impl<K> Merge<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// A merge of watches over `scopes`, feeding the reflector of `store`.
    pub fn new(scopes: Vec<String>, store: Store<K>, scope_of: ScopeOf) -> Merge<K> {
        let n = scopes.len();
        Merge {
            scopes,
            store,
            scope_of,
            listing: vec![None; n],
            first: Some(vec![None; n]),
        }
    }

    /// The events to pass on for `event` of watch `i`.
    pub fn on(&mut self, i: usize, event: Event<K>) -> Vec<Event<K>> {
        match (event, &mut self.first) {
            (Event::Init, _) => {
                self.listing[i] = Some(Vec::new());
                Vec::new()
            }
            (Event::InitApply(obj), _) => {
                self.listing[i].get_or_insert_default().push(obj);
                Vec::new()
            }
            (Event::InitDone, Some(first)) => {
                first[i] = Some(self.listing[i].take().unwrap_or_default());
                if !first.iter().all(Option::is_some) {
                    return Vec::new();
                }
                let listed = self.first.take().into_iter().flatten().flatten().flatten();
                std::iter::once(Event::Init)
                    .chain(listed.map(Event::InitApply))
                    .chain(std::iter::once(Event::InitDone))
                    .collect()
            }
            (Event::InitDone, None) => {
                let listed = self.listing[i].take().unwrap_or_default();
                self.relisted(i, listed)
            }
            // Before every watch has listed once, the reflector's store is not in use yet:
            // its first list takes the change.
            (Event::Apply(obj), Some(first)) => {
                let list = first[i].get_or_insert_default();
                list.retain(|o| o.meta().name != obj.meta().name);
                list.push(obj);
                Vec::new()
            }
            (Event::Delete(obj), Some(first)) => {
                let list = first[i].get_or_insert_default();
                list.retain(|o| o.meta().name != obj.meta().name);
                Vec::new()
            }
            (event @ (Event::Apply(_) | Event::Delete(_)), None) => vec![event],
        }
    }

    /// The events for a new list `listed` of watch `i`: a deletion of each object of its
    /// namespace the store holds and the list does not, and an update of each listed one.
    fn relisted(&self, i: usize, listed: Vec<K>) -> Vec<Event<K>> {
        let scope = self.scopes[i].as_str();
        let names: HashSet<&str> = listed
            .iter()
            .filter_map(|o| o.meta().name.as_deref())
            .collect();
        let mut out: Vec<Event<K>> = self
            .store
            .state()
            .into_iter()
            .filter(|o| (self.scope_of)(o.meta()) == Some(scope))
            .filter(|o| o.meta().name.as_deref().is_none_or(|n| !names.contains(n)))
            .map(|o| Event::Delete(o.as_ref().clone()))
            .collect();
        out.extend(listed.into_iter().map(Event::Apply));
        out
    }
}

#[cfg(test)]
mod tests;
