//! The admission stamp as the mutating webhook writes it: after the requester and approval
//! are settled, it seals them ([`crate::rules::stamp`]) into the session's
//! [`STAMP_ANNOTATION`].
//!
//! An UPDATE is sealed anew only when the stored session's own stamp holds: a session
//! written while the webhook was absent must not be laundered by a later update that does
//! pass it. Pure: the functions return JSON Patch operations.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation};
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::crd::DebugSession;
use crate::rules::stamp::{self, Key, STAMP_ANNOTATION};

/// Why the stamp could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying the webhook's own patch to the session")]
    Patch(#[from] json_patch::PatchError),
    #[error("reading the patched session")]
    Json(#[from] serde_json::Error),
}

/// The operations that put the stamp on `object` once `ops` (the requester's and the
/// approval's) are applied to it, in `namespace`. `old` is the stored session on UPDATE.
pub fn ops(
    key: &Key,
    namespace: &str,
    old: Option<&DebugSession>,
    object: &DebugSession,
    ops: &[PatchOperation],
) -> Result<Vec<PatchOperation>, Error> {
    let mut patched = serde_json::to_value(object)?;
    json_patch::patch(&mut patched, ops)?;
    let settled = DebugSession::deserialize(&patched)?;
    let value = match (old, &settled.spec.requester) {
        // An update of a session whose stamp does not hold keeps whatever it had.
        (Some(old), _) if stamp::verify(key, old).is_err() => {
            old.annotations().get(STAMP_ANNOTATION).cloned()
        }
        (_, Some(requester)) => Some(stamp::seal(
            key,
            namespace,
            old.and_then(|o| o.metadata.uid.as_deref()),
            requester,
            settled.spec.approval.as_ref(),
        )),
        (_, None) => None,
    };
    let current = patched["metadata"]["annotations"][STAMP_ANNOTATION].as_str();
    if current == value.as_deref() {
        return Ok(Vec::new());
    }
    let annotations = &patched["metadata"]["annotations"];
    Ok(vec![match value {
        Some(value) if annotations.is_object() => PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", STAMP_ANNOTATION]),
            value: Value::String(value),
        }),
        Some(value) => PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: json!({ STAMP_ANNOTATION: value }),
        }),
        None => PatchOperation::Remove(RemoveOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", STAMP_ANNOTATION]),
        }),
    }])
}

#[cfg(test)]
mod tests;
