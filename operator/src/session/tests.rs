//! The I/O half of the reconcile pipeline: each test runs [`reconcile`](super::reconcile)
//! on a session against the mock API server of [`super::fixtures`] and checks every
//! request it sends, in order. One file per behaviour.

mod backoff;
mod deletion;
mod expiry;
mod finalizer;
mod ownership;
mod refusals;
mod sidecar;
