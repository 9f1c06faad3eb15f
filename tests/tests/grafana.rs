//! The Grafana dashboard (packaging/grafana/hotspotd.json) against what a running hotspotd
//! serves: every metric its queries name is one `/metrics` has (Debian packages no Grafana to
//! load it into, so the names are what is checked), `rate` and `increase` only take counters,
//! `_bucket` only histograms, and the dashboard is one Grafana imports: panels with distinct
//! ids, the Prometheus data source as an import input, queries that parse as far as their
//! brackets go. Needs root (the daemon's namespaces and eBPF).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result, bail, ensure};
use hotspotd_tests::http::{exchange, request};
use hotspotd_tests::{Daemon, Lan, workspace_root};
use serde_json::Value;

/// The data source every panel and query uses: the input Grafana asks for on import.
const DATA_SOURCE: &str = "${DS_PROMETHEUS}";

/// What `/metrics` serves: each family's name and type, from its `# TYPE` line (written
/// whether or not the family has a sample now).
fn served(daemon: &Daemon) -> Result<BTreeMap<String, String>> {
    let answer = exchange(daemon.socket(), &request("GET", "/metrics", &[], b""))?;
    ensure!(answer.status == 200, "GET /metrics: {answer:?}");
    let mut families = BTreeMap::new();
    for line in answer.body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').context("a TYPE line names a type")?;
            families.insert(name.to_owned(), kind.to_owned());
        }
    }
    ensure!(!families.is_empty(), "no families in /metrics");
    Ok(families)
}

/// Every `hotspotd_…` name in `text`, with the function it is the first argument of, if any
/// (`rate(hotspotd_x…` → `("hotspotd_x", Some("rate"))`).
fn names(text: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("hotspotd_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let before = rest[..at].trim_end();
        let function = before.strip_suffix('(').map(|head| {
            head.chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        });
        rest = &rest[at + name.len()..];
        found.push((name, function));
    }
    found
}

/// Whether `(`, `{` and `[` close in order, outside quoted strings.
fn balanced(expr: &str) -> bool {
    let mut open = Vec::new();
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '(' | '{' | '[' => open.push(c),
            ')' | '}' | ']' => {
                let want = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if open.pop() != Some(want) {
                    return false;
                }
            }
            _ => {}
        }
    }
    open.is_empty() && !quoted
}

/// Every panel, those inside collapsed rows too.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Checks one query's metric names against the served families.
fn check_query(
    expr: &str,
    families: &BTreeMap<String, String>,
    used: &mut BTreeSet<String>,
) -> Result<()> {
    ensure!(balanced(expr), "brackets do not close: {expr}");
    for (name, function) in names(expr) {
        let (family, kind) = if let Some(kind) = families.get(&name) {
            (name.clone(), kind.as_str())
        } else if let Some(base) = name.strip_suffix("_bucket")
            && families.get(base).map(String::as_str) == Some("histogram")
        {
            (base.to_owned(), "bucket")
        } else {
            bail!("{name} in `{expr}` is not served by /metrics (families: {families:?})");
        };
        if let Some(function @ ("rate" | "increase" | "irate")) = function.as_deref() {
            ensure!(
                matches!(kind, "counter" | "bucket"),
                "{function}({name}) in `{expr}`: {name} is a {kind}, not a counter"
            );
        }
        used.insert(family);
    }
    Ok(())
}

#[test]
fn the_grafana_dashboard_asks_only_for_metrics_hotspotd_serves() -> Result<()> {
    let lan = Lan::new(1)?;
    let daemon = Daemon::start(&lan, &[])?;
    // A client with a session, so the per-client families have samples as well.
    daemon.connect_for_an_hour(&lan.clients[0].mac)?;
    let families = served(&daemon)?;

    let path = workspace_root().join("packaging/grafana/hotspotd.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let dashboard: Value = serde_json::from_str(&text).context("the dashboard is JSON")?;
    ensure!(
        dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
            && dashboard["__inputs"][0]["pluginId"] == "prometheus",
        "the Prometheus data source is asked for on import"
    );
    ensure!(dashboard["uid"] == "hotspotd" && dashboard["title"] == "hotspotd");

    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let id = panel["id"].as_u64().context("every panel has an id")?;
        ensure!(ids.insert(id), "panel id {id} twice");
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or_default();
        ensure!(
            panel["datasource"]["uid"] == DATA_SOURCE,
            "{title}: data source"
        );
        let grid = &panel["gridPos"];
        ensure!(
            grid["w"].as_u64().is_some_and(|w| (1..=24).contains(&w))
                && grid["x"]
                    .as_u64()
                    .is_some_and(|x| x + grid["w"].as_u64().unwrap_or(0) <= 24),
            "{title}: gridPos {grid}"
        );
        let targets = panel["targets"].as_array().context("targets")?;
        ensure!(!targets.is_empty(), "{title} has no query");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            ensure!(
                ref_ids.insert(target["refId"].as_str().unwrap_or_default()),
                "{title}: refId twice"
            );
            ensure!(
                target["datasource"]["uid"] == DATA_SOURCE,
                "{title}: data source of a query"
            );
            let expr = target["expr"].as_str().context("a query")?;
            check_query(expr, &families, &mut used).with_context(|| format!("panel {title}"))?;
            queries += 1;
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = variable["query"]["query"]
            .as_str()
            .context("a variable's query")?;
        check_query(query, &families, &mut used)?;
    }
    // What an operator looks at first is on it.
    for family in [
        "hotspotd_sessions",
        "hotspotd_client_bytes_total",
        "hotspotd_gate_drops_total",
        "hotspotd_store_degraded",
        "hotspotd_map_entries",
        "hotspotd_save_seconds",
    ] {
        ensure!(used.contains(family), "the dashboard shows no {family}");
    }
    let unused: Vec<&String> = families
        .keys()
        .filter(|name| !used.contains(*name))
        .collect();
    eprintln!(
        "{queries} queries over {} of the {} families /metrics serves; not shown: {unused:?}",
        used.len(),
        families.len()
    );
    Ok(())
}
