//! The judgments both front doors share, as pure functions: whether a spec is valid
//! ([`validate`]), which DebugPolicy admits a session ([`policy`]), what Pod Security
//! allows ([`podsecurity`]), what each profile grants ([`profile`]), which permissions a
//! session stands in for ([`access`]), approval ([`approval`]), the admission stamp
//! ([`stamp`]), what a debugger can read ([`exposure`]), image references as the runtime
//! resolves them ([`image`]), the namespaces it works in and those it protects
//! ([`namespaces`]), and the judgments of a session together ([`govern`]). Nothing here
//! does I/O.

pub mod access;
pub mod approval;
pub mod exposure;
pub mod govern;
pub mod image;
pub mod namespaces;
pub mod podsecurity;
pub mod policy;
pub mod profile;
pub mod stamp;
pub mod validate;

use std::time::Duration;

/// What the operator allows, from its command line.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Image used when a session names none.
    pub default_image: String,
    /// Longest ttl a session may ask for.
    pub max_ttl: Duration,
    /// How long a session may go without a running debugger before it fails with
    /// StartTimeout and is torn down.
    pub start_deadline: Duration,
    /// Images a debugger may use, or the registries and paths they may come from (see
    /// [`image::allowed`]), where no DebugPolicy names its own; empty allows every image.
    pub allowed_images: Vec<String>,
    /// The image that stops Ephemeral debuggers from outside their own image (the
    /// operator's, see [`crate::stopper`]); `None` stops them through exec only.
    pub stopper: Option<Stopper>,
    /// The namespaces watched, and those where a session needs a policy naming them.
    pub namespaces: namespaces::Namespaces,
}

/// An image, and when the kubelet pulls it, as a container names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopper {
    pub image: String,
    pub pull_policy: Option<String>,
}
