//! Sweeps through the real binaries: `lucid-coordinator submit` into RabbitMQ, `lucid-worker serve`
//! rendering on the CPU into SeaweedFS, `lucid-coordinator verify` checking the stored output
//! (issue 4). Every test has its own run id, queues and processes, so they run in parallel.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lucid_e2e::run::json_document;
use lucid_e2e::{Services, SweepConfig, TestRun, WORKER_DRAIN_TIMEOUT, tail, wait_until};

/// Two seeds × eight layers × channels 0-2.
const TWO_SEED_TASKS: f64 = 48.0;

#[test]
fn two_workers_complete_a_two_seed_sweep_and_resubmit_publishes_nothing() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let started = Instant::now();
    let run = TestRun::new(&services, "sweep", SweepConfig::default());
    // prefetch 4 (a worker takes max(prefetch, 2 × batch) = 8): both workers get tasks
    let worker_a = run.spawn_worker("worker-a", &[]);
    let worker_b = run.spawn_worker("worker-b", &[]);

    let submitted = run.coordinator("submit", &["--json"]);
    let first = json_document(submitted.expect_success("submit --json"));
    assert_eq!(
        (
            &first["published"],
            &first["expected"],
            &first["already_stored"]
        ),
        (&48.into(), &48.into(), &0.into()),
        "first submit: {first}"
    );
    let manifest_key = format!("renders/{}/run.json", run.run_id);
    assert!(
        submitted.stderr.contains("wrote run manifest") && submitted.stderr.contains(&manifest_key),
        "the first submit should write the manifest {manifest_key}; stderr:\n{}",
        submitted.stderr
    );

    run.wait_verified(Duration::from_secs(240));
    // 48 PNGs + 48 sidecars + run.json: verify lists everything under the run and accepts only those
    assert_verified(&run, 48, Some(97));

    let ok_a = worker_a.tasks("ok");
    let ok_b = worker_b.tasks("ok");
    assert!(
        ok_a > 0.0 && ok_b > 0.0,
        "each worker should render part of the sweep: worker-a {ok_a}, worker-b {ok_b}"
    );
    assert_eq!(
        ok_a + ok_b,
        TWO_SEED_TASKS,
        "every task rendered exactly once (worker-a {ok_a}, worker-b {ok_b})"
    );
    for worker in [&worker_a, &worker_b] {
        assert_eq!(
            worker.tasks("dead_lettered"),
            0.0,
            "{}",
            worker.process.name()
        );
        assert_eq!(worker.tasks("failed"), 0.0, "{}", worker.process.name());
    }
    assert!(
        services
            .peek_messages(&run.dead_letter_queue, 10)
            .is_empty(),
        "nothing should be dead-lettered"
    );

    let again = run.coordinator("submit", &["--json"]);
    let second = json_document(again.expect_success("submit --json"));
    assert_eq!(
        (
            &second["published"],
            &second["already_stored"],
            &second["wrote_manifest"]
        ),
        (&0.into(), &48.into(), &false.into()),
        "second submit: {second}"
    );
    assert!(
        !again.stderr.contains("wrote run manifest"),
        "the second submit must not rewrite the manifest; stderr:\n{}",
        again.stderr
    );
    wait_until(
        Duration::from_secs(30),
        &format!("the management API to report {} empty", run.tasks_queue),
        || {
            services
                .queue_info(&run.tasks_queue)
                .is_some_and(|q| q.messages == 0)
        },
    );
    eprintln!("two-worker sweep took {:?}", started.elapsed());
}

