//! The admission stamp: proof that shellcar's own webhook recorded a session's requester
//! and approval, so that a session written while the webhook was absent (its configuration
//! deleted, not yet created, or restored without it) is never taken at its word.
//!
//! The mutating webhook seals the namespace, `spec.requester` and `spec.approval` (with the
//! session's uid once there is an approval, so that a decision cannot be copied to another
//! session) with HMAC-SHA256 under a key kept in a Secret only the operator reads, and puts
//! the seal in [`STAMP_ANNOTATION`]. The reconciler refuses a session whose seal does not
//! match what it holds now. Pure: the key is loaded by [`crate::k8s::stamp_key`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use kube::ResourceExt;
use serde::Serialize;
use sha2::Sha256;

use crate::crd::{Approval, DebugSession, Requester};

/// The annotation that carries the seal on a DebugSession.
pub const STAMP_ANNOTATION: &str = "debug.shellcar.dev/admitted";

/// Bytes of a key: as long as SHA-256's output.
pub const KEY_LEN: usize = 32;

/// The secret that seals stamps, ready to seal. Never printed.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl Key {
    /// A key from its bytes, if there are exactly [`KEY_LEN`] of them.
    pub fn from_bytes(bytes: &[u8]) -> Option<Key> {
        if bytes.len() != KEY_LEN {
            return None;
        }
        <Hmac<Sha256> as Mac>::new_from_slice(bytes).ok().map(Key)
    }

    /// The MAC of what a seal covers.
    fn mac(
        &self,
        namespace: &str,
        uid: Option<&str>,
        requester: &Requester,
        approval: Option<&Approval>,
    ) -> Hmac<Sha256> {
        let sealed = Sealed {
            version: 1,
            namespace,
            uid: approval.and(uid),
            requester,
            approval,
        };
        let mut mac = self.0.clone();
        // Serializing plain structs, strings and maps into a Vec cannot fail.
        mac.update(&serde_json::to_vec(&sealed).unwrap_or_default());
        mac
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// What a seal covers, in a fixed serialization.
#[derive(Serialize)]
struct Sealed<'a> {
    version: u8,
    namespace: &'a str,
    /// The session's uid, with an approval only: the mutating webhook sees no uid on CREATE.
    uid: Option<&'a str>,
    requester: &'a Requester,
    approval: Option<&'a Approval>,
}

/// The seal of `requester` and `approval` on a session of `namespace` with uid `uid`
/// (which counts only with an approval).
pub fn seal(
    key: &Key,
    namespace: &str,
    uid: Option<&str>,
    requester: &Requester,
    approval: Option<&Approval>,
) -> String {
    let mac = key.mac(namespace, uid, requester, approval);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Why a session's stamp does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unstamped {
    #[error(
        "the session carries no {STAMP_ANNOTATION} stamp: shellcar's admission webhook did not record its requester (it was created while the webhook was not configured); delete it and create it again"
    )]
    Missing,
    #[error(
        "the session's spec.requester or spec.approval is not what shellcar's admission webhook recorded (the {STAMP_ANNOTATION} stamp does not match): it was written while the webhook was not configured; delete it and create it again"
    )]
    Forged,
}

/// Whether `session`'s stamp seals its requester and approval as they are now.
pub fn verify(key: &Key, session: &DebugSession) -> Result<(), Unstamped> {
    let Some(given) = session.annotations().get(STAMP_ANNOTATION) else {
        return Err(Unstamped::Missing);
    };
    let Some(requester) = &session.spec.requester else {
        return Err(Unstamped::Missing);
    };
    let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
        return Err(Unstamped::Forged);
    };
    let namespace = session.metadata.namespace.as_deref().unwrap_or_default();
    let uid = session.metadata.uid.as_deref();
    let mac = key.mac(namespace, uid, requester, session.spec.approval.as_ref());
    // Constant time, as HMAC verification should be.
    mac.verify_slice(&given).map_err(|_| Unstamped::Forged)
}

#[cfg(test)]
mod tests;
