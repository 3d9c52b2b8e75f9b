//! Support for the end-to-end tests: locating binaries, fixtures and the test services, and driving
//! the real `lucid-worker` and `lucid-coordinator` processes against RabbitMQ, SeaweedFS and
//! Prometheus.
//!
//! The services come from the `LUCID_TEST_*` variables that `scripts/services.sh env` prints (`make
//! test` exports them). Without them a test prints a loud message and passes, unless `CI` is set, in
//! which case it fails: CI always provides the services.
//!
//! Each test builds its own [`TestRun`] (temp dir, spec, run id, queue names, all unique) and keeps
//! every process it starts in a [`ProcessGuard`], which kills it on drop. Declare the [`TestRun`]
//! before the processes: locals drop in reverse order, so the processes stop before the run deletes
//! its queues (a worker that is still running would declare them again).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Timeout of every HTTP request the tests make.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a one-shot coordinator command may take.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a worker may take to connect and start consuming.
const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The RabbitMQ virtual host of the test broker (`/`), as the management API spells it.
const VHOST: &str = "%2f";

// ----------------------------------------------------------------------------------------- paths

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in a workspace folder")
        .to_path_buf()
}

/// The checkpoint folder of a fixture seed (`training_seed_01` or `training_seed_02`).
pub fn fixture_model(seed: &str) -> PathBuf {
    workspace_root().join("fixtures/alexnet_small").join(seed)
}

/// `target/<profile>`: the folder holding this test executable's `deps/` folder, where cargo puts the
/// workspace binaries.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot locate the test executable");
    let deps = exe.parent().expect("the test executable has a folder");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has a parent folder")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The path of workspace binary `name` (`lucid-worker`, `lucid-coordinator`) next to this test
/// executable. When it is missing (e.g. `cargo test -p lucid-e2e` alone), both binaries are built
/// once with `cargo build`; binaries that exist are used as they are.
pub fn binary(name: &str) -> PathBuf {
    static BUILD: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = profile_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        return path;
    }
    let built = BUILD.get_or_init(|| build_binaries(&dir));
    if let Err(error) = built {
        panic!(
            "{} is missing and building it failed: {error}\n\
             build the binaries first: cargo build -p lucid-worker -p lucid-coordinator --bins \
             (LIBTORCH must point at libtorch: export LIBTORCH=$(scripts/install-libtorch.sh))",
            path.display()
        );
    }
    assert!(
        path.is_file(),
        "{} is still missing after `cargo build -p lucid-worker -p lucid-coordinator --bins`",
        path.display()
    );
    path
}

fn build_binaries(profile_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .args(["-p", "lucid-worker", "-p", "lucid-coordinator", "--bins"]);
    if let Some(target_dir) = profile_dir.parent() {
        command.arg("--target-dir").arg(target_dir);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    eprintln!("lucid-e2e: building the binaries: {command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} exited with {status}"))
    }
}

// -------------------------------------------------------------------------------------- services

/// The test services, from the environment `scripts/services.sh env` sets up.
#[derive(Debug, Clone)]
pub struct Services {
    /// AMQP URI with credentials.
    pub amqp_uri: String,
    /// RabbitMQ management API base URL.
    pub rabbit_api: String,
    /// Management API user.
    pub rabbit_user: String,
    /// Management API password.
    pub rabbit_password: String,
    /// S3 endpoint (SeaweedFS).
    pub s3_endpoint: String,
    /// S3 access key.
    pub s3_access_key: String,
    /// S3 secret key.
    pub s3_secret_key: String,
    /// Prometheus base URL.
    pub prometheus: String,
    /// Prometheus `file_sd` folder (scraped every second).
    pub prom_targets_dir: PathBuf,
    http: reqwest::blocking::Client,
}

const SERVICE_VARS: [&str; 9] = [
    "LUCID_TEST_AMQP_URI",
    "LUCID_TEST_RABBIT_API",
    "LUCID_TEST_RABBIT_USER",
    "LUCID_TEST_RABBIT_PASSWORD",
    "LUCID_TEST_S3_ENDPOINT",
    "LUCID_TEST_S3_ACCESS_KEY",
    "LUCID_TEST_S3_SECRET_KEY",
    "LUCID_TEST_PROMETHEUS",
    "LUCID_TEST_PROM_TARGETS_DIR",
];

