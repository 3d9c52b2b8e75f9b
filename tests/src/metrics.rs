//! The `/metrics` text of a process: scraping it and reading samples.

use std::collections::BTreeSet;

use crate::services::HTTP_TIMEOUT;

/// `GET url` with a fresh client; the `/metrics` text of a process.
pub fn scrape(url: &str) -> String {
    let client = reqwest::blocking::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("cannot build an HTTP client");
    crate::services::success(client.get(url).send(), &format!("scrape {url}"))
        .text()
        .unwrap_or_else(|e| panic!("scrape {url}: reading the body: {e}"))
}

/// The value of the sample `name` whose labels include every `(label, value)` of `labels` in a
/// Prometheus text exposition; `None` when there is none.
pub use lucid_telemetry::sample_value as metric_value;

/// The sample names (`lucid_worker_phase_seconds_bucket`, …) of a Prometheus text exposition.
pub fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_matches_name_and_labels() {
        let text = "# HELP x y\nlucid_worker_tasks_total{outcome=\"ok\"} 7\nlucid_worker_tasks_total{outcome=\"failed\"} 1\nlucid_worker_in_flight 2\n";
        assert_eq!(
            metric_value(text, "lucid_worker_tasks_total", &[("outcome", "ok")]),
            Some(7.0)
        );
        assert_eq!(metric_value(text, "lucid_worker_in_flight", &[]), Some(2.0));
        assert_eq!(metric_value(text, "lucid_worker_in", &[]), None);
        assert_eq!(
            sample_names(text).into_iter().collect::<Vec<_>>(),
            ["lucid_worker_in_flight", "lucid_worker_tasks_total"]
        );
    }
}
