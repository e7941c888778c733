//! A Prometheus server of the test's own: Debian's `prometheus` package (installed by
//! `e2e/cluster up`), run inside the cluster's network namespace so that it reaches the
//! operator's pods, and queried over its HTTP API.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::kubectl::Scratch;
use crate::wait::{Polled, poll};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";
/// The job of the operator's targets, as config/prometheus's ServiceMonitor names it (the
/// Service's name); the alerts select `up` by it.
pub const JOB: &str = "shellcar-metrics";

/// One endpoint to scrape, labelled as the Prometheus Operator labels a pod's target.
pub struct Target {
    pub pod: String,
    /// `host:port`
    pub address: String,
}

/// A running Prometheus, killed when dropped (also when a test fails).
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    // Holds the configuration, the TSDB and the log; removed after the process is gone.
    _scratch: Scratch,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second as job [`JOB`] and evaluating the
    /// rules in `rule_files` every second, listening on a free loopback port; returns once
    /// it is ready.
    pub async fn start(targets: &[Target], rule_files: &[&Path]) -> Result<Prometheus> {
        let scratch = Scratch::create(&format!("prometheus-{}", std::process::id()))?;
        let static_configs: Vec<Value> = targets
            .iter()
            .map(|t| {
                json!({
                    "targets": [t.address],
                    "labels": {"pod": t.pod, "namespace": crate::OPERATOR_NAMESPACE},
                })
            })
            .collect();
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_files,
            "scrape_configs": [{"job_name": JOB, "static_configs": static_configs}],
        });
        let config_path = scratch.path().join("prometheus.yml");
        std::fs::write(&config_path, serde_yaml::to_string(&config)?)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let log = scratch.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log)?;
        let addr = free_loopback_port()?;
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                scratch.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!("starting {PROMETHEUS} (Debian's prometheus package; `e2e/cluster up` installs it)")
            })?;
        let mut prometheus = Prometheus {
            child,
            addr,
            log,
            _scratch: scratch,
        };
        prometheus.wait_ready().await?;
        Ok(prometheus)
    }

    /// Waits until Prometheus says it is ready; fails at once if it exits.
    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{PROMETHEUS} exited with {status}\n{}", self.log_tail());
            }
            let last = match self.get("/-/ready").await {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("/-/ready: {code} {body}"),
                Err(e) => format!("{e:#}"),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "Prometheus not ready after {:?}; last seen: {last}\n{}",
                    crate::TIMEOUT,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The HTTP status and body of GET `path_and_query`.
    pub async fn get(&self, path_and_query: &str) -> Result<(u16, String)> {
        let (addr, target) = (self.addr, path_and_query.to_owned());
        tokio::task::spawn_blocking(move || http_get(addr, &target)).await?
    }

    /// The answer of `/api/v1/query` to `expr` at the current time, as Prometheus sends it:
    /// `status` is `success` or `error` (with `errorType` and `error`).
    pub async fn query(&self, expr: &str) -> Result<Value> {
        let (code, body) = self
            .get(&format!("/api/v1/query?query={}", percent_encode(expr)))
            .await?;
        serde_json::from_str(&body)
            .with_context(|| format!("query {expr}: HTTP {code}, not JSON: {body}"))
    }

    /// The samples of the instant vector `expr`: labels and value. Fails when the query
    /// does.
    pub async fn samples(&self, expr: &str) -> Result<Vec<(Value, f64)>> {
        let answer = self.query(expr).await?;
        if answer["status"] != "success" {
            bail!("query {expr} failed: {answer}");
        }
        let Some(result) = answer["data"]["result"].as_array() else {
            bail!("query {expr}: no result vector in {answer}");
        };
        result
            .iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("query {expr}: no value in {s}"))?;
                Ok((s["metric"].clone(), value))
            })
            .collect()
    }

    /// The sum of the samples of `expr`, or `None` when it has none.
    pub async fn sum(&self, expr: &str) -> Result<Option<f64>> {
        let samples = self.samples(expr).await?;
        Ok((!samples.is_empty()).then(|| samples.iter().map(|(_, v)| v).sum()))
    }

    /// Waits until the sum of `expr` satisfies `done`, at most `timeout`.
    pub async fn wait_for(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(f64) -> bool,
    ) -> Result<f64> {
        poll(&format!("Prometheus: {expr}"), timeout, || async {
            Ok(match self.sum(expr).await? {
                Some(v) if done(v) => Polled::Done(v),
                seen => Polled::NotYet(format!("{seen:?}")),
            })
        })
        .await
    }

    /// The last lines of Prometheus' log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("--- Prometheus log (tail) ---\n{tail}")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SIGKILL: nothing of its storage is kept. Then reap it, before the scratch
        // directory it writes to is removed.
        if let Err(e) = self.child.kill() {
            eprintln!("could not kill Prometheus (pid {}): {e}", self.child.id());
        }
        let _ = self.child.wait();
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// GET over HTTP/1.0, which Prometheus answers without chunking and then closes: the
/// tests need no HTTP client of their own.
fn http_get(addr: SocketAddr, target: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to Prometheus at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8(response).context("Prometheus answered non-UTF-8")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {target}: no HTTP header in {response:?}"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET {target}: no status in {head:?}"))?;
    Ok((code, body.to_owned()))
}

/// `s` as a URL query value: everything but the unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            percent_encode(r#"sum(up{job="a b"}) > 0"#),
            "sum%28up%7Bjob%3D%22a%20b%22%7D%29%20%3E%200"
        );
    }
}