#[test]
fn sigterm_mid_batch_finishes_the_batch_and_loses_nothing() {
    let Some(services) = Services::from_env() else {
        return;
    };
    // 16 tasks of 64 steps: a batch of 4 takes about 2 s on 2 cores (12 steps took 0.4 s, too close
    // to the 300 ms pause below on a faster machine). The first worker prefetches 12: two batches in
    // flight (rendering, waiting for the render thread) and 4 waiting to be grouped.
    const TASKS: usize = 16;
    let run = TestRun::new(
        &services,
        "sigterm",
        SweepConfig::conv1(TASKS as u32, 64, 12),
    );
    let mut first = run.spawn_worker("worker-first", &[]);
    let submitted = run.coordinator("submit", &["--json"]);
    let submitted = json_document(submitted.expect_success("submit --json"));
    assert_eq!(submitted["published"], TASKS, "{submitted}");
    // it holds its whole prefetch: two full batches dispatched (dispatch is immediate for a full
    // batch), four waiting
    wait_until(
        Duration::from_secs(60),
        "worker-first to hold 12 tasks (lucid_worker_in_flight == 12)",
        || {
            lucid_e2e::metric_value(&first.scrape(), "lucid_worker_in_flight", &[])
                .is_some_and(|v| v >= 12.0)
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        first.stored_task_ids().is_empty(),
        "the signal should arrive mid-batch, but worker-first already stored {:?}; make the batch slower",
        first.stored_task_ids()
    );
    let signalled = Instant::now();
    first.process.terminate();
    let deadline = WORKER_DRAIN_TIMEOUT + Duration::from_secs(15);
    let status = first.process.wait_timeout(deadline).unwrap_or_else(|| {
        panic!(
            "worker-first did not exit within {deadline:?} of SIGTERM (drain timeout {WORKER_DRAIN_TIMEOUT:?}); stderr:\n{}",
            tail(&first.process.stderr(), 40)
        )
    });
    let drain = signalled.elapsed();
    assert!(
        status.success(),
        "worker-first should exit 0 after a graceful drain, got {status}; stderr:\n{}",
        tail(&first.process.stderr(), 40)
    );
    let log = first.process.stderr();
    assert!(
        log.contains("finishing the batches in flight"),
        "worker-first should drain its batches in flight; stderr:\n{}",
        tail(&log, 40)
    );
    assert!(
        !log.contains("after the drain deadline") && !log.contains("dead-lettering"),
        "worker-first gave up tasks while draining; stderr:\n{}",
        tail(&log, 40)
    );
    let stored_first = first.stored_task_ids();
    assert!(
        !stored_first.is_empty() && stored_first.len() < TASKS,
        "worker-first should store the batch it was rendering and leave the rest: stored {stored_first:?}"
    );
    eprintln!(
        "worker-first drained in {drain:?}, storing {} tasks",
        stored_first.len()
    );

    let second = run.spawn_worker("worker-second", &[]);
    run.wait_verified(Duration::from_secs(180));
    let ok_second = second.tasks("ok");
    assert_eq!(
        stored_first.len() as f64 + ok_second,
        TASKS as f64,
        "every task stored exactly once: worker-first {}, worker-second {ok_second}",
        stored_first.len()
    );
    assert_eq!(second.tasks("dead_lettered"), 0.0);
    let dead = services.peek_messages(&run.dead_letter_queue, 20);
    assert!(dead.is_empty(), "no task may be dead-lettered: {dead:?}");
}

#[test]
fn a_batch_still_running_at_the_drain_deadline_is_abandoned_and_redelivered() {
    // A worker with a 1 s drain deadline is stopped in the middle of a batch that takes many
    // seconds: it gives the batch up at the deadline, stops its render thread within an update and
    // exits 0, storing and acknowledging nothing of the batch; the broker returns the tasks, and a
    // second worker stores each exactly once. (Before the render thread could be stopped, the
    // process exited while libtorch was still rendering and died of SIGSEGV.)
    let Some(services) = Services::from_env() else {
        return;
    };
    const TASKS: usize = 4;
    let run = TestRun::new(
        &services,
        "deadline",
        SweepConfig::conv1(TASKS as u32, 400, 4),
    );
    let mut first =
        run.start_worker_with("worker-first", &[], &[], 4, &["--drain-timeout-secs", "1"]);
    run.wait_ready(&mut first);
    run.submit();
    wait_until(
        Duration::from_secs(60),
        "worker-first to hold the batch (lucid_worker_in_flight == 4)",
        || {
            lucid_e2e::metric_value(&first.scrape(), "lucid_worker_in_flight", &[])
                .is_some_and(|v| v >= TASKS as f64)
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    first.process.terminate();
    let status = first
        .process
        .wait_timeout(Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!(
                "worker-first did not exit within 20 s of SIGTERM with a 1 s drain deadline; stderr:\n{}",
                tail(&first.process.stderr(), 40)
            )
        });
    let exited = signalled.elapsed();
    let log = first.process.stderr();
    assert!(
        status.success(),
        "worker-first should stop cleanly after abandoning its batch, got {status} after {exited:?}; stderr:\n{}",
        tail(&log, 40)
    );
    assert!(
        log.contains("after the drain deadline"),
        "worker-first should give up its batch at the deadline (exit {status}, after {exited:?}); stderr:\n{}",
        tail(&log, 40)
    );
    assert!(
        first.stored_task_ids().is_empty(),
        "the abandoned batch must not be stored: {:?}",
        first.stored_task_ids()
    );
    eprintln!("worker-first gave its batch up and exited ({status}) {exited:?} after SIGTERM");

    let second = run.spawn_worker("worker-second", &[]);
    run.wait_verified(Duration::from_secs(300));
    assert_eq!(
        second.tasks("ok"),
        TASKS as f64,
        "each task stored once, by worker-second"
    );
    assert_eq!(second.tasks("dead_lettered"), 0.0);
    let dead = services.peek_messages(&run.dead_letter_queue, 10);
    assert!(dead.is_empty(), "no task may be dead-lettered: {dead:?}");
}

#[test]
fn bad_messages_are_dead_lettered_with_a_reason_while_a_sweep_completes() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let run = TestRun::new(
        &services,
        "badinput",
        SweepConfig {
            models: vec!["training_seed_01".into()],
            layers: "conv1,fc8".into(),
            channels: "0-3".into(),
            ..SweepConfig::default()
        },
    );
    // the worker declares the queues, so the raw publishes below are routed
    let worker = run.spawn_worker("worker", &[]);

    let seed01 = lucid_e2e::fixture_model("training_seed_01");
    let missing_model = run.dir.path().join("no-such-model/training_seed_99");
    let garbage_model = run.dir.path().join("garbage/training_seed_03");
    std::fs::create_dir_all(&garbage_model).expect("create the garbage checkpoint folder");
    std::fs::write(
        garbage_model.join("model.ckpt_epoch89.index"),
        (0..256u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .expect("write the garbage checkpoint");

    let mut unsupported = run.task_json("training_seed_01", "conv1", 0, &seed01);
    unsupported["schema_version"] = 99.into();
    // (message id, body, what x-lucid-reason must say)
    let bad: Vec<(String, String, Vec<String>)> = vec![
        (
            format!("{}/malformed", run.run_id),
            r#"{"schema_version": 1, "task_id": "#.to_string(),
            vec!["malformed task message".into()],
        ),
        (
            format!("{}/schema-99", run.run_id),
            unsupported.to_string(),
            vec!["unsupported task schema_version 99".into()],
        ),
        (
            format!("{}/training_seed_99/conv1/0000", run.run_id),
            run.task_json("training_seed_99", "conv1", 0, &missing_model)
                .to_string(),
            vec![
                "cannot load model".into(),
                format!("{} does not exist", missing_model.display()),
            ],
        ),
        (
            format!("{}/training_seed_01/conv9/0000", run.run_id),
            run.task_json("training_seed_01", "conv9", 0, &seed01)
                .to_string(),
            vec![r#"unknown layer "conv9""#.into()],
        ),
        (
            format!("{}/training_seed_01/conv1/0500", run.run_id),
            run.task_json("training_seed_01", "conv1", 500, &seed01)
                .to_string(),
            vec!["channel 500 out of range for layer conv1: it has 16 channels".into()],
        ),
        (
            format!("{}/training_seed_03/conv1/0000", run.run_id),
            run.task_json("training_seed_03", "conv1", 0, &garbage_model)
                .to_string(),
            vec![
                "cannot load model".into(),
                garbage_model
                    .join("model.ckpt_epoch89.index")
                    .display()
                    .to_string(),
            ],
        ),
        (
            format!("{}/oversize", run.run_id),
            format!(
                r#"{{"schema_version": 1, "padding": "{}"}}"#,
                "x".repeat(70_000)
            ),
            vec!["task message is too large".into(), "limit 65536".into()],
        ),
        (
            format!("{}/bad-identifier", run.run_id),
            {
                let mut task = run.task_json("training_seed_01", "conv1", 0, &seed01);
                task["seed"] = "../../etc".into();
                task.to_string()
            },
            vec!["undecodable task: task message has an invalid".into()],
        ),
    ];
    for (id, body, _) in &bad {
        services.publish_raw(&run.tasks_queue, id, body);
    }
    let submitted = run.coordinator("submit", &["--json"]);
    let submitted = json_document(submitted.expect_success("submit --json"));
    assert_eq!(submitted["published"], 8, "{submitted}");

    run.wait_verified(Duration::from_secs(180));
    wait_until(
        Duration::from_secs(60),
        &format!(
            "the worker to count {} dead-lettered tasks (lucid_worker_tasks_total{{outcome=\"dead_lettered\"}})",
            bad.len()
        ),
        || worker.tasks("dead_lettered") >= bad.len() as f64,
    );
    assert_eq!(worker.tasks("dead_lettered"), bad.len() as f64);
    assert_eq!(worker.tasks("ok"), 8.0, "the good tasks");

    // one read of the dead-letter queue (the messages go back, nothing consumes it)
    let dead: BTreeMap<String, lucid_e2e::PeekedMessage> = services
        .peek_messages(&run.dead_letter_queue, 50)
        .into_iter()
        .map(|m| (m.message_id.clone().unwrap_or_default(), m))
        .collect();
    assert_eq!(
        dead.len(),
        bad.len(),
        "exactly the bad messages are dead-lettered: {:?}",
        dead.keys().collect::<Vec<_>>()
    );
    for (id, body, expected) in &bad {
        let message = dead
            .get(id)
            .unwrap_or_else(|| panic!("{id} is not in {}: {dead:?}", run.dead_letter_queue));
        let reason = message
            .reason
            .as_deref()
            .unwrap_or_else(|| panic!("{id} has no x-lucid-reason header: {message:?}"));
        eprintln!("dead-lettered {id}: {reason}");
        for part in expected {
            assert!(
                reason.contains(part.as_str()),
                "x-lucid-reason of {id} should mention {part:?}, got {reason:?}"
            );
        }
        assert_eq!(message.task_id_header.as_deref(), Some(id.as_str()));
        assert_eq!(&message.payload, body, "{id} keeps its body unchanged");
    }
    // the invariant check (verify --json --expect-dead): the run's dead letters are exactly the
    // poison messages, every planned task is stored once, and the worker's counters agree
    let poison: Vec<String> = bad.iter().map(|(id, _, _)| id.clone()).collect();
    run.assert_invariants(&poison, None, &[&worker], Duration::from_secs(60));
}

#[test]
fn invalid_spec_is_refused_before_anything_is_published() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let run = TestRun::new(&services, "badspec", SweepConfig::default());
    let output = run.coordinator_with_sets("submit", &["render.steps=0"], &[]);
    assert!(
        !output.status.success(),
        "submit with render.steps = 0 should fail; stdout:\n{}",
        output.stdout
    );
    assert!(
        output.stderr.contains("render.steps"),
        "the error should name render.steps; stderr:\n{}",
        output.stderr
    );
    let queued = services.peek_messages(&run.tasks_queue, 10);
    assert!(
        queued.is_empty(),
        "nothing may be published: {queued:?} in {}",
        run.tasks_queue
    );
    // nor stored: the run has no manifest
    let verify = run.coordinator("verify", &["--json"]);
    let report = json_document(&verify.stdout);
    let kinds: Vec<&str> = report["violations"]
        .as_array()
        .map(|v| v.iter().filter_map(|v| v["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !verify.status.success() && kinds.contains(&"missing_manifest"),
        "the refused submit must not write run.json; verify said:\n{}{}",
        verify.stdout,
        verify.stderr
    );
    // a valid spec for the same run is then accepted as if nothing happened
    assert_eq!(run.expected_tasks(), 48);
}

/// Four views of every unit (issue 17) swept by two workers through RabbitMQ and S3: every (unit,
/// view) stored exactly once (a diversity task as three PNGs and one sidecar), `verify` clean,
/// a resubmit publishing nothing; an unknown view is refused at `plan` naming the valid ones.
#[test]
fn two_workers_render_four_views_of_every_unit_exactly_once() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let config = SweepConfig {
        models: vec!["training_seed_01".into()],
        layers: "conv1,conv3".into(),
        channels: "0-2".into(),
        steps: 2,
        size: 64,
        views: ["channel", "negative_channel", "neuron", "diversity:3"]
            .map(String::from)
            .to_vec(),
        ..SweepConfig::default()
    };
    let misspelt = SweepConfig {
        views: vec!["channel".into(), "diverse".into()],
        ..config.clone()
    };
    let refused = TestRun::new(&services, "badview", misspelt).coordinator("plan", &[]);
    assert!(!refused.status.success(), "an unknown view must be refused");
    assert!(
        refused.stderr.contains("unknown view \"diverse\"")
            && refused.stderr.contains(lucid_proto::view::VALID_VIEWS),
        "the refusal names the view and the valid ones: {}",
        refused.stderr
    );
    // 2 layers × 3 channels × 4 views; per unit 1 + 1 + 1 + 3 PNGs and 4 sidecars, and run.json
    let run = sweep_with_two_workers(&services, "views", config, 24, Some(6 * 10 + 1));
    let key = format!(
        "renders/{}/training_seed_01/conv3/0002.diversity-3.json",
        run.run_id
    );
    let bytes = services
        .get_object(lucid_e2e::run::BUCKET, &key)
        .unwrap_or_else(|| panic!("{key} is stored"));
    let sidecar = lucid_proto::ResultSidecar::decode(&bytes).expect("sidecar");
    assert_eq!(sidecar.view, lucid_proto::View::Diversity { copies: 3 });
    let again = json_document(
        run.coordinator("submit", &["--json"])
            .expect_success("resubmit"),
    );
    assert_eq!(again["published"], 0, "{again}");
}

/// A network that is not alexnet_v2, with its weights and its description both on S3, swept by two
/// workers: every (layer, channel) stored exactly once with a sidecar naming the network, `verify`
/// clean, a resubmit publishing nothing, and the gallery built.
#[test]
fn two_workers_sweep_a_described_network_read_from_s3() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let fixtures = lucid_testkit::fixtures::fixtures_dir().join("networks");
    let prefix = lucid_e2e::unique_name("network");
    let weights = services.upload_model(
        &fixtures.join("tiny_resnet"),
        lucid_e2e::run::BUCKET,
        &format!("{prefix}/weights"),
    );
    let nets = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        fixtures.join("tiny_resnet.toml"),
        nets.path().join("tiny_resnet.toml"),
    )
    .expect("copy description");
    let description = format!(
        "{}/tiny_resnet.toml",
        services.upload_model(
            nets.path(),
            lucid_e2e::run::BUCKET,
            &format!("{prefix}/nets")
        )
    );
    let entry = format!("{{ path = {weights:?}, network = {description:?} }}");
    // three taps (relu, layer1, head) × channels 0-2
    let run = sweep_models_with_two_workers(
        &services,
        "network",
        &[("tiny", &entry)],
        "0-2",
        (4, 224),
        9,
    );
    let network = lucid_proto::NetworkRef::parse(&description).expect("network");
    for layer in ["relu", "layer1", "head"] {
        let key = format!("renders/{}/tiny/{layer}/0002.json", run.run_id);
        let bytes = services
            .get_object(lucid_e2e::run::BUCKET, &key)
            .unwrap_or_else(|| panic!("{key} is stored"));
        let sidecar = lucid_proto::ResultSidecar::decode(&bytes).expect("sidecar");
        assert_eq!(sidecar.network, network, "{key}");
    }
    let again = json_document(
        run.coordinator("submit", &["--json"])
            .expect_success("resubmit"),
    );
    assert_eq!(again["published"], 0, "{again}");
    run.coordinator("gallery", &["--json"])
        .expect_success("gallery");
}

/// PyTorch models exported by `lucid-export` (torchvision's resnet18, vgg11_bn and googlenet,
/// random weights), their export folders on S3, swept by two workers through RabbitMQ, every
/// channel of three layers each: every (model, layer, channel) stored once with a sidecar naming the
/// network, `verify` clean.
#[test]
fn two_workers_sweep_every_channel_of_three_torchscript_exports_read_from_s3() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let Some(exports) = lucid_testkit::fixtures::exports_dir() else {
        return;
    };
    let prefix = lucid_e2e::unique_name("export");
    let entries: Vec<(&str, String)> = ["resnet18", "vgg11_bn", "googlenet"]
        .into_iter()
        .map(|name| {
            let export = services.upload_model(
                &exports.join(name),
                lucid_e2e::run::BUCKET,
                &format!("{prefix}/{name}"),
            );
            (
                name,
                format!("{{ path = {export:?}, network = \"torchscript\" }}"),
            )
        })
        .collect();
    let entries: Vec<(&str, &str)> = entries.iter().map(|(n, e)| (*n, e.as_str())).collect();
    // resnet18: conv1 64 + layer1 64 + layer2.0.conv1 128; vgg11_bn: features.2 64 + .6 128 +
    // .10 256; googlenet: conv1 64 + conv2 64 + inception3a 256
    let run = sweep_models_with_two_workers(&services, "export", &entries, "all", (2, 32), 1088);
    for (model, layer, last) in [
        ("resnet18", "layer2.0.conv1", 127),
        ("vgg11_bn", "features.10", 255),
        ("googlenet", "inception3a", 255),
    ] {
        let key = format!("renders/{}/{model}/{layer}/{last:04}.json", run.run_id);
        let bytes = services
            .get_object(lucid_e2e::run::BUCKET, &key)
            .unwrap_or_else(|| panic!("{key} is stored"));
        let sidecar = lucid_proto::ResultSidecar::decode(&bytes).expect("sidecar");
        assert_eq!(sidecar.network, lucid_proto::NetworkRef::TorchScript);
    }
}

/// A run of the models `(id, TOML entry)`, every layer, `channels`, `(steps, size)`, rendered by two workers: the
/// submit publishes `expected` tasks, `verify` finds them all and nothing else, and the workers
/// rendered each once.
fn sweep_models_with_two_workers(
    services: &Services,
    tag: &str,
    entries: &[(&str, &str)],
    channels: &str,
    (steps, size): (u32, u32),
    expected: u64,
) -> TestRun {
    let config = SweepConfig {
        models: Vec::new(),
        model_entries: entries
            .iter()
            .map(|(id, entry)| ((*id).into(), (*entry).into()))
            .collect(),
        layers: "all".into(),
        channels: channels.into(),
        steps,
        size,
        prefetch: 2,
        ..SweepConfig::default()
    };
    sweep_with_two_workers(services, tag, config, expected, None)
}

/// The run of `config` rendered by two workers: the submit publishes `expected` tasks, `verify`
/// finds them all and nothing else (and `listed` objects, when given), and the workers rendered each
/// once.
fn sweep_with_two_workers(
    services: &Services,
    tag: &str,
    config: SweepConfig,
    expected: u64,
    listed: Option<u64>,
) -> TestRun {
    let run = TestRun::new(services, tag, config);
    let worker_a = run.spawn_worker("worker-a", &[]);
    let worker_b = run.spawn_worker("worker-b", &[]);
    let first = json_document(
        run.coordinator("submit", &["--json"])
            .expect_success("submit"),
    );
    assert_eq!(
        (&first["published"], &first["expected"]),
        (&expected.into(), &expected.into()),
        "{first}"
    );
    run.wait_verified(Duration::from_secs(600));
    assert_verified(&run, expected, listed);
    assert_eq!(worker_a.tasks("ok") + worker_b.tasks("ok"), expected as f64);
    run
}

/// `verify --json` of `run` succeeds with `complete` tasks, no violation and (when given) `listed`
/// objects under the run: everything listed is accounted for.
fn assert_verified(run: &TestRun, complete: u64, listed: Option<u64>) {
    let report = json_document(
        run.coordinator("verify", &["--json"])
            .expect_success("verify"),
    );
    assert_eq!(
        (&report["complete"], &report["violations"]),
        (&complete.into(), &serde_json::json!([])),
        "verify report: {report}"
    );
    if let Some(listed) = listed {
        assert_eq!(report["listed"], listed, "verify report: {report}");
    }
}
