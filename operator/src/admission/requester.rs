//! Who asked: `spec.requester`, stamped on CREATE from the AdmissionReview's `userInfo` and
//! restored from the stored object on every UPDATE.
//!
//! Pure: the functions return JSON Patch operations, which the mutating webhook returns.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation};
use k8s_openapi::api::authentication::v1::UserInfo;

use crate::crd::{DebugSessionSpec, Requester};

/// The requester as the API server authenticated the user who sent the request.
pub fn from_user_info(user: &UserInfo) -> Requester {
    Requester {
        username: user.username.clone().unwrap_or_default(),
        uid: user.uid.clone().filter(|u| !u.is_empty()),
        groups: user.groups.clone().unwrap_or_default(),
        extra: user.extra.clone().filter(|e| !e.is_empty()),
    }
}

fn requester_path() -> PointerBuf {
    PointerBuf::from_tokens(["spec", "requester"])
}

fn set(requester: &Requester) -> Result<Vec<PatchOperation>, serde_json::Error> {
    // "add" replaces an existing member (RFC 6902, 4.1), so one operation covers both cases.
    Ok(vec![PatchOperation::Add(AddOperation {
        path: requester_path(),
        value: serde_json::to_value(requester)?,
    })])
}

/// On CREATE: `spec.requester` becomes the user who sent the request, whatever the author
/// wrote there.
pub fn stamp(user: &UserInfo) -> Result<Vec<PatchOperation>, serde_json::Error> {
    set(&from_user_info(user))
}

/// On UPDATE: `spec.requester` goes back to what the stored object (`old`) has, so that
/// nobody can change it and a re-sync that omits it changes nothing. A session stored
/// without one (created while the webhook was away) keeps having none: an update must not
/// let its author adopt it.
pub fn restore(
    old: &DebugSessionSpec,
    new: &DebugSessionSpec,
) -> Result<Vec<PatchOperation>, serde_json::Error> {
    match (&old.requester, &new.requester) {
        (Some(old), Some(new)) if old == new => Ok(Vec::new()),
        (Some(old), _) => set(old),
        (None, Some(_)) => Ok(vec![PatchOperation::Remove(RemoveOperation {
            path: requester_path(),
        })]),
        (None, None) => Ok(Vec::new()),
    }
}

/// The object `object` with `ops` applied, as the API server would store it: what the
/// webhook tests check.
#[cfg(test)]
pub(crate) fn patched(
    mut object: serde_json::Value,
    ops: &[PatchOperation],
) -> Result<serde_json::Value, json_patch::PatchError> {
    json_patch::patch(&mut object, ops)?;
    Ok(object)
}

#[cfg(test)]
mod tests;
