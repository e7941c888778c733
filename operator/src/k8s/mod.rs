//! Kubernetes mechanics: reading workloads and their pod templates ([`workload`]), field
//! ownership under server-side apply ([`managed`]), what the cluster serves
//! ([`capabilities`]), and SubjectAccessReviews ([`access`]): whether a requester holds a
//! permission.

pub mod access;
pub mod capabilities;
pub mod managed;
pub mod workload;

pub use capabilities::Capabilities;
