//! The operator's own numbers, read from the `/metrics` of the replica that leads:
//! reconciles, API requests (when the operator counts them) and resident memory.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Pod;

use crate::cluster::Cluster;
use crate::leader::pod_of;

/// The port of the operator's /metrics (config/manager).
pub const METRICS_PORT: u16 = 8080;
/// Reconciliations run.
pub const RECONCILES: &str = "shellcar_reconciles_total";
/// The operator's API requests by verb and resource; not exported by every version of
/// the operator.
pub const API_REQUESTS: &str = "shellcar_api_requests_total";
/// Resident memory of the operator process.
pub const RESIDENT_MEMORY: &str = "shellcar_process_resident_memory_bytes";

/// One sample of the exposition: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one line of the Prometheus / OpenMetrics text format; `None` for comments and
/// for what is not a sample.
pub fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(' ')?),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}')?)?),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y"` into pairs, with `\"`, `\\` and `\n` unescaped.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim_start_matches(',');
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',').trim_start();
    }
    Some(labels)
}

/// One reading of the operator's /metrics.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    samples: Vec<Sample>,
    families: Vec<String>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        Scrape {
            samples: text.lines().filter_map(parse_line).collect(),
            // `# TYPE name counter`: a family is exported even before it has a sample.
            families: text
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Adds the samples of `other` that `keep` accepts (another replica's reading).
    pub fn add(&mut self, other: Scrape, keep: impl Fn(&Sample) -> bool) {
        self.samples
            .extend(other.samples.into_iter().filter(|s| keep(s)));
        self.families.extend(other.families);
    }

    /// Whether the operator exports metric `name` (a counter's `_total` name counts as
    /// its family's).
    pub fn exports(&self, name: &str) -> bool {
        let family = name.strip_suffix("_total").unwrap_or(name);
        self.families.iter().any(|f| f == name || f == family)
            || self.samples.iter().any(|s| s.name == name)
    }

    /// The sum of `name`'s samples that `keep` accepts; `None` when it is not exported.
    pub fn sum(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        if !self.exports(name) {
            return None;
        }
        Some(
            self.samples
                .iter()
                .filter(|s| s.name == name && keep(s))
                .map(|s| s.value)
                .sum(),
        )
    }

    /// The operator's API requests by `verb resource`, without the watch and Lease
    /// renewals (see [`Requests::work`]); empty when they are not exported.
    pub fn requests_by_kind(&self) -> BTreeMap<String, f64> {
        let mut by_kind = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == API_REQUESTS) {
            let (verb, resource) = (
                s.label("verb").unwrap_or_default(),
                s.label("resource").unwrap_or_default(),
            );
            if verb == "watch" || resource.split('/').next() == Some("leases") {
                continue;
            }
            *by_kind.entry(format!("{verb} {resource}")).or_default() += s.value;
        }
        by_kind
    }

    /// The operator's counters at this reading.
    pub fn counters(&self) -> Counters {
        Counters {
            reconciles: self.sum(RECONCILES, |_| true).unwrap_or_default(),
            requests: self.sum(API_REQUESTS, |_| true).map(|total| Requests {
                total,
                watches: self
                    .sum(API_REQUESTS, |s| s.label("verb") == Some("watch"))
                    .unwrap_or_default(),
                leases: self
                    .sum(API_REQUESTS, |s| {
                        s.label("verb") != Some("watch")
                            && s.label("resource")
                                .is_some_and(|r| r.split('/').next() == Some("leases"))
                    })
                    .unwrap_or_default(),
            }),
            resident_memory: self.sum(RESIDENT_MEMORY, |_| true),
        }
    }
}

/// The operator's API requests, split by what causes them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Requests {
    pub total: f64,
    /// Watches (re)opened: the watches renew themselves on a timer, whatever happens.
    pub watches: f64,
    /// Leader election: the Lease is read and renewed on a timer.
    pub leases: f64,
}

