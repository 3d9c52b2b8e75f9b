//! The test Prometheus: queries, label values, and the `file_sd` targets a test registers.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::Services;

impl Services {
    /// Waits up to `timeout` until `expr` evaluates to exactly one sample of value `value`.
    pub fn wait_prom_value(&self, expr: &str, value: f64, timeout: std::time::Duration) {
        crate::wait_until(
            timeout,
            &format!("Prometheus to report {expr} == {value}"),
            || {
                self.prom_query(expr)
                    .is_ok_and(|s| s.len() == 1 && s[0].value == value)
            },
        );
    }

    /// Evaluates `expr` now through the Prometheus HTTP API. `Err` carries the API's error (a PromQL
    /// syntax error, say); `Ok` the samples of a vector or scalar result.
    pub fn prom_query(&self, expr: &str) -> Result<Vec<PromSample>, String> {
        let response = self
            .http
            .get(format!("{}/api/v1/query", self.prometheus))
            .query(&[("query", expr)])
            .send()
            .map_err(|e| format!("Prometheus query {expr:?}: {e}"))?;
        let body: Value = response
            .json()
            .map_err(|e| format!("Prometheus query {expr:?}: undecodable answer: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("Prometheus query {expr:?} failed: {body}"));
        }
        let data = &body["data"];
        let sample = |metric: &Value, value: &Value| PromSample {
            metric: metric.clone(),
            value: value[1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN),
        };
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"]
                .as_array()
                .map(|samples| {
                    samples
                        .iter()
                        .map(|s| sample(&s["metric"], &s["value"]))
                        .collect()
                })
                .unwrap_or_default()),
            Some("scalar") => Ok(vec![sample(&Value::Null, &data["result"])]),
            _ => Err(format!(
                "Prometheus query {expr:?}: unexpected result {data}"
            )),
        }
    }

    /// The values of label `label` on series matching `selector` (Grafana's `label_values`).
    pub fn prom_label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/label/{label}/values", self.prometheus))
            .query(&[("match[]", selector)])
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("Prometheus label values of {label} for {selector}: {e}"));
        body["data"]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One sample of a Prometheus query result.
#[derive(Debug, Clone)]
pub struct PromSample {
    /// The series labels (`null` for a scalar).
    pub metric: Value,
    /// The value (NaN stays NaN).
    pub value: f64,
}

// ------------------------------------------------------------------------------ Prometheus targets

/// A Prometheus `file_sd` targets file in [`Services::prom_targets_dir`], removed on drop.
#[derive(Debug)]
pub struct PromTargets {
    path: PathBuf,
}

const TARGETS_PREFIX: &str = "lucid-e2e-";

impl PromTargets {
    /// Writes (atomically) one target group per `(port, job)`, each also labelled `e2e_run = run_id`
    /// so queries can pick this test's series. Files of earlier test processes that no longer run are
    /// removed first.
    pub fn register(services: &Services, run_id: &str, targets: &[(u16, &str)]) -> Self {
        let dir = &services.prom_targets_dir;
        remove_stale_targets(dir);
        let groups: Vec<Value> = targets
            .iter()
            .map(|(port, job)| {
                json!({
                    "targets": [format!("127.0.0.1:{port}")],
                    "labels": {"job": job, "e2e_run": run_id},
                })
            })
            .collect();
        let name = format!("{TARGETS_PREFIX}{}-{run_id}", std::process::id());
        let path = dir.join(format!("{name}.json"));
        let scratch = dir.join(format!("{name}.json.partial"));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&scratch)?;
            file.write_all(serde_json::to_string_pretty(&groups)?.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&scratch, &path)
        };
        write().unwrap_or_else(|e| panic!("cannot write targets file {}: {e}", path.display()));
        Self { path }
    }
}

impl Drop for PromTargets {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes `lucid-e2e-{pid}-….json` files whose test process is gone (a crashed earlier run).
fn remove_stale_targets(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TARGETS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
