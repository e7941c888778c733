//! Monitoring with the real tools: promtool checks and unit-tests the alerts of
//! config/prometheus, and a Prometheus of the test's own scrapes the deployed operator, sees
//! a session become Active and torn down, and runs every query of the alerts and of the
//! Grafana dashboard (config/grafana).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kube::ResourceExt as _;
use serde_json::Value;
use shellcar_e2e::Fixture;
use shellcar_e2e::prometheus::{JOB, PROMTOOL, Prometheus, Target};

/// The operator's metrics port (config/manager's `metrics`).
const METRICS_PORT: u16 = 8080;
/// How long a value the operator has already changed may take to show in a query: a
/// scrape (every second) and an evaluation.
const SCRAPED: Duration = Duration::from_secs(15);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read_yaml(path: &str) -> Result<serde_yaml::Value> {
    let text = std::fs::read_to_string(repo(path)).with_context(|| format!("reading {path}"))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {path}"))
}

/// Runs `program args`, failing with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo("config/prometheus"))
        .output()
        .with_context(|| format!("running {program}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}):\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() -> Result<()> {
    let checked = run(PROMTOOL, &["check", "rules", "rules.yaml"])?;
    assert!(checked.contains("SUCCESS"), "{checked}");
    // Every alert fires when it should, and not on a failover or a passing failure.
    run(PROMTOOL, &["test", "rules", "rules_test.yaml"])?;
    Ok(())
}

/// config/prometheus as kustomize renders it, with the cluster's kubectl (as e2e/deploy
/// renders).
fn rendered() -> Result<Vec<serde_yaml::Value>> {
    let kubectl = shellcar_e2e::kubectl::binary();
    let path = repo("config/prometheus");
    let yaml = run(
        &kubectl.to_string_lossy(),
        &["kustomize", &path.to_string_lossy()],
    )?;
    yaml.split("\n---\n")
        .map(|d| serde_yaml::from_str(d).context("parsing kustomize's output"))
        .collect()
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> Result<&'a serde_yaml::Value> {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .with_context(|| format!("config/prometheus renders no {kind}"))
}

#[test]
fn the_service_monitor_scrapes_the_operator_and_the_prometheus_rule_is_the_rules_file() -> Result<()>
{
    let docs = rendered()?;
    let rule = find(&docs, "PrometheusRule")?;
    let rules = read_yaml("config/prometheus/rules.yaml")?;
    assert!(
        rule["spec"] == rules,
        "config/prometheus/alerts.yaml's spec differs from rules.yaml; copy rules.yaml's \
         `groups:` under `spec:`.\nPrometheusRule spec:\n{}\nrules.yaml:\n{}",
        serde_yaml::to_string(&rule["spec"])?,
        serde_yaml::to_string(&rules)?
    );

    // The alerts select `up` by job: the Service's name, which the ServiceMonitor gives it.
    let service = find(&docs, "Service")?;
    assert_eq!(service["metadata"]["name"], JOB);
    assert_eq!(
        service["metadata"]["namespace"],
        shellcar_e2e::OPERATOR_NAMESPACE
    );
    let monitor = find(&docs, "ServiceMonitor")?;
    assert_eq!(
        monitor["metadata"]["namespace"],
        service["metadata"]["namespace"]
    );
    let serde_yaml::Value::Mapping(wanted) = &monitor["spec"]["selector"]["matchLabels"] else {
        bail!("the ServiceMonitor has no matchLabels: {monitor:?}");
    };
    for (k, v) in wanted {
        assert_eq!(&service["metadata"]["labels"][k], v, "Service label {k:?}");
    }
    let port = &monitor["spec"]["endpoints"][0]["port"];
    let service_ports = service["spec"]["ports"]
        .as_sequence()
        .context("the Service has no ports")?;
    assert!(
        service_ports
            .iter()
            .any(|p| &p["name"] == port && p["port"] == METRICS_PORT),
        "the ServiceMonitor scrapes port {port:?}, which the Service does not name: {service_ports:?}"
    );

    // The Service reaches the operator's metrics port on its pods.
    let deployment = read_yaml("config/manager/deployment.yaml")?;
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let serde_yaml::Value::Mapping(selector) = &service["spec"]["selector"] else {
        bail!("the Service has no selector");
    };
    for (k, v) in selector {
        assert_eq!(&pod_labels[k], v, "operator pod label {k:?}");
    }
    let container_ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        container_ports
            .as_sequence()
            .context("the operator's container has no ports")?
            .iter()
            .any(|p| p["name"] == service_ports[0]["targetPort"]
                && p["containerPort"] == METRICS_PORT),
        "the Service's targetPort is not the operator's metrics port: {container_ports:?}"
    );
    Ok(())
}

/// The name and PromQL expression of every rule.
fn rule_expressions() -> Result<Vec<(String, String)>> {
    let rules = read_yaml("config/prometheus/rules.yaml")?;
    let mut exprs = Vec::new();
    for group in rules["groups"].as_sequence().context("no groups")? {
        for rule in group["rules"]
            .as_sequence()
            .context("a group without rules")?
        {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .context("a rule without a name")?;
            let expr = rule["expr"].as_str().context("a rule without expr")?;
            exprs.push((name.to_owned(), expr.to_owned()));
        }
    }
    Ok(exprs)
}