impl Services {
    /// The services named by the `LUCID_TEST_*` variables. When some are missing: panics if `CI` is
    /// set, else prints a loud message naming them and returns `None` (the caller returns, passing).
    pub fn from_env() -> Option<Self> {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let missing: Vec<&str> = SERVICE_VARS
            .iter()
            .copied()
            .filter(|name| get(name).is_none())
            .collect();
        if !missing.is_empty() {
            let message = format!(
                "the end-to-end tests need the test services, but {} not set; start them and export \
                 their settings with: scripts/services.sh start all && source <(scripts/services.sh env) \
                 (or run `make test`)",
                missing.join(", ") + if missing.len() == 1 { " is" } else { " are" }
            );
            if std::env::var_os("CI").is_some() {
                panic!("{message}");
            }
            eprintln!(
                "\n{bar}\nSKIPPED: {message}\n{bar}\n",
                bar = "!".repeat(100)
            );
            return None;
        }
        let var = |name: &str| get(name).unwrap_or_default();
        Some(Self {
            amqp_uri: var("LUCID_TEST_AMQP_URI"),
            rabbit_api: var("LUCID_TEST_RABBIT_API")
                .trim_end_matches('/')
                .to_string(),
            rabbit_user: var("LUCID_TEST_RABBIT_USER"),
            rabbit_password: var("LUCID_TEST_RABBIT_PASSWORD"),
            s3_endpoint: var("LUCID_TEST_S3_ENDPOINT"),
            s3_access_key: var("LUCID_TEST_S3_ACCESS_KEY"),
            s3_secret_key: var("LUCID_TEST_S3_SECRET_KEY"),
            prometheus: var("LUCID_TEST_PROMETHEUS")
                .trim_end_matches('/')
                .to_string(),
            prom_targets_dir: PathBuf::from(var("LUCID_TEST_PROM_TARGETS_DIR")),
            http: reqwest::blocking::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("cannot build an HTTP client"),
        })
    }

