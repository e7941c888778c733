//! After creation only `spec.ttl` may change: a session cannot be pointed at another target,
//! mode or debugger.
//!
//! Pure: compares the stored spec with the new one.

use serde_json::Value;

use crate::crd::DebugSessionSpec;

/// Why an update is refused: the fields it changes that may not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} {} immutable after creation; only spec.ttl may change: create a new DebugSession instead",
    fields.join(", "),
    if fields.len() == 1 { "is" } else { "are" }
)]
pub struct Changed {
    /// Paths of the changed fields, such as `spec.target.name`, sorted.
    pub fields: Vec<String>,
}

/// Fields the update may change: `ttl`, and `requester` and `approval`, which the
/// mutating webhook restores from the stored object (or records from a checked approver)
/// before this check runs.
const MUTABLE: [&str; 3] = ["ttl", "requester", "approval"];

/// Checks that `new` differs from `old` in `ttl` at most.
///
/// Both specs are compared after parsing, so a field left out and the same field written
/// with its default value are the same.
pub fn check(old: &DebugSessionSpec, new: &DebugSessionSpec) -> Result<(), Changed> {
    let (old, new) = match (serde_json::to_value(old), serde_json::to_value(new)) {
        (Ok(old), Ok(new)) => (old, new),
        // Plain data structs always serialize; if that ever changed, refuse rather than allow.
        _ => {
            return Err(Changed {
                fields: vec!["spec".to_owned()],
            });
        }
    };
    let mut fields = Vec::new();
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    for key in keys(old, new) {
        if MUTABLE.contains(&key.as_str()) {
            continue;
        }
        diff(
            &format!("spec.{key}"),
            old.get(&key),
            new.get(&key),
            &mut fields,
        );
    }
    if fields.is_empty() {
        Ok(())
    } else {
        Err(Changed { fields })
    }
}

/// Keys of both objects, each once, sorted (serde_json's maps are ordered by key).
fn keys(old: &serde_json::Map<String, Value>, new: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = old.keys().chain(new.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Appends to `out` the paths under `path` where `old` and `new` differ; objects are
/// compared member by member, anything else (lists included) as a whole.
fn diff(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<String>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for key in keys(a, b) {
                diff(&format!("{path}.{key}"), a.get(&key), b.get(&key), out);
            }
        }
        (a, b) if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
