//! The controller, run by the leader: watches ([`controller`]) feed the reconcile
//! pipeline ([`reconcile`]: decide, act through a mode in [`modes`], report through
//! [`status`]); `pods` observes the pods that carry a debugger, for the modes to report;
//! [`context`] holds what every reconcile shares and [`error`] what can go wrong;
//! [`policy_status`] reports each DebugPolicy's own status. Both controllers write status
//! through `report` (the condition builder, the status patch, the time). `scope` says
//! where the controller and `sweep` read: every namespace, or each watched one.

pub mod context;
pub mod controller;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod modes;
mod pods;
pub mod policy_status;
pub mod reconcile;
mod report;
mod scope;
pub mod status;
mod sweep;
#[cfg(test)]
mod tests;

pub use controller::run;
pub use error::Error;
