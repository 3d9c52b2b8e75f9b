//! Support for the end-to-end tests: locating binaries, fixtures and the test services, and driving
//! the real `lucid-worker` and `lucid-coordinator` processes against RabbitMQ, SeaweedFS and
//! Prometheus.
//!
//! The services come from the `LUCID_TEST_*` variables that `scripts/services.sh env` prints (`make
//! test` exports them). A test that cannot reach them follows the one policy of
//! [`lucid_testkit`]: it fails under CI and is reported as `SKIPPED` elsewhere. The binaries must be
//! built before `cargo test` runs (`make unit` does it); nothing here installs or builds anything.
//!
//! Each test builds its own [`TestRun`] (temp dir, spec, run id, queue names, all unique) and keeps
//! every process it starts in a [`ProcessGuard`], which kills it on drop. Declare the [`TestRun`]
//! before the processes: locals drop in reverse order, so the processes stop before the run deletes
//! its queues (a worker that is still running would declare them again).
//!
//! - [`services`]: the test services, the RabbitMQ management API, Prometheus, S3, and the fault
//!   tests' control of them;
//! - [`processes`]: the workspace binaries, [`ProcessGuard`], [`CommandOutput`];
//! - [`run`]: the run under test ([`SweepConfig`], [`TestRun`], [`Worker`], [`Watch`]);
//! - [`invariants`]: the checks every fault test ends with;
//! - [`promql`]: the expressions of dashboards and alert rules and the metrics they read;
//! - [`metrics`], [`wait`], [`fixtures`]: `/metrics` samples, polling and unique names, paths.

pub mod fixtures;
pub mod invariants;
pub mod metrics;
pub mod processes;
pub mod promql;
pub mod run;
pub mod services;
pub mod wait;

pub use fixtures::{fixture_model, workspace_root};
pub use invariants::PrivateAmqpUser;
pub use metrics::{metric_value, sample_names, scrape};
pub use processes::{CommandOutput, ProcessGuard, binary, run_binary, tail};
pub use promql::{dashboard_exprs, promql_metric_names, rule_exprs};
pub use run::{
    BUCKET, EnvChange, PREFIX, SweepConfig, TestRun, WORKER_DRAIN_TIMEOUT, Watch, Worker,
    json_document,
};
pub use services::{
    PeekedMessage, PromSample, PromTargets, QueueInfo, Restore, Services, exclusive_services,
    off_runtime, rabbitmqctl, services_script, shared_services,
};
pub use wait::{free_port, unique_name, wait_for, wait_until};