    /// The AMQP URI without user and password (what a spec may hold).
    pub fn amqp_uri_without_credentials(&self) -> String {
        match self.amqp_uri.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{host}")
            }
            None => self.amqp_uri.clone(),
        }
    }

    /// The environment every lucid process of a test gets: credentials and service addresses.
    fn process_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LUCID_AMQP_URI", self.amqp_uri.clone()),
            ("LUCID_S3_ACCESS_KEY_ID", self.s3_access_key.clone()),
            ("LUCID_S3_SECRET_ACCESS_KEY", self.s3_secret_key.clone()),
            ("LUCID_RABBIT_API", self.rabbit_api.clone()),
            ("LUCID_LOG", "info".into()),
            ("RUST_LOG", "info".into()),
            ("NO_COLOR", "1".into()),
        ]
    }

    // ---- RabbitMQ management API

    fn rabbit(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, format!("{}/api/{path}", self.rabbit_api))
            .basic_auth(&self.rabbit_user, Some(&self.rabbit_password))
    }

    /// PUTs `body` to the management API's `path`; panics naming `what` unless it succeeds.
    fn rabbit_put(&self, path: &str, body: &Value, what: &str) {
        let response = self
            .rabbit(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .unwrap_or_else(|e| panic!("management API: {what}: {e}"));
        assert!(
            response.status().is_success(),
            "management API: {what} answered {}",
            response.status()
        );
    }

    /// Counters of queue `name` from the management API (a few seconds stale), `None` when the queue
    /// does not exist.
    pub fn queue_info(&self, name: &str) -> Option<QueueInfo> {
        let response = self
            .rabbit(reqwest::Method::GET, &format!("queues/{VHOST}/{name}"))
            .send()
            .unwrap_or_else(|e| panic!("management API: GET queue {name}: {e}"));
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let body: Value = json_body(response, &format!("GET queue {name}"));
        let count = |field: &str| body.get(field).and_then(Value::as_u64).unwrap_or(0);
        Some(QueueInfo {
            messages: count("messages"),
            ready: count("messages_ready"),
            unacked: count("messages_unacknowledged"),
            consumers: count("consumers"),
        })
    }

    /// Publishes `payload` to `queue` through the default exchange as a persistent message with
    /// `message_id`; panics unless the broker routed it.
    pub fn publish_raw(&self, queue: &str, message_id: &str, payload: &str) {
        let body = json!({
            "properties": {"message_id": message_id, "delivery_mode": 2},
            "routing_key": queue,
            "payload": payload,
            "payload_encoding": "string",
        });
        let response = self
            .rabbit(
                reqwest::Method::POST,
                &format!("exchanges/{VHOST}/amq.default/publish"),
            )
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("management API: publish {message_id} to {queue}: {e}"));
        let answer = json_body(response, &format!("publish {message_id} to {queue}"));
        assert_eq!(
            answer.get("routed"),
            Some(&Value::Bool(true)),
            "the broker did not route {message_id} to {queue}: {answer}"
        );
    }

    /// Reads up to `count` messages of `queue` and puts them back (`ack_requeue_true`): the current
    /// contents, unlike the counters of [`Services::queue_info`]. Empty when the queue does not exist.
    pub fn peek_messages(&self, queue: &str, count: usize) -> Vec<PeekedMessage> {
        let body = json!({
            "count": count,
            "ackmode": "ack_requeue_true",
            "encoding": "auto",
            "truncate": 100_000,
        });
        let response = self
            .rabbit(
                reqwest::Method::POST,
                &format!("queues/{VHOST}/{queue}/get"),
            )
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("management API: get from {queue}: {e}"));
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let messages = json_body(response, &format!("get from {queue}"));
        messages
            .as_array()
            .unwrap_or_else(|| panic!("management API: get from {queue} answered {messages}"))
            .iter()
            .map(|m| {
                let properties = &m["properties"];
                let header = |name: &str| properties["headers"][name].as_str().map(str::to_string);
                PeekedMessage {
                    message_id: properties["message_id"].as_str().map(str::to_string),
                    reason: header("x-lucid-reason"),
                    task_id_header: header("x-lucid-task-id"),
                    payload: m["payload"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect()
    }

    /// Deletes queue `name` (no error when it does not exist).
    pub fn delete_queue(&self, name: &str) {
        let result = self
            .rabbit(reqwest::Method::DELETE, &format!("queues/{VHOST}/{name}"))
            .send();
        if let Err(error) = result {
            eprintln!("lucid-e2e: deleting queue {name} failed: {error}");
        }
    }

    /// Deletes exchange `name` (no error when it does not exist).
    pub fn delete_exchange(&self, name: &str) {
        let result = self
            .rabbit(
                reqwest::Method::DELETE,
                &format!("exchanges/{VHOST}/{name}"),
            )
            .send();
        if let Err(error) = result {
            eprintln!("lucid-e2e: deleting exchange {name} failed: {error}");
        }
    }

    // ---- Prometheus

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

    /// `GET url` as text; panics on a transport error or a non-success status.
    pub fn get_text(&self, url: &str) -> String {
        let response = self
            .http
            .get(url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        let text = response
            .text()
            .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
        assert!(status.is_success(), "GET {url} answered {status}: {text}");
        text
    }

    /// The HTTP status of `GET url`, `None` when nothing answers.
    pub fn get_status(&self, url: &str) -> Option<u16> {
        self.http.get(url).send().ok().map(|r| r.status().as_u16())
    }
}

fn json_body(response: reqwest::blocking::Response, what: &str) -> Value {
    let status = response.status();
    let text = response
        .text()
        .unwrap_or_else(|e| panic!("management API: {what}: reading the answer: {e}"));
    assert!(
        status.is_success(),
        "management API: {what} answered {status}: {text}"
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("management API: {what}: undecodable answer {text:?}: {e}"))
}

/// Queue counters from the management API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// Ready plus unacknowledged.
    pub messages: u64,
    /// Ready for delivery.
    pub ready: u64,
    /// Delivered, not acknowledged.
    pub unacked: u64,
    /// Consumers.
    pub consumers: u64,
}

/// A message read with [`Services::peek_messages`].
#[derive(Debug, Clone)]
pub struct PeekedMessage {
    /// The AMQP message id.
    pub message_id: Option<String>,
    /// The `x-lucid-reason` header (set by a worker that dead-lettered the message).
    pub reason: Option<String>,
    /// The `x-lucid-task-id` header.
    pub task_id_header: Option<String>,
    /// The body.
    pub payload: String,
}

/// One sample of a Prometheus query result.
#[derive(Debug, Clone)]
pub struct PromSample {
    /// The series labels (`null` for a scalar).
    pub metric: Value,
    /// The value (NaN stays NaN).
    pub value: f64,
}

// ------------------------------------------------------------------------------------ utilities

/// A name unique across tests, processes and runs of the suite: `e2e-{tag}-{pid}-{n}-{unix ms}`
/// (a valid run id and queue name; S3 results outlive a run, so reuse across runs must not happen).
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("e2e-{tag}-{}-{n}-{millis}", std::process::id())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port on 127.0.0.1")
}

/// Polls `condition` every 250 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(timeout, what, || condition().then_some(()));
}

