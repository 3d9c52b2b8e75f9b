//! Benchmark (issue 7): the queue-and-storage path drains 10,000 tasks at ≥ 300 tasks/s through
//! RabbitMQ and SeaweedFS on one machine, so that storage and queue never hold a GPU back (a GPU
//! renders 26-47 images/s).
//!
//! The worker runs `serve --benchmark-renderer` (refused unless `LUCID_BENCHMARK=1`): it validates
//! every task against the model as usual but stores the images the optimisation would start from,
//! without optimising. Everything else is the production path: decode, group, idempotency check,
//! PNG encoding, PNG and sidecar uploads, ack. The model is one seed at the ecoset AlexNet's widths
//! (random weights), 10,037 tasks.
//!
//! Runs only with `LUCID_BENCH=1`; use release binaries:
//! `LUCID_BENCH=1 cargo test --release -p lucid-e2e --test drain_bench -- --nocapture`.

use std::process::Command;
use std::time::{Duration, Instant};

use lucid_e2e::{Services, SweepConfig, TestRun, binary, tail, wait_until};

/// Tasks of one ecoset-width seed (64 + 192 + 384 + 384 + 256 + 4096 + 4096 + 565).
const TASKS: u64 = 10_037;

/// The rate the issue asks for.
const MIN_RATE: f64 = 300.0;

#[test]
fn drains_10000_tasks_through_rabbitmq_and_seaweedfs_at_300_per_second() {
    if std::env::var("LUCID_BENCH").as_deref() != Ok("1") {
        eprintln!("drain benchmark skipped: set LUCID_BENCH=1 to run it");
        return;
    }
    let Some(services) = Services::from_env() else {
        return;
    };
    let run = TestRun::new(
        &services,
        "drain",
        SweepConfig {
            models: vec!["training_seed_01".into()],
            layers: "all".into(),
            channels: "all".into(),
            steps: 512,
            prefetch: 4,
            ..SweepConfig::default()
        },
    );
    let models = run.dir.path().join("models");
    let made = Command::new(binary("lucid-worker"))
        .args(["demo-models", "--seeds", "1", "--ecoset-widths"])
        .arg(&models)
        .output()
        .expect("run lucid-worker demo-models");
    assert!(
        made.status.success(),
        "demo-models failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let model_set = format!(
        "models.training_seed_01={}",
        models.join("training_seed_01").display()
    );

    // the refusal outside benchmarks
    let mut refused = run.start_worker_with(
        "worker-refused",
        &[&model_set],
        &[("LUCID_BENCHMARK", "0".into())],
        64,
        &["--benchmark-renderer"],
    );
    let status = refused
        .process
        .wait_timeout(Duration::from_secs(30))
        .expect("the refused worker exits");
    assert!(!status.success());
    assert!(
        refused
            .process
            .stderr()
            .contains("refused unless LUCID_BENCHMARK=1"),
        "{}",
        refused.process.stderr()
    );

    let submitted = Instant::now();
    let out = run.coordinator_with_sets("submit", &[&model_set], &[]);
    assert_eq!(
        out.expect_success("submit").trim(),
        format!("published {TASKS} of {TASKS} tasks (0 already stored)")
    );
    eprintln!(
        "published {TASKS} tasks in {:.1} s",
        submitted.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let worker = run.start_worker_with(
        "worker-bench",
        &[&model_set],
        &[("LUCID_BENCHMARK", "1".into())],
        128,
        &["--benchmark-renderer"],
    );
    let metrics_url = format!("{}/metrics", worker.base_url());
    // 0 until the worker answers (it loads the model first)
    let stored_now = || {
        reqwest::blocking::get(&metrics_url)
            .and_then(|r| r.text())
            .ok()
            .and_then(|text| {
                lucid_e2e::metric_value(&text, "lucid_worker_tasks_total", &[("outcome", "ok")])
            })
            .unwrap_or(0.0)
    };
    let mut first: Option<(Instant, f64)> = None;
    wait_until(
        Duration::from_secs(600),
        &format!("worker-bench to store {TASKS} tasks"),
        || {
            let done = stored_now();
            if first.is_none() && done > 0.0 {
                first = Some((Instant::now(), done));
            }
            done >= TASKS as f64
        },
    );
    let finished = Instant::now();
    let total = finished.duration_since(started).as_secs_f64();
    let (first_at, first_done) = first.expect("a first stored task");
    let steady = finished.duration_since(first_at).as_secs_f64();
    let steady_rate = (TASKS as f64 - first_done) / steady;
    let rate = TASKS as f64 / total;
    let scrape = worker.scrape();
    let phase = |p: &str| {
        let sum =
            lucid_e2e::metric_value(&scrape, "lucid_worker_phase_seconds_sum", &[("phase", p)]);
        sum.unwrap_or(0.0)
    };
    eprintln!(
        "drained {TASKS} tasks in {total:.1} s from worker start ({rate:.0} tasks/s), \
         {steady:.1} s from the first stored task ({steady_rate:.0} tasks/s); worker phase seconds: \
         load {:.1}, render {:.1}, encode {:.1}, upload {:.1}",
        phase("load"),
        phase("render"),
        phase("encode"),
        phase("upload"),
    );
    assert_eq!(
        worker.tasks("dead_lettered"),
        0.0,
        "{}",
        tail(&worker.process.stderr(), 20)
    );
    assert!(
        steady_rate >= MIN_RATE,
        "the queue-and-storage path drained {steady_rate:.0} tasks/s, below {MIN_RATE}"
    );

    // what was stored: a PNG of a size like a rendered one, and a sidecar that says what made it
    let key = |ext: &str| {
        format!(
            "{}/{}/training_seed_01/conv5/0000.{ext}",
            lucid_e2e::PREFIX,
            run.run_id
        )
    };
    let png = services
        .get_object(lucid_e2e::BUCKET, &key("png"))
        .expect("the PNG of conv5/0000");
    let sidecar = services
        .get_object(lucid_e2e::BUCKET, &key("json"))
        .expect("the sidecar of conv5/0000");
    let sidecar = String::from_utf8_lossy(&sidecar);
    assert!(sidecar.contains("benchmark renderer"), "{sidecar}");
    eprintln!("a stored PNG: {} bytes", png.len());

    // the objects are really there: one PNG and one sidecar per task
    let verify = run.coordinator_with_sets("verify", &[&model_set], &["--expect-dead", "--json"]);
    let report = lucid_e2e::run::json_document(verify.expect_success("verify"));
    assert_eq!(
        (&report["complete"], &report["expected"], &report["ok"]),
        (&TASKS.into(), &TASKS.into(), &true.into()),
        "{report}"
    );
}
