//! The Grafana dashboard and the alert rules use only metrics that
//! `src/metrics.rs` declares, by the names the exporter gives their series.
//!
//! Every PromQL expression of `dashboards/ringraft.json` (panel targets and
//! the selectors of `label_values` variable queries) and of
//! `dashboards/alerts.yml` is parsed with a PromQL parser after Grafana's
//! variables are replaced by concrete values, and every metric name its
//! selectors use must be a declared counter or gauge, or the `_bucket`,
//! `_sum` or `_count` series of a declared histogram (querying a
//! histogram's bare name finds nothing). The dashboard's structure (data
//! source variable, instance/node variables, the panels the observability
//! issue asks for) and the rules' fields are checked too. A real Prometheus
//! evaluates the same expressions in `scripts/check-prometheus.sh`.

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use ringraft::metrics::{self, METRICS, MetricType};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

/// Series Prometheus makes itself, which a dashboard may use.
const PROMETHEUS_SERIES: &[&str] = &["up"];

/// What Grafana's interval variables become for parsing.
const INTERVAL: &str = "5m";

/// What every other variable (`$instance`, `${node}`) becomes: the "All"
/// value of the dashboard's multi-value variables.
const ALL: &str = ".*";

fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

fn dashboard() -> Value {
    let path = dashboards_dir().join("ringraft.json");
    let text = std::fs::read_to_string(&path).expect("dashboards/ringraft.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

fn alert_rules() -> Vec<serde_norway::Value> {
    let path = dashboards_dir().join("alerts.yml");
    let text = std::fs::read_to_string(&path).expect("dashboards/alerts.yml");
    let rules: serde_norway::Value = serde_norway::from_str(&text).expect("alerts.yml is YAML");
    let groups = rules["groups"].as_sequence().expect("groups");
    assert!(!groups.is_empty(), "no rule groups");
    groups
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("rules").clone())
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// `(where, expression)` of every panel target.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for panel in panels(dashboard) {
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        let title = panel["title"].as_str().unwrap_or("?");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            let ref_id = target["refId"].as_str().unwrap_or("?");
            exprs.push((format!("panel {title:?} {ref_id}"), expr.to_string()));
        }
    }
    exprs
}

/// The selector inside each `label_values(selector, label)` variable query.
fn variable_selectors(dashboard: &Value) -> Vec<(String, String)> {
    let mut selectors = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name}: no query"));
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {query}"));
        let (selector, _label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("variable {name}: label_values without a metric"));
        selectors.push((format!("variable {name}"), selector.trim().to_string()));
    }
    selectors
}

/// `expr` with Grafana's variables replaced: `$__rate_interval`,
/// `$__interval` and `$__range` by [`INTERVAL`], any other `$name` or
/// `${name}` by [`ALL`].
fn concrete(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("unterminated ${");
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        assert!(!name.is_empty(), "a lone $ in {expr}");
        out.push_str(if name.starts_with("__") {
            INTERVAL
        } else {
            ALL
        });
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The metric names of every selector in an expression.
#[derive(Default)]
struct MetricNames {
    names: Vec<Option<String>>,
}

impl ExprVisitor for MetricNames {
    type Error = ();

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        match expr {
            Expr::VectorSelector(selector) => self.names.push(selector.name.clone()),
            Expr::MatrixSelector(matrix) => self.names.push(matrix.vs.name.clone()),
            _ => {}
        }
        Ok(true)
    }
}

fn metric_names(place: &str, expr: &str) -> Vec<String> {
    let promql = concrete(expr);
    let ast = parser::parse(&promql)
        .unwrap_or_else(|error| panic!("{place}: {promql:?} does not parse: {error}"));
    let mut visitor = MetricNames::default();
    walk_expr(&mut visitor, &ast).expect("the visitor never fails");
    assert!(
        !visitor.names.is_empty(),
        "{place}: {promql:?} selects no metric"
    );
    visitor
        .names
        .into_iter()
        .map(|name| name.unwrap_or_else(|| panic!("{place}: a selector without a metric name")))
        .collect()
}

/// The declared metric a series name belongs to; panics if it is none.
fn declared_metric(place: &str, series: &str) -> &'static str {
    if let Some(spec) = metrics::spec(series) {
        assert_ne!(
            spec.metric_type,
            MetricType::Histogram,
            "{place}: histogram {series} has no series of that name; use _bucket, _sum or _count"
        );
        return spec.name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && let Some(spec) = metrics::spec(base)
        {
            assert_eq!(
                spec.metric_type,
                MetricType::Histogram,
                "{place}: {series}: {base} is a {}, not a histogram",
                spec.metric_type.as_str()
            );
            return spec.name;
        }
    }
    panic!("{place}: {series} is not declared in src/metrics.rs");
}

