//! Publish benchmark: the ecoset-size plan (ten AlexNet seeds, 100,370 tasks) published with
//! publisher confirms into a real RabbitMQ quorum queue must take under 30 s, and every task must be
//! in the queue afterwards.
//!
//! It costs 10 to 30 s, so it runs only with `LUCID_BENCH=1`:
//!
//! ```text
//! source <(scripts/services.sh env)
//! LUCID_BENCH=1 cargo test -p lucid-queue --release --test publish_bench -- --nocapture
//! ```
//!
//! `LUCID_BENCH_WINDOWS` (comma-separated, default `512`, the coordinator's default
//! `--confirm-window`) picks the confirm windows; each gets its own queue, deleted afterwards.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lucid_proto::plan::{ECOSET_ALEXNET_LAYERS as ALEXNET, LayerWidths, plan};
use lucid_proto::{ModelId, SweepSpec, TaskMessage};
use lucid_queue::Broker;
use support::{amqp_uri, topology};

/// Tasks in the plan: ten seeds of 64 + 192 + 384 + 384 + 256 + 4096 + 4096 + 565 channels.
const ECOSET_TASKS: u64 = 100_370;
/// The acceptance bound of the issue, on a 2-core machine.
const PUBLISH_LIMIT: Duration = Duration::from_secs(30);

fn windows() -> Vec<usize> {
    std::env::var("LUCID_BENCH_WINDOWS")
        .unwrap_or_else(|_| "512".into())
        .split(',')
        .map(|w| {
            w.trim()
                .parse()
                .unwrap_or_else(|e| panic!("LUCID_BENCH_WINDOWS entry {w:?}: {e}"))
        })
        .collect()
}

/// The real ecoset plan: ten seeds, every layer and channel, default render settings.
fn ecoset_tasks() -> Vec<TaskMessage> {
    let models: String = (1..=10)
        .map(|i| {
            format!("training_seed_{i:02} = \"s3://lucid-models/ecoset/training_seed_{i:02}\"\n")
        })
        .collect();
    let spec = SweepSpec::parse_toml(&format!(
        "run_id = \"ecoset-bench\"\n[storage]\nbucket = \"lucid-bench\"\n[models]\n{models}"
    ))
    .expect("bench spec parses");
    let alexnet: LayerWidths = ALEXNET
        .iter()
        .map(|(layer, width)| (layer.parse().expect("layer name"), *width))
        .collect();
    let widths: BTreeMap<ModelId, LayerWidths> = spec
        .models
        .keys()
        .map(|seed| (seed.clone(), alexnet.clone()))
        .collect();
    let plan = plan(&spec, &widths).expect("ecoset plan");
    assert_eq!(plan.task_count(), ECOSET_TASKS);
    plan.tasks().collect()
}

/// Waits up to 10 s for the ready count to reach `expected`; returns the last count seen.
async fn wait_for_ready(broker: &Broker, expected: u64) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = broker
            .stats(None)
            .await
            .map_err(|e| format!("queue stats: {e}"))?
            .ready;
        if ready >= expected || Instant::now() >= deadline {
            return Ok(ready);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One run: publishes `tasks` with `window` into a fresh queue; returns (seconds, ready count).
async fn publish_once(tasks: &[TaskMessage], window: usize) -> Result<(f64, u64), String> {
    let topology = topology(&format!("bench.w{window}"), 5);
    let broker = Broker::connect(&amqp_uri(), topology)
        .await
        .map_err(|e| format!("connect to the test broker: {e}"))?;
    let run = async {
        let started = Instant::now();
        let confirmed = tokio::time::timeout(
            Duration::from_secs(300),
            broker.publish_tasks(tasks, window),
        )
        .await
        .map_err(|_| "timed out after 300 s waiting for the publish to finish".to_string())?
        .map_err(|e| format!("publish: {e}"))?;
        let seconds = started.elapsed().as_secs_f64();
        if confirmed != tasks.len() as u64 {
            return Err(format!("{confirmed} of {} tasks confirmed", tasks.len()));
        }
        let ready = wait_for_ready(&broker, tasks.len() as u64).await?;
        Ok((seconds, ready))
    }
    .await;
    // the queue goes whatever happened
    let deleted = broker.delete_topology().await;
    let _ = broker.close().await;
    let result = run?;
    deleted.map_err(|e| format!("delete the bench queues: {e}"))?;
    Ok(result)
}

#[tokio::test]
async fn ecoset_plan_publishes_with_confirms_in_under_30_s() {
    if std::env::var("LUCID_BENCH").as_deref() != Ok("1") {
        eprintln!("skipped: set LUCID_BENCH=1 to run the publish benchmark");
        return;
    }
    if lucid_testkit::require(&[lucid_testkit::RABBITMQ]).is_none() {
        return;
    }
    let started = Instant::now();
    let tasks = ecoset_tasks();
    let plan_seconds = started.elapsed().as_secs_f64();
    let bytes: usize = tasks.iter().map(|t| t.encode().len()).sum();
    println!(
        "plan: {} tasks, {:.1} MB of bodies, built in {plan_seconds:.2} s",
        tasks.len(),
        bytes as f64 / 1e6
    );
    for window in windows() {
        let (seconds, ready) = publish_once(&tasks, window)
            .await
            .unwrap_or_else(|e| panic!("window {window}: {e}"));
        println!(
            "window {window:>5}: published {} tasks with confirms in {seconds:.2} s ({:.0} tasks/s), ready {ready}",
            tasks.len(),
            tasks.len() as f64 / seconds
        );
        assert_eq!(ready, ECOSET_TASKS, "window {window}: ready count");
        assert!(
            seconds < PUBLISH_LIMIT.as_secs_f64(),
            "window {window}: publishing took {seconds:.1} s, limit {} s",
            PUBLISH_LIMIT.as_secs()
        );
    }
}
