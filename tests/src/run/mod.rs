//! The run under test: a sweep spec in a temp dir with a unique run id and queue names, and the
//! coordinator commands run against it.

mod spec;
mod worker;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use worker::{WORKER_DRAIN_TIMEOUT, Watch, Worker};

use crate::services::off_runtime;
use crate::{CommandOutput, ProcessGuard, Services, binary, tail, unique_name};

/// How long a one-shot coordinator command may take.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(120);

/// What a test's sweep spec renders.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Fixture models (`training_seed_01`, `training_seed_02`).
    pub models: Vec<String>,
    /// Further models, each `(id, TOML value)` written into `[models]` as given (a table naming a
    /// network, an `s3://` location).
    pub model_entries: Vec<(String, String)>,
    /// `layers` of the spec (`all`, `conv1,fc8`).
    pub layers: String,
    /// `channels` of the spec (`0-2`).
    pub channels: String,
    /// `render.steps`.
    pub steps: u32,
    /// `render.size`, the image side in pixels.
    pub size: u32,
    /// `views` of the spec (`channel`, `diversity:4`); none written when empty, so that the run
    /// renders the channel view.
    pub views: Vec<String>,
    /// `queue.prefetch` (a worker prefetches the larger of this and twice its batch).
    pub prefetch: u16,
    /// The body of a `[probe]` section (`images = "s3://…"`, …); none written when `None`.
    pub probe: Option<String>,
}

impl Default for SweepConfig {
    /// Both fixture models, every layer, channels 0-2 (48 tasks), 4 steps at 224 px, prefetch 4.
    fn default() -> Self {
        Self {
            models: vec!["training_seed_01".into(), "training_seed_02".into()],
            model_entries: Vec::new(),
            layers: "all".into(),
            channels: "0-2".into(),
            steps: 4,
            size: 224,
            views: Vec::new(),
            prefetch: 4,
            probe: None,
        }
    }
}

impl SweepConfig {
    /// One model (`training_seed_01`), conv1, channels `0..channels`, at `steps` steps (224 px).
    pub fn conv1(channels: u32, steps: u32, prefetch: u16) -> Self {
        Self {
            models: vec!["training_seed_01".into()],
            model_entries: Vec::new(),
            layers: "conv1".into(),
            channels: format!("0-{}", channels.saturating_sub(1)),
            steps,
            size: 224,
            views: Vec::new(),
            prefetch,
            probe: None,
        }
    }
}

/// The S3 bucket the tests store their renders in.
pub const BUCKET: &str = "lucid-e2e";
/// The storage prefix in [`BUCKET`].
pub const PREFIX: &str = "renders";

/// One test's sweep: a temp dir with its spec and logs, a unique run id and unique queue names. Drop
/// deletes the queues and the dead-letter exchange.
#[derive(Debug)]
pub struct TestRun {
    /// The services.
    pub services: Services,
    /// Temp dir (spec, process logs, scratch files).
    pub dir: tempfile::TempDir,
    /// The run id.
    pub run_id: String,
    /// The task queue.
    pub tasks_queue: String,
    /// The dead-letter exchange.
    pub dead_letter_exchange: String,
    /// The dead-letter queue.
    pub dead_letter_queue: String,
    /// The spec file.
    pub spec: PathBuf,
    /// Settings of the spec.
    pub config: SweepConfig,
    commands: AtomicU64,
}

