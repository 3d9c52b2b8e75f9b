//! The sweep spec a [`TestRun`] writes: every name of the run in the file itself, so the spec alone
//! (as a failed test leaves it in the run's folder) says what the run was.

use super::{BUCKET, PREFIX, TestRun};
use crate::fixture_model;

/// The TOML spec of `run`: its fixture models, layers, channels, steps and size, the test S3 server and
/// broker (without credentials: processes get them from the environment), and its unique run id
/// and queue names.
pub(super) fn spec_text(run: &TestRun) -> String {
    let config = &run.config;
    let models: String = config
        .models
        .iter()
        .map(|model| {
            format!(
                "{model} = {:?}\n",
                fixture_model(model).display().to_string()
            )
        })
        .chain(
            config
                .model_entries
                .iter()
                .map(|(id, value)| format!("{id} = {value}\n")),
        )
        .collect();
    let views = if config.views.is_empty() {
        String::new()
    } else {
        format!("views = {:?}\n", config.views)
    };
    format!(
        r#"# written by lucid-e2e for run {run_id}
run_id = "{run_id}"
layers = {layers:?}
channels = {channels:?}
{views}
[models]
{models}
[render]
steps = {steps}
size = {size}
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
tasks = "{tasks}"
dead_letter_exchange = "{dead_letter_exchange}"
dead_letter_queue = "{dead_letter_queue}"
prefetch = {prefetch}
delivery_limit = 5
max_message_bytes = 65536
"#,
        run_id = run.run_id,
        layers = config.layers,
        channels = config.channels,
        steps = config.steps,
        size = config.size,
        endpoint = run.services.s3_endpoint,
        uri = run.services.amqp_uri_without_credentials(),
        tasks = run.tasks_queue,
        dead_letter_exchange = run.dead_letter_exchange,
        dead_letter_queue = run.dead_letter_queue,
        prefetch = config.prefetch,
    ) + &config
        .probe
        .as_ref()
        .map(|body| format!("\n[probe]\n{body}\n"))
        .unwrap_or_default()
}
