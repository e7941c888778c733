//! Status plumbing shared by the two controllers (sessions and DebugPolicies): the time a
//! status is written at, the condition builder with its transition-time rule, and the
//! status write itself.

use std::fmt::Debug;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::naming;
use crate::session::error::Error;

/// The current time to the second, as the API server stores times; finer times would make
/// every status look changed after a round trip.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

/// When, and for which generation of the object, conditions are being written.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    /// The generation of the spec the conditions describe.
    pub generation: Option<i64>,
    /// The time of this write, from [`now`].
    pub now: Timestamp,
}

impl Stamp {
    /// Condition `type_` with `status`, `reason` and `message`. It keeps the
    /// lastTransitionTime it has in `previous` unless its status changes.
    pub fn condition(
        &self,
        previous: &[Condition],
        type_: &str,
        status: bool,
        reason: &str,
        message: &str,
    ) -> Condition {
        let status = if status { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or(Time(self.now), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            // The API server rejects empty condition messages.
            message: message.to_owned(),
            observed_generation: self.generation,
            last_transition_time,
        }
    }

    /// Sets condition `type_` in `list` (see [`Stamp::condition`]), in place of the one
    /// of that type, or added after the others.
    pub fn set(
        &self,
        list: &mut Vec<Condition>,
        type_: &str,
        status: bool,
        reason: &str,
        message: &str,
    ) {
        let condition = self.condition(list, type_, status, reason, message);
        match list.iter_mut().find(|c| c.type_ == type_) {
            Some(existing) => *existing = condition,
            None => list.push(condition),
        }
    }
}

/// Writes `status` as the status of object `name` through `api`: a server-side apply by
/// the controller's field manager, forced, so the controller owns every status field it
/// writes.
pub async fn write_status<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(naming::CONTROLLER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    Ok(())
}

#[cfg(test)]
mod tests;