impl Requests {
    /// Requests that the operator's work causes: all but the watch and Lease renewals,
    /// which run on timers whatever the sessions do.
    pub fn work(&self) -> f64 {
        self.total - self.watches - self.leases
    }

    fn minus(&self, before: &Requests) -> Requests {
        Requests {
            total: self.total - before.total,
            watches: self.watches - before.watches,
            leases: self.leases - before.leases,
        }
    }
}

/// Counters of the operator at one moment; see [`Counters::since`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    pub reconciles: f64,
    /// `None`: the operator does not export [`API_REQUESTS`].
    pub requests: Option<Requests>,
    /// A gauge, not a counter: [`Counters::since`] keeps the later value.
    pub resident_memory: Option<f64>,
}

impl Counters {
    /// What happened between `before` and `self` (two readings of one process).
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            reconciles: self.reconciles - before.reconciles,
            requests: match (self.requests, before.requests) {
                (Some(after), Some(before)) => Some(after.minus(&before)),
                _ => None,
            },
            resident_memory: self.resident_memory,
        }
    }
}

/// The operator's API requests between two readings by `verb resource`, largest first,
/// without the watch and Lease renewals: where a number comes from.
pub fn breakdown(before: &Scrape, after: &Scrape) -> String {
    let was = before.requests_by_kind();
    let mut delta: Vec<(String, f64)> = after
        .requests_by_kind()
        .into_iter()
        .map(|(k, v)| {
            let d = v - was.get(&k).copied().unwrap_or_default();
            (k, d)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if delta.is_empty() {
        return "none".to_owned();
    }
    delta
        .iter()
        .map(|(k, d)| format!("{k} {d:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the table says for a measurement that needs [`API_REQUESTS`] when the operator
/// does not export it.
pub const NO_REQUEST_METRIC: &str = "n/a (metric not exported by this operator)";

/// The /metrics of every operator replica. The leader reconciles; every replica serves
/// the admission webhook, whose requests (SubjectAccessReviews, policy and session
/// lists) land on whichever replica the API server calls. Request and reconcile counts
/// are summed over the replicas, so that they are the operator's whole cost; the resident
/// memory is the leader's, which holds the caches.
#[derive(Clone, Debug)]
pub struct OperatorMetrics {
    /// The Lease holder's identity (`<pod>_<random>`), new for each process.
    pub holder: String,
    leader: String,
    others: Vec<String>,
}

fn metrics_url(pod: &Pod) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_ref()?;
    Some(format!("http://{ip}:{METRICS_PORT}/metrics"))
}

impl OperatorMetrics {
    /// Finds the replicas, reached over the pod network from the cluster's network
    /// namespace.
    pub async fn find(cluster: &Cluster) -> Result<OperatorMetrics> {
        let holder = cluster.wait_leader().await?;
        let leader_pod = pod_of(&holder).to_owned();
        let pods = cluster.operator_pods().await?;
        let leader = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(leader_pod.as_str()))
            .and_then(metrics_url)
            .with_context(|| format!("the leader pod {leader_pod} has no IP"))?;
        let others = pods
            .iter()
            .filter(|p| {
                p.metadata.name.as_deref() != Some(leader_pod.as_str())
                    && p.metadata.deletion_timestamp.is_none()
            })
            .filter_map(metrics_url)
            .collect();
        Ok(OperatorMetrics {
            holder,
            leader,
            others,
        })
    }

    /// Reads every replica's /metrics.
    pub async fn scrape(&self) -> Result<Scrape> {
        let mut all = scrape(&self.leader).await?;
        for url in &self.others {
            let other = scrape(url).await?;
            all.add(other, |s| s.name != RESIDENT_MEMORY);
        }
        Ok(all)
    }

    /// The operator's counters now.
    pub async fn counters(&self) -> Result<Counters> {
        Ok(self.scrape().await?.counters())
    }
}

/// Reads the /metrics at `url` with curl (present on the machine; the benchmark needs no
/// HTTP client of its own).
async fn scrape(url: &str) -> Result<Scrape> {
    let owned = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sSf", "--max-time", "10", &owned])
            .output()
    })
    .await
    .context("curl's thread panicked")?
    .context("running curl")?;
    if !out.status.success() {
        bail!(
            "reading {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Scrape::parse(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# HELP shellcar_reconciles Reconciliations run.
# TYPE shellcar_reconciles counter
shellcar_reconciles_total 42
# TYPE shellcar_api_requests counter
shellcar_api_requests_total{verb="get",resource="deployments"} 3
shellcar_api_requests_total{verb="patch",resource="debugsessions/status"} 5
shellcar_api_requests_total{verb="watch",resource="pods"} 7
shellcar_api_requests_total{verb="update",resource="leases"} 11
shellcar_api_requests_total{verb="get",resource="/version"} 1
# TYPE shellcar_process_resident_memory_bytes gauge
shellcar_process_resident_memory_bytes 48234496
# TYPE shellcar_refusals counter
# EOF
"#;

    #[test]
    fn counters_split_requests_by_cause() {
        let c = Scrape::parse(EXPOSITION).counters();
        assert_eq!(c.reconciles, 42.0);
        let r = c.requests.unwrap();
        assert_eq!(r.total, 27.0);
        assert_eq!(r.watches, 7.0);
        assert_eq!(r.leases, 11.0);
        assert_eq!(r.work(), 9.0);
        assert_eq!(c.resident_memory, Some(48234496.0));
        let by_kind = Scrape::parse(EXPOSITION).requests_by_kind();
        assert_eq!(by_kind.get("get deployments"), Some(&3.0));
        assert_eq!(by_kind.get("patch debugsessions/status"), Some(&5.0));
        assert_eq!(by_kind.len(), 3, "{by_kind:?}");
    }

    #[test]
    fn a_family_without_samples_is_exported_and_a_missing_one_is_not() {
        let s = Scrape::parse(EXPOSITION);
        assert_eq!(s.sum("shellcar_refusals_total", |_| true), Some(0.0));
        assert_eq!(s.sum("shellcar_nothing_total", |_| true), None);
        let old =
            Scrape::parse("# TYPE shellcar_reconciles counter\nshellcar_reconciles_total 1\n");
        assert_eq!(old.counters().requests, None);
    }

    #[test]
    fn deltas_between_two_readings() {
        let before = Scrape::parse(EXPOSITION).counters();
        let after = Scrape::parse(
            &EXPOSITION
                .replace(
                    "shellcar_reconciles_total 42",
                    "shellcar_reconciles_total 52",
                )
                .replace(
                    "resource=\"debugsessions/status\"} 5",
                    "resource=\"debugsessions/status\"} 25",
                ),
        )
        .counters();
        let d = after.since(&before);
        assert_eq!(d.reconciles, 10.0);
        assert_eq!(d.requests.unwrap().work(), 20.0);
        let (b, a) = (
            Scrape::parse(EXPOSITION),
            Scrape::parse(&EXPOSITION.replace("} 5", "} 25")),
        );
        assert_eq!(breakdown(&b, &a), "patch debugsessions/status 20");
        assert_eq!(breakdown(&b, &b), "none");
    }

    #[test]
    fn replicas_add_up_but_memory_is_the_leaders() {
        let mut all = Scrape::parse(EXPOSITION);
        all.add(Scrape::parse(EXPOSITION), |s| s.name != RESIDENT_MEMORY);
        let c = all.counters();
        assert_eq!(c.reconciles, 84.0);
        assert_eq!(c.requests.unwrap().work(), 18.0);
        assert_eq!(c.resident_memory, Some(48234496.0));
    }

    #[test]
    fn labels_with_escapes() {
        let s = parse_line(r#"m_total{a="x\"y",b="p,q"} 2.5"#).unwrap();
        assert_eq!(s.name, "m_total");
        assert_eq!(s.label("a"), Some("x\"y"));
        assert_eq!(s.label("b"), Some("p,q"));
        assert_eq!(s.value, 2.5);
        assert_eq!(parse_line("# TYPE m counter"), None);
    }
}