/// Polls `probe` every 250 ms until it returns `Some`; panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `GET url` with a fresh client; the `/metrics` text of a process.
pub fn scrape(url: &str) -> String {
    let client = reqwest::blocking::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("cannot build an HTTP client");
    let response = client
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("scrape {url}: {e}"));
    assert!(
        response.status().is_success(),
        "scrape {url} answered {}",
        response.status()
    );
    response
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

// ---------------------------------------------------------------------------------- processes

/// A child process that is killed (SIGKILL) on drop, with its stdout and stderr in files. When the
/// thread is panicking, drop prints the end of both so the failure shows what the process said.
#[derive(Debug)]
pub struct ProcessGuard {
    name: String,
    child: Option<Child>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl ProcessGuard {
    /// Starts `command` with stdout and stderr going to `{log_dir}/{name}.stdout|.stderr`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Self {
        let stdout_path = log_dir.join(format!("{name}.stdout"));
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let create = |path: &Path| {
            File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
        };
        command
            .stdin(Stdio::null())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self {
            name: name.to_string(),
            child: Some(child),
            stdout_path,
            stderr_path,
        }
    }

    /// The process name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the child is kept until drop")
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let name = self.name.clone();
        self.child()
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot poll {name}: {e}"))
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.try_wait().is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) with the pid of our own child, which we have not reaped (try_wait saw it
        // running), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) of {} failed: {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if started.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits up to `timeout` for exit and returns status and output; panics naming the process on
    /// timeout (the process is killed by drop).
    pub fn finish(mut self, timeout: Duration) -> CommandOutput {
        let status = self.wait_timeout(timeout).unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for {} to exit; stderr:\n{}",
                self.name,
                tail(&self.stderr(), 40)
            )
        });
        CommandOutput {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} stdout (end) ----\n{}\n---- {} stderr (end) ----\n{}",
                self.name,
                tail(&self.stdout(), 30),
                self.name,
                tail(&self.stderr(), 60)
            );
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl CommandOutput {
    /// Panics with both streams unless the command succeeded; returns stdout.
    pub fn expect_success(&self, what: &str) -> &str {
        assert!(
            self.status.success(),
            "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            tail(&self.stderr, 60)
        );
        &self.stdout
    }
}

// -------------------------------------------------------------------------------------- the run

/// What a test's sweep spec renders.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Fixture seeds (`training_seed_01`, `training_seed_02`).
    pub seeds: Vec<String>,
    /// `layers` of the spec (`all`, `conv1,fc8`).
    pub layers: String,
    /// `channels` of the spec (`0-2`).
    pub channels: String,
    /// `render.steps`.
    pub steps: u32,
    /// `queue.prefetch` (a worker prefetches the larger of this and twice its batch).
    pub prefetch: u16,
}

impl Default for SweepConfig {
    /// Both fixture seeds, every layer, channels 0-2 (48 tasks), 4 steps, prefetch 4.
    fn default() -> Self {
        Self {
            seeds: vec!["training_seed_01".into(), "training_seed_02".into()],
            layers: "all".into(),
            channels: "0-2".into(),
            steps: 4,
            prefetch: 4,
        }
    }
}

