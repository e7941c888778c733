//! Kubernetes mechanics: reading workloads and their pod templates ([`workload`]), which
//! pods belong to what by owner UID ([`owners`]), field ownership under server-side apply
//! ([`managed`]), what the cluster serves ([`capabilities`]), SubjectAccessReviews
//! ([`access`]): whether a requester holds a permission, and the admission stamp's key
//! ([`stamp_key`]).

pub mod access;
pub mod capabilities;
pub mod managed;
pub mod owners;
pub mod stamp_key;
pub mod workload;

pub use capabilities::Capabilities;
