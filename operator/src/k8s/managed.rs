//! Whether a server-side apply would change anything, decided from what the object
//! already holds: the fields its field manager owns (`managedFields`) and their values.
//! An intent that holds already need not be sent: a settled session costs no request.
//!
//! The field sets follow the API server's own encoding (structured-merge-diff's
//! `FieldsV1`): `f:NAME` for a field, `k:{"name":"x"}` for the item of a list keyed on
//! `name`, `.` for an item (or map) itself. Lists not keyed are atomic: one leaf.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::{Value, json};

/// Lists the API server merges item by item, keyed on `name`, among those a shellcar
/// intent carries: a pod's containers and a container's env. Every other list in an
/// intent (command, args, capabilities) is atomic.
const KEYED_ON_NAME: [&str; 2] = ["containers", "env"];

/// The leaves of a `FieldsV1` set, each a path of its keys; `.` entries (an item or map
/// itself) are left out, as the leaves below them say the same.
fn leaves(fields: &Value) -> BTreeSet<Vec<String>> {
    fn walk(node: &Value, path: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
        let children: Vec<(&String, &Value)> = node
            .as_object()
            .map(|o| o.iter().filter(|(k, _)| k.as_str() != ".").collect())
            .unwrap_or_default();
        if children.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (key, child) in children {
            path.push(key.clone());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(fields, &mut Vec::new(), &mut out);
    out.remove(&Vec::new());
    out
}

/// The `FieldsV1` set that applying `value` (the part of an intent below the object's
/// identity) makes its manager own.
fn field_set(value: &Value) -> Value {
    fn node(key: &str, value: &Value) -> Value {
        match value {
            Value::Object(map) if !map.is_empty() => {
                let mut set = serde_json::Map::new();
                for (k, v) in map {
                    set.insert(format!("f:{k}"), node(k, v));
                }
                Value::Object(set)
            }
            Value::Array(items) if KEYED_ON_NAME.contains(&key) => {
                let mut set = serde_json::Map::new();
                for item in items {
                    let name = item.get("name").cloned().unwrap_or(Value::Null);
                    let mut fields = match node("", item) {
                        Value::Object(fields) => fields,
                        _ => serde_json::Map::new(),
                    };
                    fields.insert(".".to_owned(), json!({}));
                    set.insert(
                        format!("k:{}", json!({ "name": name })),
                        Value::Object(fields),
                    );
                }
                Value::Object(set)
            }
            _ => json!({}),
        }
    }
    node("", value)
}

/// True when `live` holds every value of `want`: maps hold its keys, lists keyed on
/// `name` hold its items (matched by name), other values are equal. Fields the API
/// server defaulted, or others set, may be there too.
fn holds(key: &str, live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(live), Value::Object(want)) => want
            .iter()
            .all(|(k, w)| live.get(k).is_some_and(|l| holds(k, l, w))),
        (Value::Array(live), Value::Array(want)) if KEYED_ON_NAME.contains(&key) => {
            want.iter().all(|w| {
                live.iter()
                    .find(|l| l.get("name") == w.get("name"))
                    .is_some_and(|l| holds("", l, w))
            })
        }
        _ => live == want,
    }
}

/// True when applying `intent` (a whole object: apiVersion, kind, metadata.name and the
/// rest) with field manager `manager` would change nothing on an object that holds `live`
/// (its content, without metadata) and `managed`: the manager owns exactly the fields
/// the intent names, and each holds the intent's value.
///
/// Errs on the side of "would change": a value the API server stores in another form
/// (a quantity `0.5` kept as `500m`) only costs a request that changes nothing.
pub fn apply_holds(
    intent: &Value,
    live: &Value,
    managed: &[ManagedFieldsEntry],
    manager: &str,
) -> bool {
    let Some(owned) = managed.iter().find(|e| {
        e.manager.as_deref() == Some(manager)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().is_none_or(str::is_empty)
    }) else {
        return false;
    };
    let Some(owned) = owned.fields_v1.as_ref() else {
        return false;
    };
    // The API server does not record the identity (apiVersion, kind, metadata.name and
    // namespace) as owned fields; only the content beside it.
    let mut content = intent.clone();
    if let Value::Object(map) = &mut content {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.remove("name");
            meta.remove("namespace");
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    leaves(&field_set(&content)) == leaves(&owned.0) && holds("", live, &content)
}

#[cfg(test)]
mod tests;
