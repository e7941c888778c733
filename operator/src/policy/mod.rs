//! DebugPolicy: which policies govern a namespace, whether a session fits one of them, and
//! in words why not.
//!
//! Pure: the callers (the webhook at admission, the reconciler at every pass) bring the
//! policies, the namespace's labels and the count of live sessions.

pub mod status;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::context::Policy as Defaults;
use crate::crd::{DebugPolicy, DebugSessionSpec, Mode, Profile, Resolved};
use crate::naming::BUILT_IN_POLICY;
use crate::ttl;

/// How long a session may wait for approval when its policy names no deadline.
pub const DEFAULT_APPROVAL_DEADLINE: Duration = Duration::from_secs(3600);

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
}

impl Malformed {
    /// The reason of the policy's Ready condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Malformed::Glob { .. } => "InvalidGlob",
            Malformed::Selector(_) => "InvalidSelector",
            Malformed::Duration { .. } => "InvalidDuration",
        }
    }
}

/// True when `image` is `allowed` or lies under it: the allowed prefix must end where a
/// path component, tag or digest of the image does, so that `registry.example` admits
/// `registry.example/x` but not `registry.example.evil.io/x`.
fn image_allowed(image: &str, allowed: &str) -> bool {
    let Some(rest) = image.strip_prefix(allowed) else {
        return false;
    };
    rest.is_empty() || allowed.ends_with('/') || rest.starts_with(['/', ':', '@'])
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
            Images::Prefixes(prefixes) => prefixes.iter().any(|p| image_allowed(image, p)),
            Images::Globs { set, .. } => set.is_match(image),
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
pub fn governing(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            default_image: "busybox".to_owned(),
            max_ttl: Duration::from_secs(24 * 3600),
            allowed_images: vec![],
            start_deadline: Duration::from_secs(300),
        }
    }

    fn policy(name: &str, yaml: &str) -> DebugPolicy {
        let mut p = DebugPolicy::new(name, serde_yaml::from_str(yaml).unwrap());
        p.metadata.name = Some(name.to_owned());
        p
    }

    fn ask(profile: Profile, image: &str) -> Ask {
        Ask {
            profile,
            mode: Resolved::Sidecar,
            image: image.to_owned(),
            ttl: Duration::from_secs(1800),
            secret_env: false,
            live_sessions: Some(0),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn admit_in(
        policies: &[DebugPolicy],
        ns: &[(&str, &str)],
        ask: &Ask,
    ) -> Result<Admitted, String> {
        let policies: Vec<Arc<DebugPolicy>> = policies.iter().cloned().map(Arc::new).collect();
        admit(&policies, "shop", &labels(ns), ask, &defaults()).map_err(|r| r.to_string())
    }

    #[test]
    fn the_built_in_default_allows_the_ordinary_profiles_only() {
        for profile in DEFAULT_PROFILES {
            let admitted = admit_in(&[], &[], &ask(profile, "busybox")).unwrap();
            assert_eq!(admitted.policy, BUILT_IN_POLICY);
            assert_eq!(admitted.approval, None);
        }
        let refused = admit_in(&[], &[], &ask(Profile::SysAdmin, "busybox")).unwrap_err();
        assert!(
            refused.starts_with(
                "profile SysAdmin is not allowed by the built-in default policy (no DebugPolicy selects namespace shop"
            ),
            "{refused}"
        );
        assert!(admit_in(&[], &[], &ask(Profile::NetAdmin, "busybox")).is_err());
    }

    #[test]
    fn a_selected_namespace_is_judged_by_its_policies_not_the_default() {
        let ops = policy(
            "ops",
            "{namespaceSelector: {matchLabels: {team: ops}}, profiles: [SysAdmin]}",
        );
        let admitted = admit_in(
            std::slice::from_ref(&ops),
            &[("team", "ops")],
            &ask(Profile::SysAdmin, "busybox"),
        )
        .unwrap();
        assert_eq!(admitted.policy, "ops");
        // General is not in its list, and the default no longer applies there.
        let refused = admit_in(
            std::slice::from_ref(&ops),
            &[("team", "ops")],
            &ask(Profile::General, "busybox"),
        )
        .unwrap_err();
        assert!(
            refused.starts_with("profile General is not allowed by policies [ops]"),
            "{refused}"
        );
        // Elsewhere the default judges.
        assert!(
            admit_in(
                &[ops],
                &[("team", "web")],
                &ask(Profile::SysAdmin, "busybox")
            )
            .is_err()
        );
    }

    #[test]
    fn policies_add_up_and_refusals_group_policies_by_rule() {
        let prod = policy(
            "prod",
            "{namespaceSelector: {matchLabels: {env: prod}}, images: ['reg.example/tools/*']}",
        );
        let default = policy("default", "{images: ['busybox:*']}");
        let both = [prod.clone(), default.clone()];
        let env = [("env", "prod")];
        assert_eq!(
            admit_in(&both, &env, &ask(Profile::General, "busybox:1.36"))
                .unwrap()
                .policy,
            "default"
        );
        assert_eq!(
            admit_in(&both, &env, &ask(Profile::General, "reg.example/tools/sh"))
                .unwrap()
                .policy,
            "prod"
        );
        let refused = admit_in(&both, &env, &ask(Profile::SysAdmin, "evil/sh")).unwrap_err();
        assert!(
            refused.starts_with(
                "profile SysAdmin is not allowed by policies [default, prod]; image \"evil/sh\" is not allowed by policies [default, prod]"
            ),
            "{refused}"
        );
    }

    #[test]
    fn globs_match_on_slash_boundaries() {
        let p = policy(
            "p",
            "{images: ['reg.example/tools/*', 'reg.example/team/**', 'busybox:1.3?']}",
        );
        let rules = Rules::compile(&p, &defaults()).unwrap();
        for (image, allowed) in [
            ("reg.example/tools/busybox:1.36", true),
            ("reg.example/tools/x/busybox", false),
            ("reg.example/toolsx/busybox", false),
            ("reg.example/team/a/b/c:1", true),
            ("reg.example/team", false),
            ("busybox:1.36", true),
            ("busybox:1.360", false),
            ("evil.io/reg.example/tools/x", false),
        ] {
            assert_eq!(rules.images.allows(image), allowed, "{image}");
        }
    }

    #[test]
    fn a_bad_glob_is_malformed_and_fails_closed() {
        let bad = policy(
            "bad",
            "{namespaceSelector: {matchLabels: {env: prod}}, images: ['ok/*', 'reg/[abc']}",
        );
        let fault = Rules::compile(&bad, &defaults()).unwrap_err();
        assert_eq!(fault.reason(), "InvalidGlob");
        assert!(
            fault
                .to_string()
                .starts_with("images[1] \"reg/[abc\" is not a glob")
        );
        let refused = admit_in(
            std::slice::from_ref(&bad),
            &[("env", "prod")],
            &ask(Profile::General, "busybox"),
        )
        .unwrap_err();
        assert!(refused.contains("the policy is malformed"), "{refused}");
        assert!(refused.contains("by policies [bad]"), "{refused}");
        // Where its selector does not match, it changes nothing.
        assert!(admit_in(&[bad], &[], &ask(Profile::General, "busybox")).is_ok());
    }

    #[test]
    fn allowed_images_match_on_component_boundaries() {
        let allowed = |image: &str, prefix: &str| image_allowed(image, prefix);
        assert!(allowed("registry.example/x", "registry.example"));
        assert!(allowed(
            "registry.example/tools/sh:1",
            "registry.example/tools/"
        ));
        assert!(allowed("busybox:1.36", "busybox"));
        assert!(allowed("busybox@sha256:ab", "busybox"));
        assert!(allowed("busybox", "busybox"));
        assert!(!allowed("registry.example.evil.io/x", "registry.example"));
        assert!(!allowed("registry.examplex/x", "registry.example"));
        assert!(!allowed("busybox-evil", "busybox"));
        assert!(!allowed("evil/registry.example/x", "registry.example"));
    }

    #[test]
    fn digests_are_sha256_with_64_hex_digits() {
        let hex = "a".repeat(64);
        assert!(pinned(&format!("busybox@sha256:{hex}")));
        assert!(pinned(&format!("reg:5000/busybox:1.36@sha256:{hex}")));
        assert!(!pinned("busybox:1.36"));
        assert!(!pinned(&format!("busybox@sha256:{}", "a".repeat(63))));
        assert!(!pinned(&format!("busybox@sha256:{}", "g".repeat(64))));
        assert!(!pinned(&format!("@sha256:{hex}")));
        let p = policy("p", "{requireDigest: true}");
        let refused = admit_in(
            std::slice::from_ref(&p),
            &[],
            &ask(Profile::General, "busybox"),
        )
        .unwrap_err();
        assert!(refused.contains("is not pinned by digest"), "{refused}");
        assert!(
            admit_in(
                &[p],
                &[],
                &ask(Profile::General, &format!("busybox@sha256:{hex}"))
            )
            .is_ok()
        );
    }

    #[test]
    fn modes_ttl_secret_env_and_session_limits() {
        let p = policy(
            "p",
            "{modes: [Ephemeral], maxTTL: 30m, maxSessionsPerNamespace: 2}",
        );
        let rules = Rules::compile(&p, &defaults()).unwrap();
        let mut a = ask(Profile::General, "busybox");
        assert_eq!(rules.violations(&a), [Violation::Mode(Mode::Sidecar)]);
        a.mode = Resolved::Ephemeral;
        assert!(rules.violations(&a).is_empty());
        a.ttl = Duration::from_secs(3600);
        a.secret_env = true;
        a.live_sessions = Some(2);
        assert_eq!(
            rules
                .violations(&a)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "ttl 1h is longer than the maxTTL 30m",
                "debugger env from Secrets is not allowed",
                "the namespace already has 2 live sessions, the maxSessionsPerNamespace",
            ]
        );
        // A running session is not counted against the limit.
        a.live_sessions = None;
        a.ttl = Duration::from_secs(60);
        a.secret_env = false;
        assert!(rules.violations(&a).is_empty());
    }

    #[test]
    fn the_operator_flags_cap_and_fill_in_for_policies() {
        let mut d = defaults();
        d.max_ttl = Duration::from_secs(3600);
        d.allowed_images = vec!["reg.example".to_owned()];
        let p = policy("p", "{maxTTL: 10h}");
        let rules = Rules::compile(&p, &d).unwrap();
        assert_eq!(rules.max_ttl, Duration::from_secs(3600));
        assert!(rules.images.allows("reg.example/busybox"));
        assert!(!rules.images.allows("reg.example.evil.io/busybox"));
        let built_in = Rules::built_in(&d);
        assert!(!built_in.images.allows("busybox"));
    }

    #[test]
    fn policies_without_approval_are_preferred() {
        let strict = policy("a-strict", "{approval: {required: true, deadline: 15m}}");
        let open = policy("b-open", "{}");
        let admitted = admit_in(
            &[strict.clone(), open],
            &[],
            &ask(Profile::General, "busybox"),
        )
        .unwrap();
        assert_eq!(admitted.policy, "b-open");
        assert_eq!(admitted.approval, None);
        let admitted = admit_in(&[strict], &[], &ask(Profile::General, "busybox")).unwrap();
        assert_eq!(admitted.approval, Some(Duration::from_secs(900)));
        let default_deadline = policy("c", "{approval: {required: true}}");
        let admitted =
            admit_in(&[default_deadline], &[], &ask(Profile::General, "busybox")).unwrap();
        assert_eq!(admitted.approval, Some(DEFAULT_APPROVAL_DEADLINE));
    }

    #[test]
    fn match_expressions_select_namespaces() {
        let p = policy(
            "p",
            "{namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod, stage]}]}, profiles: [NetAdmin]}",
        );
        let a = ask(Profile::NetAdmin, "busybox");
        assert!(admit_in(std::slice::from_ref(&p), &[("env", "stage")], &a).is_ok());
        assert!(admit_in(&[p], &[("env", "dev")], &a).is_err());
    }
}
