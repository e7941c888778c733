//! DebugPolicy: which policies govern a namespace, whether a session fits one of them, and
//! in words why not.
//!
//! Pure: the callers (the webhook at admission, the reconciler at every pass) bring the
//! policies, the namespace's labels and the count of live sessions.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::crd::{Access, Approvers, DebugPolicy, DebugSessionSpec, Mode, Profile, Resolved};
use crate::naming::BUILT_IN_POLICY;
use crate::rules::Policy as Defaults;
use crate::rules::image;
use crate::ttl;

/// How long a session may wait for approval when its policy names no deadline.
const DEFAULT_APPROVAL_DEADLINE: Duration = Duration::from_secs(3600);

/// Profiles a policy allows when it lists none, and the built-in default allows.
const DEFAULT_PROFILES: [Profile; 3] = [Profile::General, Profile::Baseline, Profile::Restricted];

/// Why a policy cannot be used. A malformed policy admits nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("images[{index}] {pattern:?} is not a glob: {message}")]
    Glob {
        index: usize,
        pattern: String,
        message: String,
    },
    #[error("namespaceSelector is not a valid selector: {0}")]
    Selector(String),
    #[error("{field} {value:?} is not a duration such as 30m or 1h")]
    Duration { field: &'static str, value: String },
    #[error("approval.approvers names no user and no group: nobody could approve")]
    Approvers,
}

impl Malformed {
    /// The reason of the policy's Ready condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Malformed::Glob { .. } => "InvalidGlob",
            Malformed::Selector(_) => "InvalidSelector",
            Malformed::Duration { .. } => "InvalidDuration",
            Malformed::Approvers => "InvalidApprovers",
        }
    }
}

/// The images a policy allows.
#[derive(Clone, Debug)]
enum Images {
    Any,
    /// The operator's `--allowed-image` prefixes.
    Prefixes(Vec<String>),
    Globs {
        set: GlobSet,
        patterns: Vec<String>,
    },
}

impl Images {
    fn allows(&self, image: &str) -> bool {
        match self {
            Images::Any => true,
            Images::Prefixes(prefixes) => prefixes.iter().any(|p| image::allowed(image, p)),
            // As written, or as the runtime resolves it (`docker.io/library/busybox:latest`
            // for `busybox`), so that a pattern may use either form.
            Images::Globs { set, .. } => {
                set.is_match(image) || image::canonical(image).is_some_and(|c| set.is_match(c))
            }
        }
    }
}

/// One policy's rules, checked and compiled.
#[derive(Clone, Debug)]
pub struct Rules {
    pub name: String,
    selector: Selector,
    images: Images,
    require_digest: bool,
    profiles: Vec<Profile>,
    modes: Option<Vec<Mode>>,
    max_ttl: Duration,
    max_sessions: Option<u32>,
    secret_env: bool,
    /// How long a session may wait for approval; `None` when none is needed.
    pub approval: Option<Duration>,
    /// What the requester must hold on the target.
    access: Access,
    /// Who may decide on its sessions besides holding the verb; `None`: anyone but the
    /// requester, except ServiceAccounts ([`crate::rules::approval::may_decide`]).
    pub approvers: Option<Approvers>,
}

/// The images the operator's flags allow: its `--allowed-image` prefixes, or any.
fn flag_images(defaults: &Defaults) -> Images {
    if defaults.allowed_images.is_empty() {
        Images::Any
    } else {
        Images::Prefixes(defaults.allowed_images.clone())
    }
}

/// A glob on image references: `*` and `?` stay within one `/` segment, `**` crosses them.
fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

fn duration(field: &'static str, value: &str) -> Result<Duration, Malformed> {
    // Only the form is checked here; `--max-ttl` caps the result where it is used.
    ttl::parse(value, Duration::MAX).map_err(|_| Malformed::Duration {
        field,
        value: value.to_owned(),
    })
}

