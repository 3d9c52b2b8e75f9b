//! The checks every fault test ends with: the run's invariants and no secret in any log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::run::json_document;
use crate::{Services, TestRun, Watch, Worker, tail, wait_until};

/// A RabbitMQ user of one test with a password no other test knows, so that a scan of the test's
/// logs for it finds only leaks. Deleted on drop.
#[derive(Debug)]
pub struct PrivateAmqpUser {
    services: Services,
    /// The user name.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl Drop for PrivateAmqpUser {
    fn drop(&mut self) {
        let _ = self
            .services
            .rabbit(reqwest::Method::DELETE, &format!("users/{}", self.user))
            .send();
    }
}

impl TestRun {
    /// Creates a RabbitMQ user with a fresh random password (tagged `monitoring`, full permissions
    /// on `/`) and makes every process of this run connect as it.
    pub fn use_private_amqp_user(&mut self) -> PrivateAmqpUser {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let user = format!("u-{}", self.run_id);
        let password = format!("amqp-pw-{nanos:x}-{:x}", std::process::id());
        self.services.rabbit_put(
            &format!("users/{user}"),
            &json!({"password": password, "tags": "monitoring"}),
            &format!("create user {user}"),
        );
        self.services.rabbit_put(
            &format!("permissions/%2f/{user}"),
            &json!({"configure": ".*", "write": ".*", "read": ".*"}),
            &format!("grant {user}"),
        );
        let host = self.services.amqp_uri_without_credentials();
        let (scheme, rest) = host.split_once("://").expect("an AMQP URI has a scheme");
        self.services.amqp_uri = format!("{scheme}://{user}:{password}@{rest}");
        PrivateAmqpUser {
            services: self.services.clone(),
            user,
            password,
        }
    }

    /// Every file in the run's folder (spec, stdout and stderr of every process), with its text.
    pub fn log_files(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
                }
            }
        }
        out
    }

    /// Panics if any file of the run's folder holds one of `secrets` (raw, or percent-encoded as in a
    /// URI); returns how many files and bytes were scanned.
    pub fn assert_no_secrets_in_logs(&self, secrets: &[&str]) -> (usize, usize) {
        let files = self.log_files();
        let mut bytes = 0;
        for (path, text) in &files {
            bytes += text.len();
            for secret in secrets {
                assert!(!secret.is_empty(), "an empty secret cannot be scanned for");
                let encoded: String = secret
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                for form in [secret.to_string(), encoded] {
                    assert!(
                        !text.contains(&form),
                        "{} contains a secret (of length {})",
                        path.display(),
                        secret.len()
                    );
                }
            }
        }
        assert!(
            files
                .iter()
                .any(|(p, _)| p.extension().is_some_and(|e| e == "stderr")),
            "no process logs found in {}",
            self.dir.path().display()
        );
        (files.len(), bytes)
    }

    /// The invariant check after a sweep (with or without faults): `lucid-coordinator verify`
    /// passes with the run's dead letters exactly `expected_dead` (message ids) and, with `watch`,
    /// with the watch's gauges agreeing; it is polled until it passes (the watch refreshes every
    /// second) or `timeout`, and its `--json` document must count every planned task complete. Then
    /// the task queue must drain to empty (every redelivery settled), and the workers' counters must
    /// agree: `dead_lettered` sums to the dead letters, and `ok` plus `skipped_existing` cover every
    /// task. Returns verify's text report, for the test's log.
    pub fn assert_invariants(
        &self,
        expected_dead: &[String],
        watch: Option<&Watch>,
        workers: &[&Worker],
        timeout: Duration,
    ) -> String {
        let mut args = vec!["--expect-dead".to_string()];
        if !expected_dead.is_empty() {
            args.push(expected_dead.join(","));
        }
        if let Some(watch) = watch {
            args.push("--metrics".into());
            args.push(watch.metrics_url());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let document = self.verify_until_ok(&args, timeout);
        // redeliveries (of tasks whose ack was lost) must all be settled too: nothing stays queued
        wait_until(
            timeout,
            &format!("{} to be empty (ready + unacked = 0)", self.tasks_queue),
            || {
                self.services
                    .queue_info(&self.tasks_queue)
                    .is_some_and(|q| q.messages == 0)
            },
        );
        let expected = self.expected_tasks();
        assert_eq!(
            (document["complete"].as_u64(), document["expected"].as_u64()),
            (Some(expected), Some(expected)),
            "verify does not count all {expected} planned tasks complete: {document}"
        );
        let mut dead: Vec<&str> = document["dead_letters"]
            .as_array()
            .unwrap_or_else(|| panic!("verify read no dead letters: {document}"))
            .iter()
            .filter_map(|letter| letter["id"].as_str())
            .collect();
        dead.sort_unstable();
        let mut want: Vec<&str> = expected_dead.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(dead, want, "the run's dead letters: {document}");
        if !workers.is_empty() {
            assert_worker_counters(workers, expected_dead.len(), expected);
        }
        self.coordinator("verify", &args).stdout
    }

    /// Runs `verify --json ARGS` every second until it exits 0 and returns its document; panics
    /// with the last one after `timeout`.
    fn verify_until_ok(&self, args: &[&str], timeout: Duration) -> Value {
        let args: Vec<&str> = std::iter::once("--json")
            .chain(args.iter().copied())
            .collect();
        let started = Instant::now();
        loop {
            let output = self.coordinator("verify", &args);
            if output.status.success() {
                return json_document(&output.stdout);
            }
            assert!(
                started.elapsed() < timeout,
                "invariants of run {} do not hold after {timeout:?}:\n{}{}",
                self.run_id,
                tail(&output.stdout, 30),
                tail(&output.stderr, 10)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The workers' counters agree with the run: `dead_lettered` sums to the `dead` dead letters, and
/// `ok` plus `skipped_existing` cover all `tasks`.
fn assert_worker_counters(workers: &[&Worker], dead: usize, tasks: u64) {
    let sum = |outcome: &str| workers.iter().map(|w| w.tasks(outcome)).sum::<f64>();
    assert_eq!(
        sum("dead_lettered"),
        dead as f64,
        "the workers' dead_lettered counters and the dead-letter queue disagree"
    );
    let settled = sum("ok") + sum("skipped_existing");
    assert!(
        settled >= tasks as f64,
        "the workers' ok + skipped_existing ({settled}) do not cover the {tasks} tasks"
    );
}
