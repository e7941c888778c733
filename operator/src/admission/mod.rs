//! The admission webhook: who asked, whether they may, what may change, and what the
//! debugger will see.
//!
//! The decisions are pure functions in [`requester`], [`immutable`], [`access`] and
//! [`warnings`]; [`server`] serves them over HTTPS with the certificate from [`tls`].

pub mod access;
pub mod immutable;
pub mod requester;
pub mod server;
pub mod tls;
pub mod warnings;