impl SweepConfig {
    /// One seed (`training_seed_01`), conv1, channels `0..channels`, at `steps` steps.
    pub fn conv1(channels: u32, steps: u32, prefetch: u16) -> Self {
        Self {
            seeds: vec!["training_seed_01".into()],
            layers: "conv1".into(),
            channels: format!("0-{}", channels.saturating_sub(1)),
            steps,
            prefetch,
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
        let spec = dir.path().join("sweep.toml");
        let models: String = config
            .seeds
            .iter()
            .map(|seed| format!("{seed} = {:?}\n", fixture_model(seed).display().to_string()))
            .collect();
        let text = format!(
            r#"# written by lucid-e2e for run {run_id}
run_id = "placeholder"
layers = {layers:?}
channels = {channels:?}

[models]
{models}
[render]
steps = {steps}
size = 224
objective = "channel"
batch = 0
run_seed = 0
param = "fft"
decorrelate = true
transforms = "standard"
lr = 0.05
precision = "fp32"

[storage]
kind = "s3"
endpoint = {endpoint:?}
bucket = "{BUCKET}"
prefix = "{PREFIX}"
region = "us-east-1"
path_style = true
checksum = "when_required"

[queue]
uri = {uri:?}
tasks = "lucid.tasks"
dead_letter_exchange = "lucid.dlx"
dead_letter_queue = "lucid.dead"
prefetch = {prefetch}
delivery_limit = 5
max_message_bytes = 65536
"#,
            layers = config.layers,
            channels = config.channels,
            steps = config.steps,
            endpoint = services.s3_endpoint,
            uri = services.amqp_uri_without_credentials(),
            prefetch = config.prefetch,
        );
        std::fs::write(&spec, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", spec.display()));
        Self {
            services: services.clone(),
            tasks_queue: format!("lucid.{run_id}.tasks"),
            dead_letter_exchange: format!("lucid.{run_id}.dlx"),
            dead_letter_queue: format!("lucid.{run_id}.dead"),
            run_id,
            dir,
            spec,
            config,
            commands: AtomicU64::new(0),
        }
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

    fn command(&self, binary_name: &str) -> Command {
        let mut command = Command::new(binary(binary_name));
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

    /// Polls `verify` until it exits 0 (every task has one PNG and one sidecar, the manifest is
    /// there); returns its report. Panics after `timeout` with the last report.
    pub fn wait_verified(&self, timeout: Duration) -> String {
        self.wait_verified_with_env(timeout, &[])
    }

    /// Starts `lucid-worker serve` like [`TestRun::spawn_worker`] with `env` added to its
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
        let mut command = self.command("lucid-worker");
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
                if let Some(status) = worker.process.try_wait() {
                    panic!(
                        "worker {name} exited with {status} before it was ready; stderr:\n{}",
                        tail(&worker.process.stderr(), 40)
                    );
                }
                self.services.get_status(&ready_url) == Some(200)
            },
        );
    }

    /// Starts `lucid-coordinator watch` for this run on a free port, refreshing every second, and
    /// waits until its `/metrics` has the run's expected-task gauge.
    pub fn spawn_watch(&self) -> Watch {
        let port = free_port();
        let mut command = self.command("lucid-coordinator");
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
                if let Some(status) = watch.process.try_wait() {
                    panic!(
                        "lucid-coordinator watch exited with {status}; stderr:\n{}",
                        tail(&watch.process.stderr(), 40)
                    );
                }
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
                "size": 224,
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
    fn drop(&mut self) {
        self.services.delete_queue(&self.tasks_queue);
        self.services.delete_queue(&self.dead_letter_queue);
        self.services.delete_exchange(&self.dead_letter_exchange);
    }
}

// ------------------------------------------------------------------- fault tests and invariants

static SERVICES_LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held for its whole run by a test that stops or restarts a shared service (RabbitMQ, SeaweedFS):
/// no other test of its binary that holds [`shared_services`] runs meanwhile. Tests in other test
/// binaries never overlap (cargo runs binaries one by one).
pub fn exclusive_services() -> std::sync::RwLockWriteGuard<'static, ()> {
    SERVICES_LOCK
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held for its whole run by a test, in a binary with [`exclusive_services`] tests, that needs the
/// shared services up; such tests run alongside each other.
pub fn shared_services() -> std::sync::RwLockReadGuard<'static, ()> {
    SERVICES_LOCK
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
    /// second) or `timeout`. Then the task queue must drain to empty (every redelivery settled), and
    /// the workers' counters must agree: `dead_lettered` sums to the dead letters, and `ok` plus
    /// `skipped_existing` cover every task. Returns verify's report.
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
        let started = Instant::now();
        let report = loop {
            let output = self.coordinator("verify", &args);
            if output.status.success() {
                break output.stdout;
            }
            assert!(
                started.elapsed() < timeout,
                "invariants of run {} do not hold after {timeout:?}:\n{}{}",
                self.run_id,
                tail(&output.stdout, 30),
                tail(&output.stderr, 10)
            );
            std::thread::sleep(Duration::from_secs(1));
        };
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
        assert!(
            report.contains(&format!("{expected} of {expected} tasks complete")),
            "{report}"
        );
        assert!(
            report.contains(&format!("{} dead letters of this run", expected_dead.len())),
            "{report}"
        );
        if !workers.is_empty() {
            let sum = |outcome: &str| workers.iter().map(|w| w.tasks(outcome)).sum::<f64>();
            assert_eq!(
                sum("dead_lettered"),
                expected_dead.len() as f64,
                "the workers' dead_lettered counters and the dead-letter queue disagree"
            );
            let settled = sum("ok") + sum("skipped_existing");
            assert!(
                settled >= expected as f64,
                "the workers' ok + skipped_existing ({settled}) do not cover the {expected} tasks"
            );
        }
        report
    }