impl Rules {
    /// The rules of `policy`, or why it is malformed.
    pub fn compile(policy: &DebugPolicy, defaults: &Defaults) -> Result<Rules, Malformed> {
        let spec = &policy.spec;
        let selector = Selector::try_from(spec.namespace_selector.clone().unwrap_or_default())
            .map_err(|e| Malformed::Selector(e.to_string()))?;
        let images = match &spec.images {
            None => flag_images(defaults),
            Some(patterns) => {
                let mut set = GlobSetBuilder::new();
                for (index, pattern) in patterns.iter().enumerate() {
                    let glob = glob(pattern).map_err(|e| Malformed::Glob {
                        index,
                        pattern: pattern.clone(),
                        message: e.kind().to_string(),
                    })?;
                    set.add(glob);
                }
                let set = set.build().map_err(|e| Malformed::Glob {
                    index: 0,
                    pattern: patterns.join(" "),
                    message: e.to_string(),
                })?;
                Images::Globs {
                    set,
                    patterns: patterns.clone(),
                }
            }
        };
        let max_ttl = match &spec.max_ttl {
            Some(max) => duration("maxTTL", max)?.min(defaults.max_ttl),
            None => defaults.max_ttl,
        };
        let approval = match &spec.approval {
            Some(rule) if rule.required => Some(match &rule.deadline {
                Some(deadline) => duration("approval.deadline", deadline)?,
                None => DEFAULT_APPROVAL_DEADLINE,
            }),
            _ => None,
        };
        let approvers = spec.approval.as_ref().and_then(|a| a.approvers.clone());
        if approvers
            .as_ref()
            .is_some_and(|a| a.users.is_empty() && a.groups.is_empty())
        {
            return Err(Malformed::Approvers);
        }
        Ok(Rules {
            name: policy.name_any(),
            selector,
            images,
            require_digest: spec.require_digest,
            profiles: spec
                .profiles
                .clone()
                .unwrap_or_else(|| DEFAULT_PROFILES.to_vec()),
            modes: spec.modes.clone(),
            max_ttl,
            max_sessions: spec.max_sessions_per_namespace,
            secret_env: spec.secret_env,
            approval,
            access: spec.access.unwrap_or_default(),
            approvers,
        })
    }

    /// The built-in default, where no policy selects the namespace.
    pub fn built_in(defaults: &Defaults) -> Rules {
        Rules {
            name: BUILT_IN_POLICY.to_owned(),
            selector: Selector::default(),
            images: flag_images(defaults),
            require_digest: false,
            profiles: DEFAULT_PROFILES.to_vec(),
            modes: None,
            max_ttl: defaults.max_ttl,
            max_sessions: None,
            // The requester's own RBAC decides which Secrets the debugger may read.
            secret_env: true,
            approval: None,
            // Installing shellcar alone lends nobody anything.
            access: Access::Direct,
            approvers: None,
        }
    }

    /// Whether this policy governs a namespace with `labels`.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }

    /// Every rule of this policy that `ask` breaks.
    fn violations(&self, ask: &Ask) -> Vec<Violation> {
        let mut out = Vec::new();
        if !self.profiles.contains(&ask.profile) {
            out.push(Violation::Profile(ask.profile));
        }
        if let Some(modes) = &self.modes
            && !modes.contains(&Mode::from(ask.mode))
        {
            out.push(Violation::Mode(ask.mode.into()));
        }
        if !self.images.allows(&ask.image) {
            out.push(Violation::Image(ask.image.clone()));
        }
        if self.require_digest && !pinned(&ask.image) {
            out.push(Violation::Digest(ask.image.clone()));
        }
        if ask.ttl > self.max_ttl {
            out.push(Violation::Ttl {
                ttl: ttl::format(ask.ttl),
                max: ttl::format(self.max_ttl),
            });
        }
        if ask.secret_env && !self.secret_env {
            out.push(Violation::SecretEnv);
        }
        if let (Some(max), Some(live)) = (self.max_sessions, ask.live_sessions)
            && live >= max as usize
        {
            out.push(Violation::Sessions { max });
        }
        out
    }

    fn describe_images(&self) -> String {
        match &self.images {
            Images::Any => "any image".to_owned(),
            Images::Prefixes(p) => p.join(", "),
            Images::Globs { patterns, .. } => patterns.join(", "),
        }
    }
}