impl TestRun {
    /// Writes the spec for `config` into a new temp dir and picks unique names from `tag`.
    pub fn new(services: &Services, tag: &str, config: SweepConfig) -> Self {
        let run_id = unique_name(tag);
        let dir = tempfile::Builder::new()
            .prefix(&format!("lucid-{run_id}-"))
            .tempdir()
            .expect("cannot create a temp dir");
        let run = Self {
            services: services.clone(),
            tasks_queue: format!("lucid.{run_id}.tasks"),
            dead_letter_exchange: format!("lucid.{run_id}.dlx"),
            dead_letter_queue: format!("lucid.{run_id}.dead"),
            spec: dir.path().join("sweep.toml"),
            run_id,
            dir,
            config,
            commands: AtomicU64::new(0),
        };
        let text = spec::spec_text(&run);
        std::fs::write(&run.spec, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", run.spec.display()));
        run
    }

    /// `--spec SPEC --set run_id=… --set queue.…=…`: the arguments naming this run.
    pub fn spec_args(&self) -> Vec<String> {
        let mut args = vec!["--spec".to_string(), self.spec.display().to_string()];
        for set in [
            format!("run_id={}", self.run_id),
            format!("queue.tasks={}", self.tasks_queue),
            format!("queue.dead_letter_exchange={}", self.dead_letter_exchange),
            format!("queue.dead_letter_queue={}", self.dead_letter_queue),
        ] {
            args.push("--set".into());
            args.push(set);
        }
        args
    }

    /// A command running `program` as a process of this run: with the services' credentials and
    /// addresses in its environment ([`Services::process_env`]), none of the caller's `LUCID__…`
    /// spec overrides, and the run's folder as its working directory.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        // spec overrides from the caller's environment must not leak into the test's spec
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LUCID__") {
                command.env_remove(key);
            }
        }
        command.envs(self.services.process_env());
        command.current_dir(self.dir.path());
        command
    }

    /// Runs `lucid-coordinator SUBCOMMAND <spec args> EXTRA…` to completion (at most two minutes).
    pub fn coordinator(&self, subcommand: &str, extra: &[&str]) -> CommandOutput {
        self.coordinator_with_sets(subcommand, &[], extra)
    }

    /// Like [`TestRun::coordinator`] with more `--set` overrides.
    pub fn coordinator_with_sets(
        &self,
        subcommand: &str,
        sets: &[&str],
        extra: &[&str],
    ) -> CommandOutput {
        self.coordinator_with_env(subcommand, sets, extra, &[])
    }

    /// `submit`; panics unless it succeeds, returns its output.
    pub fn submit(&self) -> CommandOutput {
        let output = self.coordinator("submit", &[]);
        output.expect_success("lucid-coordinator submit");
        output
    }

    /// How many tasks `plan` counts for this run (its `--json` document's `total_tasks`).
    pub fn expected_tasks(&self) -> u64 {
        let plan = self.coordinator("plan", &["--json"]);
        let document = json_document(plan.expect_success("lucid-coordinator plan --json"));
        document["total_tasks"]
            .as_u64()
            .unwrap_or_else(|| panic!("no total_tasks in the plan document:\n{document}"))
    }

    /// Polls `verify` until it exits 0 (every task has one PNG and one sidecar, the manifest is
    /// there); returns its report. Panics after `timeout` with the last report.
    pub fn wait_verified(&self, timeout: Duration) -> String {
        self.wait_verified_with_env(timeout, &[])
    }

    /// Starts `lucid-worker serve` like [`TestRun::spawn_worker`] with `env` added to its
    /// A task message body of this run as `lucid-coordinator submit` would publish it (schema 1),
    /// built by hand from the wire format of `proto/src/task.rs`.
    pub fn task_json(&self, seed: &str, layer: &str, channel: u32, model: &Path) -> Value {
        json!({
            "schema_version": 1,
            "task_id": format!("{}/{seed}/{layer}/{channel:04}", self.run_id),
            "run_id": self.run_id,
            "seed": seed,
            "layer": layer,
            "channel": channel,
            "settings": {
                "steps": self.config.steps,
                "size": self.config.size,
                "objective": "channel",
                "run_seed": 0,
                "param": "fft",
                "decorrelate": true,
                "transforms": "standard",
                "lr": 0.05,
                "precision": "fp32",
            },
            "model": model.display().to_string(),
        })
    }
}

impl Drop for TestRun {
    /// Deletes the run's queues and exchange, also when the run lives in an async test.
    fn drop(&mut self) {
        off_runtime(|| {
            self.services.delete_queue(&self.tasks_queue);
            self.services.delete_queue(&self.dead_letter_queue);
            self.services.delete_exchange(&self.dead_letter_exchange);
        });
    }
}

/// The JSON document a coordinator command printed with `--json`.
///
/// # Panics
/// When `stdout` is not one JSON object.
pub fn json_document(stdout: &str) -> Value {
    serde_json::from_str::<Value>(stdout)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| panic!("the command did not print one JSON document:\n{stdout}"))
}

// ------------------------------------------------------------- per-process environment (TLS tests)
//
// Additive helpers for tests whose processes need an environment other than the services' one
// (tests/tls.rs sets and removes `LUCID_CA_FILE`). The spec's `storage.endpoint` and `queue.uri`,
// and the `LUCID_AMQP_URI` every process gets, come from the `Services` a `TestRun` is built from:
// to point a run elsewhere (e.g. at TLS front-ends), build it from a clone of `Services` whose
// `amqp_uri` and `s3_endpoint` are changed, or pass `--set storage.endpoint=…` in `sets`.

/// One change to a child process's environment, applied after the services' variables:
/// `(name, Some(value))` sets `name`, `(name, None)` removes it.
pub type EnvChange<'a> = (&'a str, Option<&'a str>);

impl TestRun {
    /// [`TestRun::command`] for workspace binary `binary_name`, with `env` applied.
    fn command_with_env(&self, binary_name: &str, env: &[EnvChange<'_>]) -> Command {
        let mut command = self.command(&binary(binary_name));
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    }

    /// Like [`TestRun::coordinator_with_sets`], with `env` applied to the process's environment.
    pub fn coordinator_with_env(
        &self,
        subcommand: &str,
        sets: &[&str],
        extra: &[&str],
        env: &[EnvChange<'_>],
    ) -> CommandOutput {
        let mut command = self.command_with_env("lucid-coordinator", env);
        command.arg(subcommand).args(self.spec_args());
        for set in sets {
            command.args(["--set", set]);
        }
        command.args(extra);
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        ProcessGuard::spawn(
            &format!("coordinator-{subcommand}-{n}"),
            command,
            self.dir.path(),
        )
        .finish(COORDINATOR_TIMEOUT)
    }

    /// Like [`TestRun::wait_verified`], running `verify` with `env` applied.
    pub fn wait_verified_with_env(&self, timeout: Duration, env: &[EnvChange<'_>]) -> String {
        let started = Instant::now();
        loop {
            let output = self.coordinator_with_env("verify", &[], &[], env);
            if output.status.success() {
                return output.stdout;
            }
            let last = format!("{}{}", tail(&output.stdout, 15), tail(&output.stderr, 5));
            assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?} waiting for `lucid-coordinator verify` of run {} to pass; last report:\n{last}",
                self.run_id
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}
