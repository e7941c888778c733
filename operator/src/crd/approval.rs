//! What an approver writes on a session: the annotation's value, which binds the decision
//! to the session as the approver saw it. The webhook judges it
//! ([`crate::rules::approval`]); `shellcar approve` writes it.

use serde::{Deserialize, Serialize};

use super::DebugSession;

/// What an approver's annotation (`debug.shellcar.dev/approve` or `reject`) holds, as
/// JSON: the session as the approver saw it, and why they decide.
/// `{"uid": "<metadata.uid>", "generation": <metadata.generation>, "reason": "..."}`.
///
/// The uid changes when a session is deleted and created again under the same name; the
/// generation grows with every change of its spec. A decision whose uid or generation is
/// not the stored session's is refused ([`Seen::binds`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    pub uid: String,
    pub generation: i64,
    #[serde(default)]
    pub reason: String,
}

impl Seen {
    /// `session` as shown to an approver, who decides for `reason`; `None` for an object
    /// the API server has not stored (no uid or generation).
    pub fn of(session: &DebugSession, reason: &str) -> Option<Seen> {
        Some(Seen {
            uid: session.metadata.uid.clone()?,
            generation: session.metadata.generation?,
            reason: reason.to_owned(),
        })
    }

    /// The annotation's value.
    pub fn to_annotation(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Reads an annotation's value.
    pub fn parse(value: &str) -> Result<Seen, serde_json::Error> {
        serde_json::from_str(value)
    }
}
