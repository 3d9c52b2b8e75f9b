//! Observability of a real sweep (issue 6): Prometheus scrapes two workers and the coordinator's
//! `watch`; every metric the Grafana dashboard and the alert rules use is exported by a live process,
//! and every dashboard query returns data from the real Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use lucid_e2e::{
    PromTargets, Services, SweepConfig, TestRun, dashboard_exprs, promql_metric_names, rule_exprs,
    sample_names, scrape, wait_for, wait_until,
};
use serde_json::Value;

const DASHBOARD: &str = "deploy/grafana/lucid-sweep.json";
const ALERTS: &str = "deploy/prometheus/lucid-alerts.yaml";
const TASKS: f64 = 48.0;

fn read(relative: &str) -> String {
    let path = lucid_e2e::workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Grafana's `label_values(METRIC, LABEL)` template queries of the dashboard, as (metric, label).
fn label_values_queries(dashboard: &Value) -> Vec<(String, String)> {
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    variables
        .iter()
        .filter_map(|v| {
            let query = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())?;
            let inner = query
                .trim()
                .strip_prefix("label_values(")?
                .strip_suffix(')')?;
            let (metric, label) = inner.rsplit_once(',')?;
            Some((metric.trim().to_string(), label.trim().to_string()))
        })
        .collect()
}

/// A dashboard query with Grafana's variables replaced for an instant query in a short test.
fn instantiate(expr: &str, run_id: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("${run}", run_id)
        .replace("$run", run_id)
}

#[test]
fn prometheus_scrapes_a_two_worker_sweep_and_every_dashboard_query_has_data() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let started = Instant::now();
    let run = TestRun::new(&services, "observe", SweepConfig::default());
    let watch = run.spawn_watch();
    let worker_a = run.spawn_worker("worker-a", &[]);
    let worker_b = run.spawn_worker("worker-b", &[]);
    let _targets = PromTargets::register(
        &services,
        &run.run_id,
        &[
            (worker_a.port, "lucid-worker"),
            (worker_b.port, "lucid-worker"),
            (watch.port, "lucid-coordinator"),
        ],
    );
    let mine = format!("e2e_run=\"{}\"", run.run_id);
    // scraped before the sweep starts, so rates and derivatives see it rise from zero
    wait_until(
        Duration::from_secs(30),
        "Prometheus to scrape both workers and the watch (3 targets with up == 1)",
        || {
            services
                .prom_query(&format!("up{{{mine}}} == 1"))
                .is_ok_and(|samples| samples.len() == 3)
        },
    );

    let submitted = run.coordinator("submit", &["--json"]);
    let submitted = lucid_e2e::run::json_document(submitted.expect_success("submit --json"));
    assert_eq!(
        (&submitted["published"], &submitted["expected"]),
        (&48.into(), &48.into()),
        "{submitted}"
    );
    run.wait_verified(Duration::from_secs(240));

    // the workers stay up until Prometheus has their final counters
    let ok_query = format!("sum(lucid_worker_tasks_total{{outcome=\"ok\", {mine}}})");
    services.wait_prom_value(&ok_query, TASKS, Duration::from_secs(60));
    let per_worker = services
        .prom_query(&format!(
            "sum by (instance) (lucid_worker_tasks_total{{outcome=\"ok\", {mine}}})"
        ))
        .expect("per-instance query");
    assert_eq!(
        per_worker.len(),
        2,
        "both workers are scraped: {per_worker:?}"
    );
    assert!(
        per_worker.iter().all(|s| s.value > 0.0),
        "both workers rendered: {per_worker:?}"
    );
    let completed = format!(
        "lucid_run_tasks_completed{{run=\"{}\", {mine}}}",
        run.run_id
    );
    // from the watch
    services.wait_prom_value(&completed, TASKS, Duration::from_secs(30));

    // every metric name the dashboard and the alerts use is exported by a live process
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    let panel_exprs = dashboard_exprs(&dashboard);
    let variables = label_values_queries(&dashboard);
    let alert_exprs = rule_exprs(&read(ALERTS));
    assert!(
        panel_exprs.len() >= 10 && !alert_exprs.is_empty() && !variables.is_empty(),
        "the scanner found too little: {} panel queries, {} alert rules, {} variables",
        panel_exprs.len(),
        alert_exprs.len(),
        variables.len()
    );
    let mut used: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (file, exprs) in [(DASHBOARD, &panel_exprs), (ALERTS, &alert_exprs)] {
        for expr in exprs.iter() {
            for name in promql_metric_names(expr) {
                used.entry(name).or_default().insert(file);
            }
        }
    }
    for (metric, _) in &variables {
        used.entry(metric.clone()).or_default().insert(DASHBOARD);
    }
    let exported: BTreeSet<String> = sample_names(&worker_a.scrape())
        .into_iter()
        .chain(sample_names(&scrape(&watch.metrics_url())))
        .collect();
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| name.as_str() != "up" && !exported.contains(name.as_str()))
        .map(|(name, files)| format!("{name} (used in {files:?})"))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics used by the dashboard or the alerts that no live /metrics exports: {missing:?}\nexported: {exported:?}"
    );
    assert!(
        used.keys().any(|name| name.starts_with("lucid_worker_"))
            && used.keys().any(|name| name.starts_with("lucid_run_")),
        "the scanner should find worker and run metrics: {used:?}"
    );
    // `up` is written by Prometheus itself, per scraped target
    if used.contains_key("up") {
        let up = services
            .prom_query(&format!("up{{{mine}}}"))
            .expect("up query");
        assert!(
            up.len() == 3 && up.iter().all(|s| s.value == 1.0),
            "up of the three targets: {up:?}"
        );
    }

    // every alert expression is valid PromQL (alerts are quiet on a healthy run, so no data needed)
    for expr in &alert_exprs {
        if let Err(error) = services.prom_query(expr) {
            panic!("alert expression of {ALERTS} rejected by Prometheus: {error}");
        }
    }

    // every dashboard variable and panel query returns data for this run. Rates use a 1m window
    // (Grafana's $__rate_interval); they need a few scrapes, hence the retries.
    for (metric, label) in &variables {
        let values = services.prom_label_values(label, metric);
        assert!(
            values.contains(&run.run_id),
            "variable label_values({metric}, {label}) should offer run {}: {values:?}",
            run.run_id
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for expr in &panel_exprs {
        let query = instantiate(expr, &run.run_id);
        let remaining = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let samples = wait_for(
            remaining,
            &format!("dashboard query {query:?} to return a non-empty result"),
            || match services.prom_query(&query) {
                Ok(samples) if !samples.is_empty() => Some(samples),
                Ok(_) => None,
                Err(error) => panic!("dashboard query rejected by Prometheus: {error}"),
            },
        );
        if expr.starts_with("100 * sum(lucid_run_tasks_completed") {
            assert_eq!(
                samples[0].value, 100.0,
                "run progress of a finished run: {query}"
            );
        }
    }
    eprintln!(
        "observed sweep took {:?} ({} panel queries, {} alert rules, metric names {:?})",
        started.elapsed(),
        panel_exprs.len(),
        alert_exprs.len(),
        used.keys().collect::<Vec<_>>()
    );
}