    /// How many tasks `plan` counts for this run.
    pub fn expected_tasks(&self) -> u64 {
        let plan = self.coordinator("plan", &[]);
        let text = plan.expect_success("lucid-coordinator plan");
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("total: ")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no `total: N tasks` line in the plan:\n{text}"))
    }
}

impl Services {
    /// A store for `bucket` of the test S3 server, with the test credentials, and a runtime to
    /// drive it.
    fn s3_store(&self, bucket: &str) -> (lucid_storage::Store, tokio::runtime::Runtime) {
        let section = lucid_proto::spec::StorageSection {
            kind: lucid_proto::spec::StorageKind::S3,
            endpoint: Some(self.s3_endpoint.clone()),
            bucket: Some(bucket.to_owned()),
            retry_for_secs: 30,
            ..lucid_proto::spec::StorageSection::default()
        };
        let credentials = lucid_storage::Credentials {
            access_key_id: self.s3_access_key.clone(),
            secret_access_key: self.s3_secret_key.clone(),
        };
        let store = lucid_storage::Store::S3(
            lucid_storage::S3Store::new(&section, credentials).expect("an S3 store"),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        (store, runtime)
    }

    /// Uploads every file of the folder `dir` to `s3://{bucket}/{prefix}/{file name}` (the bucket is
    /// created if needed) and returns that location, as a spec's `[models]` names it.
    pub fn upload_model(&self, dir: &Path, bucket: &str, prefix: &str) -> String {
        let (store, runtime) = self.s3_store(bucket);
        runtime.block_on(async {
            store
                .ensure_bucket()
                .await
                .expect("create the model bucket");
            let entries = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                store
                    .put(
                        &format!("{prefix}/{name}"),
                        bytes,
                        "application/octet-stream",
                    )
                    .await
                    .unwrap_or_else(|e| panic!("cannot upload {}: {e}", path.display()));
            }
        });
        format!("s3://{bucket}/{prefix}")
    }

    /// The bytes of `s3://{bucket}/{key}`, `None` when there is no such object.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (store, runtime) = self.s3_store(bucket);
        runtime
            .block_on(store.get(key))
            .unwrap_or_else(|e| panic!("cannot get s3://{bucket}/{key}: {e}"))
    }
}

/// Runs `scripts/services.sh ACTION SERVICE` and panics if it fails.
pub fn services_script(action: &str, service: &str) {
    let output = Command::new(workspace_root().join("scripts/services.sh"))
        .args([action, service])
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/services.sh {action} {service}: {e}"));
    assert!(
        output.status.success(),
        "scripts/services.sh {action} {service} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `rabbitmqctl ARGS` and panics if it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run rabbitmqctl {args:?}: {e}"));
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Restarts what a fault test stopped when it is dropped, even if the test panicked.
pub struct Restore {
    action: Option<Box<dyn FnOnce()>>,
}

impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Restore")
    }
}

impl Restore {
    /// Calls `action` on drop.
    pub fn new(action: impl FnOnce() + 'static) -> Self {
        Self {
            action: Some(Box::new(action)),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(action) = self.action.take() {
            action();
        }
    }
}

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

// ------------------------------------------------------------------------- dashboards and alerts

/// Every `expr` string anywhere in a Grafana dashboard (panel targets, nested rows).
pub fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr", Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The `expr:` values of a Prometheus rule file: inline ones and `|` / `>` block scalars.
pub fn rule_exprs(yaml: &str) -> Vec<String> {
    let indent_of = |line: &str| line.len() - line.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(rest) = trimmed.strip_prefix("expr:") else {
            i += 1;
            continue;
        };
        let key_indent = indent_of(line);
        let rest = rest.trim();
        i += 1;
        if rest.starts_with('|') || rest.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty() || indent_of(lines[i]) > key_indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            out.push(block.join("\n").trim().to_string());
        } else {
            out.push(rest.trim_matches(['"', '\'']).to_string());
        }
    }
    out
}

/// Metric names a PromQL expression reads: identifiers outside strings, label matchers (`{…}`),
/// ranges (`[…]`) and label lists (`by (…)`, `on (…)`, …) that are neither a function call (followed
/// by `(`), an aggregation operator nor a keyword.
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LIST_KEYWORDS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const OTHER_KEYWORDS: [&str; 20] = [
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "inf",
        "nan",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let is_ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // index just past the string that starts at `i`
    let skip_string = |mut i: usize| {
        let quote = chars[i];
        i += 1;
        while i < chars.len() && chars[i] != quote {
            if chars[i] == '\\' && quote != '`' {
                i += 1;
            }
            i += 1;
        }
        i + 1
    };
    // index just past the bracket group (with nested strings and groups) that opens at `i`
    let skip_group = |mut i: usize| {
        let mut depth = 0usize;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(i);
                    continue;
                }
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(i);
        } else if c == '{' || c == '[' {
            i = skip_group(i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // numbers, durations (after offset), hex and exponents
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let lower = ident.to_ascii_lowercase();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let followed_by_paren = chars.get(next) == Some(&'(');
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if followed_by_paren {
                    i = skip_group(next);
                }
            } else if followed_by_paren || OTHER_KEYWORDS.contains(&lower.as_str()) {
                // a function call, an aggregation or an operator keyword
            } else {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    names
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
    /// [`TestRun::command`] with `env` applied.
    fn command_with_env(&self, binary_name: &str, env: &[EnvChange<'_>]) -> Command {
        let mut command = self.command(binary_name);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        promql_metric_names(expr).into_iter().collect()
    }

    #[test]
    fn scanner_finds_metrics_not_functions_labels_or_keywords() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.95, sum by (le, phase) (rate(lucid_worker_phase_seconds_bucket{job="lucid-worker"}[$__rate_interval])))"#
            ),
            ["lucid_worker_phase_seconds_bucket"]
        );
        assert_eq!(
            names(
                "(time() - lucid_worker_last_success_timestamp_seconds{job=\"lucid-worker\"}) > 1800\nand on (instance)\nlucid_worker_in_flight{job=\"lucid-worker\"} > 0"
            ),
            [
                "lucid_worker_in_flight",
                "lucid_worker_last_success_timestamp_seconds"
            ]
        );
        assert_eq!(
            names(
                r#"max(up{job="lucid-coordinator", x="a}b"}) == 0 or sum without (a) (b offset 5m)"#
            ),
            ["b", "up"]
        );
        assert_eq!(names("1e3 + 0x1f * .5"), Vec::<String>::new());
    }

    #[test]
    fn rule_exprs_reads_inline_and_block_scalars() {
        let yaml = "groups:\n  - rules:\n      - alert: A\n        expr: |\n          sum(a)\n          > 0\n        for: 5m\n      - alert: B\n        expr: up == 0\n      - expr: \"b > 1\"\n";
        assert_eq!(rule_exprs(yaml), ["sum(a)\n> 0", "up == 0", "b > 1"]);
    }

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
