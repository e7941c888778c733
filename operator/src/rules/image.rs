//! Image references compared as the container runtime resolves them, not as strings:
//! `busybox`, `docker.io/library/busybox` and `index.docker.io/library/busybox:latest` are
//! one image, and `registry.example:5000/x` is not under `registry.example` (another port is
//! another registry).

use std::str::FromStr;

use oci_spec::distribution::Reference;

/// `image` as the runtime resolves it: registry (with its port), repository, and tag
/// and/or digest, such as `docker.io/library/busybox:latest`. None when it is no image
/// reference.
pub fn canonical(image: &str) -> Option<String> {
    Reference::from_str(image).ok().map(|r| r.whole())
}

/// An `--allowed-image` entry, read as a registry, a repository path under one (its
/// components), and optionally the tag or digest it pins.
#[derive(Debug, PartialEq, Eq)]
struct Prefix {
    registry: String,
    path: Vec<String>,
    /// The entry ends in `/`: only repositories below `path`, not `path` itself.
    below: bool,
    tag: Option<String>,
    digest: Option<String>,
}

/// True for an entry of one component that names a registry: `registry.example`,
/// `localhost`, or anything written with a trailing `/` (`localhost:5000/`). With a colon
/// and no slash it is an image and its tag (`busybox:1.36`), as Docker reads it.
fn is_registry(component: &str, below: bool) -> bool {
    below || component == "localhost" || (component.contains('.') && !component.contains(':'))
}

impl Prefix {
    fn parse(entry: &str) -> Option<Prefix> {
        let below = entry.ends_with('/');
        let trimmed = entry.trim_end_matches('/');
        if trimmed.is_empty() {
            return None;
        }
        // A bare registry (`registry.example`, `localhost:5000/`): everything it serves.
        if !trimmed.contains('/') && is_registry(trimmed, below) {
            return Some(Prefix {
                registry: trimmed.to_ascii_lowercase(),
                path: Vec::new(),
                below: false,
                tag: None,
                digest: None,
            });
        }
        let reference = Reference::from_str(trimmed).ok()?;
        // The parser adds `:latest` to an untagged reference; only a written one pins.
        let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
        let tag = last
            .split('@')
            .next()
            .filter(|name| name.contains(':'))
            .and(reference.tag().map(str::to_owned));
        Some(Prefix {
            registry: reference.registry().to_ascii_lowercase(),
            path: reference
                .repository()
                .split('/')
                .map(str::to_owned)
                .collect(),
            below,
            tag,
            digest: reference.digest().map(str::to_owned),
        })
    }

    fn admits(&self, image: &Reference) -> bool {
        if image.registry().to_ascii_lowercase() != self.registry {
            return false;
        }
        let path: Vec<&str> = image.repository().split('/').collect();
        let under = path.len() >= self.path.len()
            && self.path.iter().zip(&path).all(|(a, b)| a == b)
            && !(self.below && path.len() == self.path.len());
        under
            && self.tag.as_deref().is_none_or(|t| image.tag() == Some(t))
            && self
                .digest
                .as_deref()
                .is_none_or(|d| image.digest() == Some(d))
    }
}

/// True when `image` is `allowed` or lies under it, both resolved as the runtime would:
/// the same registry (host and port), a repository at or below the allowed path (whole
/// components), and the allowed tag or digest if it names one. An entry that names only a
/// registry (`registry.example`) admits everything it serves.
pub fn allowed(image: &str, allowed: &str) -> bool {
    match (Reference::from_str(image), Prefix::parse(allowed)) {
        (Ok(image), Some(prefix)) => prefix.admits(&image),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