/// True when `image` is pinned by a sha256 digest.
pub fn pinned(image: &str) -> bool {
    image.rsplit_once("@sha256:").is_some_and(|(name, hex)| {
        !name.is_empty() && hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// What about a session the policies judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Ask {
    pub profile: Profile,
    pub mode: Resolved,
    pub image: String,
    pub ttl: Duration,
    /// The debugger takes env values from Secrets.
    pub secret_env: bool,
    /// Live sessions in the namespace besides this one; `None` where the limit is not
    /// checked (it applies when a session is created, not to one already running).
    pub live_sessions: Option<usize>,
}

impl Ask {
    /// What a session with `spec`, resolved to `mode` with `image` and `ttl`, asks for.
    pub fn of(
        spec: &DebugSessionSpec,
        mode: Resolved,
        image: &str,
        ttl: Duration,
        live_sessions: Option<usize>,
    ) -> Ask {
        Ask {
            profile: spec.debugger.profile,
            mode,
            image: image.to_owned(),
            ttl,
            secret_env: spec.debugger.env.iter().flatten().any(|e| {
                e.value_from
                    .as_ref()
                    .is_some_and(|v| v.secret_key_ref.is_some())
            }),
            live_sessions,
        }
    }
}

/// A rule a session breaks, in words that read the same for every policy, so that the
/// refusal can group policies by rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Violation {
    Profile(Profile),
    Mode(Mode),
    Image(String),
    Digest(String),
    Ttl { ttl: String, max: String },
    SecretEnv,
    Sessions { max: u32 },
    Malformed(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Profile(p) => write!(f, "profile {p:?} is not allowed"),
            Violation::Mode(m) => write!(f, "mode {m} is not allowed"),
            Violation::Image(i) => write!(f, "image {i:?} is not allowed"),
            Violation::Digest(i) => write!(
                f,
                "image {i:?} is not pinned by digest (name@sha256:...), which is required"
            ),
            Violation::Ttl { ttl, max } => write!(f, "ttl {ttl} is longer than the maxTTL {max}"),
            Violation::SecretEnv => write!(f, "debugger env from Secrets is not allowed"),
            Violation::Sessions { max } => write!(
                f,
                "the namespace already has {max} live sessions, the maxSessionsPerNamespace"
            ),
            Violation::Malformed(why) => write!(f, "the policy is malformed ({why})"),
        }
    }
}

/// The policy that admits a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Its name ([`BUILT_IN_POLICY`] for the built-in default).
    pub policy: String,
    /// How long the session may wait for approval; `None` when it needs none.
    pub approval: Option<Duration>,
    /// What its requester must hold on the target ([`crate::rules::access::required`]).
    pub access: Access,
}

/// No policy admits the session: per rule broken, the policies it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct Refusal {
    namespace: String,
    /// The built-in default judged, as no policy selects the namespace.
    built_in: bool,
    broken: BTreeMap<Violation, Vec<String>>,
    /// What the policies allow, for the hint at the end.
    allowed: Vec<String>,
}

impl Refusal {
    fn render(&self) -> String {
        let rules: Vec<String> = self
            .broken
            .iter()
            .map(|(violation, policies)| {
                if self.built_in {
                    format!("{violation} by the built-in default policy")
                } else {
                    format!("{violation} by policies [{}]", policies.join(", "))
                }
            })
            .collect();
        let mut out = rules.join("; ");
        if self.built_in {
            out.push_str(&format!(
                " (no DebugPolicy selects namespace {}; NetAdmin and SysAdmin need one)",
                self.namespace
            ));
        }
        if !self.allowed.is_empty() {
            out.push_str(&format!("; allowed: {}", self.allowed.join("; ")));
        }
        out
    }
}

/// The policies that govern a namespace with `labels`: every well-formed policy that
/// selects it, and each malformed one (which admits nothing) as its name and fault.
fn governing(
    policies: &[Arc<DebugPolicy>],
    labels: &BTreeMap<String, String>,
    defaults: &Defaults,
) -> (Vec<Rules>, Vec<(String, Malformed)>) {
    let mut rules = Vec::new();
    let mut malformed = Vec::new();
    for policy in policies {
        match Rules::compile(policy, defaults) {
            Ok(r) if r.selects(labels) => rules.push(r),
            Ok(_) => {}
            Err(fault) => {
                // A selector that cannot be read might select anything: it fails closed
                // for every namespace. A bad glob only where its selector matches.
                let selects =
                    Selector::try_from(policy.spec.namespace_selector.clone().unwrap_or_default())
                        .map_or(true, |s| s.matches(labels));
                if selects {
                    malformed.push((policy.name_any(), fault));
                }
            }
        }
    }
    (rules, malformed)
}

