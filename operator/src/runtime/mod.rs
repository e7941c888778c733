//! Process plumbing: leader election ([`leader`]), metrics, health and logs
//! ([`telemetry`]), counting API requests ([`api_requests`]), the Kubernetes version
//! floor ([`version`]) and the one retry helper ([`retry`](mod@retry)).
//!
//! It depends on `crd` and `cli` at most: the controller it runs is handed to it.

pub mod api_requests;
pub mod leader;
pub mod retry;
pub mod telemetry;
pub mod version;

pub use retry::{error_chain, retry, retry_every};