/// The panel title and PromQL expression of every query of the dashboard, with Grafana's
/// variables replaced by what Grafana would send.
fn dashboard_expressions() -> Result<Vec<(String, String)>> {
    let path = "config/grafana/shellcar.json";
    let text = std::fs::read_to_string(repo(path)).with_context(|| format!("reading {path}"))?;
    let dashboard: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {path}"))?;
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .context("no panels")?
        .iter()
        .collect();
    // Panels inside collapsed rows.
    let nested: Vec<&Value> = panels
        .iter()
        .filter_map(|p| p["panels"].as_array())
        .flatten()
        .collect();
    panels.extend(nested);
    let mut exprs = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().context("a target without expr")?;
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$__range", "1h");
            assert!(
                !expr.contains('$'),
                "a Grafana variable the test cannot replace: {expr}"
            );
            let title = panel["title"].as_str().unwrap_or_default();
            exprs.push((title.to_owned(), expr));
        }
    }
    assert!(!exprs.is_empty(), "the dashboard has no queries");
    Ok(exprs)
}

/// The operator's pods as Prometheus targets, by pod IP.
async fn operator_targets(f: &Fixture) -> Result<Vec<Target>> {
    let targets: Vec<Target> = f
        .cluster
        .operator_pods()
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            Some(Target {
                pod: p.name_any(),
                address: format!("{ip}:{METRICS_PORT}"),
            })
        })
        .collect();
    if targets.is_empty() {
        bail!("no operator pod has an IP");
    }
    Ok(targets)
}

/// The state of alert `name` in Prometheus' `/api/v1/rules` answer.
fn alert_state<'a>(rules: &'a Value, name: &str) -> Option<&'a str> {
    rules["data"]["groups"]
        .as_array()?
        .iter()
        .filter_map(|g| g["rules"].as_array())
        .flatten()
        .find(|r| r["name"] == name)?["state"]
        .as_str()
}

#[tokio::test]
async fn prometheus_scrapes_the_operator_and_runs_every_query() -> Result<()> {
    let (f, _) = Fixture::with_deployment("prometheus", "web", 1).await?;
    let targets = operator_targets(&f).await?;
    let rules_file = repo("config/prometheus/rules.yaml");
    let prometheus = Prometheus::start(&targets, &[&rules_file]).await?;
    let up = format!("up{{job=\"{JOB}\"}} == 1");
    prometheus
        .wait_for(&format!("count({up})"), SCRAPED, |n| {
            n >= targets.len() as f64
        })
        .await
        .with_context(|| prometheus.log_tail())?;

    // A session that becomes Active shows in shellcar_sessions.
    f.debug_deployment("watched", "web", "30m").await?;
    prometheus
        .wait_for("shellcar_sessions{phase=\"Active\"}", SCRAPED, |n| n >= 1.0)
        .await?;

    // From here on, every problem is collected, so that one run shows them all.
    let mut problems = Vec::new();
    // Its time to Ready was observed (by the leader, which is one of the targets).
    if let Err(e) = prometheus
        .wait_for("shellcar_time_to_ready_seconds_count", SCRAPED, |n| {
            n >= 1.0
        })
        .await
    {
        problems.push(format!("time to Ready not recorded: {e:#}"));
    }
    let torn_down = prometheus
        .sum("shellcar_teardown_duration_seconds_count")
        .await?;
    f.sessions.delete_and_wait_gone("watched").await?;
    if let Err(e) = prometheus
        .wait_for("shellcar_teardown_duration_seconds_count", SCRAPED, |n| {
            n >= torn_down.unwrap_or(0.0) + 1.0
        })
        .await
    {
        problems.push(format!(
            "teardown not recorded (before: {torn_down:?}): {e:#}"
        ));
    }

    // The rules load and evaluate, and those that say the operator is broken are quiet.
    let (code, body) = prometheus.get("/api/v1/rules").await?;
    let rules: Value =
        serde_json::from_str(&body).with_context(|| format!("/api/v1/rules: {code} {body}"))?;
    for group in rules["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            if rule["health"] != "ok" {
                problems.push(format!("rule {} is not healthy: {rule}", rule["name"]));
            }
        }
    }
    let alerts = rule_expressions()?;
    for (name, _) in &alerts {
        if alert_state(&rules, name).is_none() {
            problems.push(format!("Prometheus did not load alert {name}: {rules}"));
        }
    }
    for quiet in [
        "ShellcarOperatorDown",
        "ShellcarNoLeader",
        "ShellcarSeveralLeaders",
    ] {
        let state = alert_state(&rules, quiet);
        if state != Some("inactive") {
            problems.push(format!("{quiet} is {state:?} on a healthy operator"));
        }
    }

    // Every query is accepted; the dashboard's panels show data (refusals need one first).
    let queries = alerts
        .into_iter()
        .map(|(name, expr)| (format!("alert {name}"), expr, true))
        .chain(dashboard_expressions()?.into_iter().map(|(title, expr)| {
            // Nothing may have been refused or have failed yet.
            let may_be_empty =
                title == "Refusals by reason" || expr.contains("shellcar_reconcile_failures_total");
            (format!("panel {title:?}"), expr, may_be_empty)
        }));
    for (source, expr, may_be_empty) in queries {
        let answer = prometheus.query(&expr).await?;
        if answer["status"] != "success" {
            problems.push(format!("{source}: `{expr}` refused: {answer}"));
            continue;
        }
        let empty = answer["data"]["result"]
            .as_array()
            .is_none_or(|r| r.is_empty());
        if empty && !may_be_empty {
            problems.push(format!("{source}: `{expr}` has no data"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        prometheus.log_tail()
    );
    Ok(())
}