/// Declared metrics used by `exprs`.
fn used_metrics(exprs: &[(String, String)]) -> BTreeSet<&'static str> {
    let mut used = BTreeSet::new();
    for (place, expr) in exprs {
        for series in metric_names(place, expr) {
            if PROMETHEUS_SERIES.contains(&series.as_str()) {
                continue;
            }
            assert!(
                series.starts_with("ringraft_"),
                "{place}: {series} is not a ringraft metric"
            );
            used.insert(declared_metric(place, &series));
        }
    }
    used
}

#[test]
fn grafana_variables_are_replaced() {
    assert_eq!(
        concrete(r#"rate(x{instance=~"$instance", node=~"${node}"}[$__rate_interval])"#),
        r#"rate(x{instance=~".*", node=~".*"}[5m])"#
    );
}

#[test]
fn every_dashboard_expression_uses_declared_metrics() {
    let dashboard = dashboard();
    let mut exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 20, "only {} panel queries", exprs.len());
    exprs.extend(variable_selectors(&dashboard));
    let used = used_metrics(&exprs);
    // The panels the observability issue asks for, by what they show.
    let required = [
        metrics::HAS_LEADER,
        metrics::IS_LEADER,
        metrics::LEADER_CHANGES_SEEN_TOTAL,
        metrics::PROPOSALS_COMMITTED_TOTAL,
        metrics::PROPOSALS_APPLIED_TOTAL,
        metrics::PROPOSALS_PENDING,
        metrics::PROPOSALS_FAILED_TOTAL,
        metrics::WAL_FSYNC_DURATION_SECONDS,
        metrics::WAL_WRITE_DURATION_SECONDS,
        metrics::READIES_PER_FSYNC,
        metrics::ENTRIES_PER_FSYNC,
        metrics::WAL_WRITE_BYTES_TOTAL,
        metrics::PERSIST_QUEUE_DEPTH,
        metrics::PEER_SENT_BYTES_TOTAL,
        metrics::PEER_RECEIVED_BYTES_TOTAL,
        metrics::PEER_ROUND_TRIP_TIME_SECONDS,
        metrics::SNAPSHOT_SAVE_DURATION_SECONDS,
        metrics::SNAPSHOT_COUNT,
        metrics::APPLY_DURATION_SECONDS,
    ];
    for metric in required {
        assert!(used.contains(metric), "no panel shows {metric}");
    }
    // Nothing declared is left off the dashboard.
    let unused: Vec<&str> = METRICS
        .iter()
        .map(|spec| spec.name)
        .filter(|name| !used.contains(name))
        .filter(|name| *name != metrics::PEER_SENT_MESSAGES_TOTAL)
        .collect();
    assert!(unused.is_empty(), "declared but on no panel: {unused:?}");
    // The up panel.
    assert!(
        exprs.iter().any(|(_, expr)| expr.starts_with("up{")),
        "no up panel"
    );
}

#[test]
fn every_alert_rule_uses_declared_metrics() {
    let rules = alert_rules();
    let mut exprs = Vec::new();
    let mut names = HashSet::new();
    for rule in &rules {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        assert!(names.insert(name.to_string()), "alert {name} twice");
        assert!(name.starts_with("Ringraft"), "{name}");
        let expr = rule["expr"].as_str().expect("expr");
        assert!(rule["for"].as_str().is_some(), "{name}: no `for`");
        let severity = rule["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation].as_str().is_some(),
                "{name}: no {annotation}"
            );
        }
        exprs.push((format!("alert {name}"), expr.to_string()));
    }
    let used = used_metrics(&exprs);
    for alert in [
        "RingraftNoLeader",
        "RingraftHighNumberOfLeaderChanges",
        "RingraftHighNumberOfFailedProposals",
        "RingraftHighFsyncDurations",
        "RingraftSlowApply",
    ] {
        assert!(names.contains(alert), "no alert {alert}");
    }
    for metric in [
        metrics::HAS_LEADER,
        metrics::LEADER_CHANGES_SEEN_TOTAL,
        metrics::PROPOSALS_FAILED_TOTAL,
        metrics::WAL_FSYNC_DURATION_SECONDS,
        metrics::SLOW_APPLY_TOTAL,
    ] {
        assert!(used.contains(metric), "no alert on {metric}");
    }
}

#[test]
fn dashboard_is_current_grafana_with_datasource_and_node_variables() {
    let dashboard = dashboard();
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(schema >= 36, "schemaVersion {schema}: older than Grafana 9");
    assert_eq!(dashboard["uid"], "ringraft");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for name in ["instance", "node"] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(v["includeAll"], true, "{name}");
        assert_eq!(v["allValue"], ALL, "{name}");
    }
    let mut ids = HashSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title}: no description"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap_or("");
            if !expr.starts_with("up{") {
                assert!(
                    expr.contains(r#"instance=~"$instance""#) && expr.contains(r#"node=~"$node""#),
                    "{title}: {expr} ignores the instance/node variables"
                );
            }
        }
    }
}
