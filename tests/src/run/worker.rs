//! The long-running processes of a run: `lucid-worker serve` and `lucid-coordinator watch`.

use std::time::Duration;

use serde_json::Value;

use super::TestRun;
use crate::{ProcessGuard, binary, free_port, metric_value, scrape, wait_until};

/// How long a worker may take to connect and start consuming.
const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The drain deadline the workers are started with.
pub const WORKER_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `lucid-worker serve`.
#[derive(Debug)]
pub struct Worker {
    /// The process.
    pub process: ProcessGuard,
    /// The port of `/metrics`, `/healthz` and `/readyz`.
    pub port: u16,
}

impl Worker {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its `/metrics` text.
    pub fn scrape(&self) -> String {
        scrape(&format!("{}/metrics", self.base_url()))
    }

    /// `lucid_worker_tasks_total{outcome}` from a fresh scrape (0 when absent).
    pub fn tasks(&self, outcome: &str) -> f64 {
        metric_value(
            &self.scrape(),
            "lucid_worker_tasks_total",
            &[("outcome", outcome)],
        )
        .unwrap_or(0.0)
    }

    /// The task ids of its `stored` log events (JSON logs), in order.
    pub fn stored_task_ids(&self) -> Vec<String> {
        self.process
            .stdout()
            .lines()
            .chain(self.process.stderr().lines())
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["fields"]["message"] == "stored")
            .filter_map(|event| event["fields"]["task_id"].as_str().map(str::to_string))
            .collect()
    }
}

/// A running `lucid-coordinator watch`.
#[derive(Debug)]
pub struct Watch {
    /// The process.
    pub process: ProcessGuard,
    /// Its port.
    pub port: u16,
}

impl Watch {
    /// `http://127.0.0.1:PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }
}

impl TestRun {
    /// environment, without waiting for it to be ready.
    pub fn start_worker(&self, name: &str, sets: &[&str], env: &[(&str, String)]) -> Worker {
        self.start_worker_with(name, sets, env, 4, &[])
    }

    /// [`TestRun::start_worker`] with images per batch `batch` and `extra` arguments of `serve` (an
    /// `--drain-timeout-secs` among them replaces the default [`WORKER_DRAIN_TIMEOUT`]).
    pub fn start_worker_with(
        &self,
        name: &str,
        sets: &[&str],
        env: &[(&str, String)],
        batch: usize,
        extra: &[&str],
    ) -> Worker {
        let port = free_port();
        let mut command = self.command(&binary("lucid-worker"));
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        command.arg("serve").args(self.spec_args());
        for set in sets {
            command.args(["--set", set]);
        }
        command.args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--device",
            "cpu",
            "--batch",
            &batch.to_string(),
            "--linger-ms",
            "300",
            "--worker-id",
            name,
            "--log-format",
            "json",
        ]);
        if !extra.contains(&"--drain-timeout-secs") {
            command.args([
                "--drain-timeout-secs",
                &WORKER_DRAIN_TIMEOUT.as_secs().to_string(),
            ]);
        }
        command.args(extra);
        Worker {
            process: ProcessGuard::spawn(name, command, self.dir.path()),
            port,
        }
    }

    /// Starts `lucid-worker serve` for this run on a free port (CPU, batch 4, linger 300 ms, drain
    /// timeout 60 s, JSON logs) with `sets` as extra overrides, and waits until `/readyz` answers 200
    /// (it consumes).
    pub fn spawn_worker(&self, name: &str, sets: &[&str]) -> Worker {
        let mut worker = self.start_worker(name, sets, &[]);
        self.wait_ready(&mut worker);
        worker
    }

    /// Waits until `worker` answers 200 on `/readyz` (it consumes); panics if it exits first.
    pub fn wait_ready(&self, worker: &mut Worker) {
        let name = worker.process.name().to_string();
        let ready_url = format!("{}/readyz", worker.base_url());
        wait_until(
            WORKER_READY_TIMEOUT,
            &format!("worker {name} to answer 200 on {ready_url}"),
            || {
                worker.process.assert_alive("before it was ready");
                self.services.get_status(&ready_url) == Some(200)
            },
        );
    }

    /// Starts `lucid-coordinator watch` for this run on a free port, refreshing every second, and
    /// waits until its `/metrics` has the run's expected-task gauge.
    pub fn spawn_watch(&self) -> Watch {
        let port = free_port();
        let mut command = self.command(&binary("lucid-coordinator"));
        command.arg("watch").args(self.spec_args()).args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval-secs",
            "1",
            "--rabbit-api",
            &self.services.rabbit_api,
        ]);
        let mut watch = Watch {
            process: ProcessGuard::spawn("coordinator-watch", command, self.dir.path()),
            port,
        };
        let url = watch.metrics_url();
        wait_until(
            Duration::from_secs(60),
            &format!("lucid-coordinator watch to export lucid_run_tasks_expected on {url}"),
            || {
                watch
                    .process
                    .assert_alive("before it exported the run's gauges");
                self.services
                    .http
                    .get(&url)
                    .send()
                    .and_then(|r| r.text())
                    .is_ok_and(|text| text.contains("lucid_run_tasks_expected{"))
            },
        );
        watch
    }
}