/// Whether a session asking for `ask` in namespace `namespace` (with `labels`) fits a
/// policy. Policies add to each other: the first one the session fits admits it, those
/// without approval before those with, then by name. Where no policy selects the
/// namespace, the built-in default judges.
pub fn admit(
    policies: &[Arc<DebugPolicy>],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    ask: &Ask,
    defaults: &Defaults,
) -> Result<Admitted, Refusal> {
    let (mut rules, malformed) = governing(policies, labels, defaults);
    let built_in = rules.is_empty() && malformed.is_empty();
    if built_in {
        rules.push(Rules::built_in(defaults));
    }
    rules.sort_by(|a, b| (a.approval.is_some(), &a.name).cmp(&(b.approval.is_some(), &b.name)));
    let mut broken: BTreeMap<Violation, Vec<String>> = BTreeMap::new();
    for r in &rules {
        let violations = r.violations(ask);
        if violations.is_empty() {
            return Ok(Admitted {
                policy: r.name.clone(),
                approval: r.approval,
                access: r.access,
            });
        }
        for v in violations {
            broken.entry(v).or_default().push(r.name.clone());
        }
    }
    for (name, fault) in malformed {
        broken
            .entry(Violation::Malformed(fault.to_string()))
            .or_default()
            .push(name);
    }
    let allowed = rules
        .iter()
        .map(|r| {
            let profiles: Vec<String> = r.profiles.iter().map(|p| format!("{p:?}")).collect();
            format!(
                "{} allows profiles {}, images {}, ttl up to {}",
                if built_in { "the default" } else { &r.name },
                profiles.join(", "),
                r.describe_images(),
                ttl::format(r.max_ttl)
            )
        })
        .collect();
    Err(Refusal {
        namespace: namespace.to_owned(),
        built_in,
        broken,
        allowed,
    })
}

/// Why the approvers of a session's policy are not known: an approval is refused then.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    #[error(
        "the session records no admitting policy yet (status.policy): wait until the operator has judged it"
    )]
    Unjudged,
    #[error(
        "DebugPolicy {0}, which holds the session for approval (status.policy), no longer exists: wait until the operator has judged the session again"
    )]
    Gone(String),
    #[error(
        "DebugPolicy {policy}, which holds the session for approval (status.policy), no longer selects namespace {namespace}: wait until the operator has judged the session again"
    )]
    Unselected { policy: String, namespace: String },
    #[error(
        "DebugPolicy {policy}, which holds the session for approval (status.policy), is malformed ({fault}): nobody may approve under it"
    )]
    Malformed { policy: String, fault: Malformed },
}

/// Who may decide on a session in `namespace` (with `labels`) that policy `policy` holds
/// for approval (its `status.policy`; `None` before the operator judged it), as that policy
/// stands now among `policies`. `Ok(None)`: the policy names no approvers.
///
/// Fails closed: a policy that is gone, malformed or no longer selects the namespace
/// names nobody, until the operator judges the session again.
pub fn approvers(
    policies: &[Arc<DebugPolicy>],
    policy: Option<&str>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    defaults: &Defaults,
) -> Result<Option<Approvers>, Unknown> {
    let name = policy.ok_or(Unknown::Unjudged)?;
    if name == BUILT_IN_POLICY {
        return Ok(Rules::built_in(defaults).approvers);
    }
    let found = policies
        .iter()
        .find(|p| p.name_any() == name)
        .ok_or_else(|| Unknown::Gone(name.to_owned()))?;
    let rules = Rules::compile(found, defaults).map_err(|fault| Unknown::Malformed {
        policy: name.to_owned(),
        fault,
    })?;
    if !rules.selects(labels) {
        return Err(Unknown::Unselected {
            policy: name.to_owned(),
            namespace: namespace.to_owned(),
        });
    }
    Ok(rules.approvers)
}

#[cfg(test)]
mod tests;
