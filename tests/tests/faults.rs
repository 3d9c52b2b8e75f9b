//! Fault injection through the real binaries and services (issue 7): a worker killed with SIGKILL
//! mid-batch, RabbitMQ restarted mid-sweep, RabbitMQ down for longer than lapin's recovery, SeaweedFS stopped for 20 s mid-sweep, a model cache
//! that cannot be written, and a store that refuses every result (retried until the delivery limit). After each, the invariant check ([`TestRun::assert_invariants`]: every
//! task stored exactly once, the dead-letter queue holding exactly what it should, the metrics
//! agreeing) and a scan of every log of the run for the credentials.
//!
//! The tests that stop a shared service hold [`exclusive_services`] for their whole run, the others
//! [`shared_services`].

use std::time::{Duration, Instant};

use lucid_e2e::{
    PrivateAmqpUser, Restore, Services, SweepConfig, TestRun, Worker, exclusive_services,
    metric_value, rabbitmqctl, services_script, shared_services, tail, wait_for, wait_until,
};

/// A run of one seed's conv1 channels `0..n` at `steps` steps, connecting as its own RabbitMQ user.
fn conv1_run(services: &Services, tag: &str, n: u32, steps: u32) -> (TestRun, PrivateAmqpUser) {
    let mut run = TestRun::new(services, tag, SweepConfig::conv1(n, steps, 8));
    let user = run.use_private_amqp_user();
    (run, user)
}

/// The credentials a run's logs must never show.
fn scan_logs(run: &TestRun, user: &PrivateAmqpUser) {
    let (files, bytes) =
        run.assert_no_secrets_in_logs(&[&user.password, &run.services.s3_secret_key]);
    eprintln!("secrets scan: {files} files, {bytes} bytes of logs, no credential found");
}

fn stored(worker: &Worker) -> f64 {
    worker.tasks("ok")
}

/// Stops RabbitMQ's application (every connection drops, the quorum queues keep their messages).
/// The returned guard starts it again, even if an assertion fails before [`start_rabbitmq`] is called.
fn stop_rabbitmq() -> Restore {
    let restore = Restore::new(|| {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .status();
    });
    rabbitmqctl(&["stop_app"]);
    restore
}

/// Starts RabbitMQ's application and waits until it serves again.
fn start_rabbitmq() {
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
}

/// What became of the deliveries a broker outage cut off, from the workers' logs and counters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Redeliveries {
    /// Results stored whose ack was lost with the connection ("acknowledgement lost").
    lost: f64,
    /// Copies acked by the idempotency check, without rendering (`skipped_existing`).
    skipped: f64,
    /// Renders beyond one per task (`ok` − tasks): a copy that started before the first render was
    /// stored is rendered again and overwrites the same keys (at-least-once delivery).
    rendered_again: f64,
}

impl Redeliveries {
    fn of(workers: &[&Worker], tasks: u32) -> Self {
        let sum = |outcome: &str| workers.iter().map(|w| w.tasks(outcome)).sum::<f64>();
        let lost = workers
            .iter()
            .map(|w| w.process.stderr().matches("acknowledgement lost").count() as f64)
            .sum();
        Self {
            lost,
            skipped: sum("skipped_existing"),
            rendered_again: sum("ok") - f64::from(tasks),
        }
    }

    /// Every copy of a lost ack was settled (skipped or rendered again). Deliveries skipped as
    /// stale, or dropped with their connection, settle nothing, and their copies settle the task.
    fn all_settled(&self) -> bool {
        self.skipped + self.rendered_again >= self.lost
    }
}

#[test]
fn sigkill_mid_batch_tasks_are_redelivered_and_completed_by_another_worker() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let _shared = shared_services();
    const TASKS: u32 = 12;
    // 64 steps: the first batch takes about 2 s, so the kill lands before anything is stored
    let (run, user) = conv1_run(&services, "sigkill", TASKS, 64);
    let mut victim = run.spawn_worker("worker-victim", &[]);
    run.submit();
    wait_until(
        Duration::from_secs(60),
        "worker-victim to hold 8 tasks (lucid_worker_in_flight >= 8)",
        || metric_value(&victim.scrape(), "lucid_worker_in_flight", &[]).is_some_and(|v| v >= 8.0),
    );
    assert!(
        victim.stored_task_ids().is_empty(),
        "the kill should land mid-batch, but worker-victim already stored {:?}",
        victim.stored_task_ids()
    );
    victim.process.signal(libc::SIGKILL);
    let status = victim
        .process
        .wait_timeout(Duration::from_secs(10))
        .expect("a SIGKILLed worker exits at once");
    assert!(!status.success(), "SIGKILL: {status}");

    let rescuer = run.spawn_worker("worker-rescuer", &[]);
    let watch = run.spawn_watch();
    let report = run.assert_invariants(&[], Some(&watch), &[&rescuer], Duration::from_secs(240));
    eprintln!("after SIGKILL: {report}");
    assert_eq!(
        stored(&rescuer),
        f64::from(TASKS),
        "the rescuer renders every task, the killed worker's included"
    );
    scan_logs(&run, &user);
}

#[test]
fn rabbitmq_restart_mid_sweep_workers_and_watch_reconnect_and_the_sweep_completes() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let _exclusive = exclusive_services();
    // 128 steps: each worker's batches of 4 take several seconds, so the broker goes down while
    // renders are running (with 16 steps both workers had finished before `rabbitmqctl stop_app`
    // took effect on a fast machine)
    const TASKS: u32 = 16;
    let (run, user) = conv1_run(&services, "rabbitrestart", TASKS, 128);
    let worker_a = run.spawn_worker("worker-a", &[]);
    let worker_b = run.spawn_worker("worker-b", &[]);
    let watch = run.spawn_watch();
    run.submit();
    wait_until(Duration::from_secs(120), "the first stored image", || {
        stored(&worker_a) + stored(&worker_b) >= 1.0
    });

    // stop the broker's application and start it again after 5 s
    let stopped = Instant::now();
    let before = stored(&worker_a) + stored(&worker_b);
    let _restore = stop_rabbitmq();
    std::thread::sleep(Duration::from_secs(5));
    start_rabbitmq();
    eprintln!(
        "RabbitMQ was down for {:?}; {before} tasks were stored before",
        stopped.elapsed()
    );

    // the workers reconnect (lapin's recovery, then their own loop), and every task whose ack was
    // lost comes back from the broker and is acked by the idempotency check without rendering
    wait_until(
        Duration::from_secs(120),
        "both workers to consume again after the restart",
        || {
            services
                .queue_info(&run.tasks_queue)
                .is_some_and(|q| q.consumers >= 2)
        },
    );
    wait_until(
        Duration::from_secs(120),
        "every task whose ack was lost to come back and be settled",
        || Redeliveries::of(&[&worker_a, &worker_b], TASKS).all_settled(),
    );
    let report = run.assert_invariants(
        &[],
        Some(&watch),
        &[&worker_a, &worker_b],
        Duration::from_secs(300),
    );
    eprintln!("after the broker restart: {report}");
    for worker in [&worker_a, &worker_b] {
        assert_eq!(
            worker.tasks("dead_lettered"),
            0.0,
            "{} dead-lettered a task",
            worker.process.name()
        );
    }
    // a batch stored during the outage could not be acked: the broker redelivered it, and the
    // idempotency check acked the copy without rendering it again, unless the copy started before
    // the first render was stored
    let copies = Redeliveries::of(&[&worker_a, &worker_b], TASKS);
    let failed = worker_a.tasks("failed") + worker_b.tasks("failed");
    eprintln!("after the broker restart: {copies:?}, {failed} failed");
    assert!(
        copies.lost > 0.0,
        "the restart should land mid-sweep: a batch rendering then loses its acks"
    );
    assert_eq!(
        copies.skipped + copies.rendered_again,
        copies.lost,
        "each copy of a lost ack is settled exactly once"
    );
    // each worker's connection watcher logs the loss and then lapin's reconnection (or, had lapin
    // given up, the serve loop's own reconnect)
    for worker in [&worker_a, &worker_b] {
        let log = worker.process.stderr();
        assert!(
            log.contains("lost the connection to rabbitmq")
                && (log.contains("reconnected to rabbitmq")
                    || log.matches("connected to rabbitmq").count() >= 2),
            "{} should log the lost connection and the reconnection:\n{}",
            worker.process.name(),
            tail(&log, 40)
        );
    }
    scan_logs(&run, &user);
}

#[test]
fn a_rabbitmq_outage_longer_than_lapins_recovery_is_ridden_out_by_the_workers_own_reconnect_loop() {
    // lapin's automatic recovery retries for about 30 s (10 attempts), then its I/O thread ends
    // without a word and the connection stays in recovery; the queue crate declares it failed
    // after `RECOVERY_DEADLINE` (60 s). The broker stays down until the worker's own loop has taken
    // over, so this covers the second line of defence: the worker stays up and unready, connects
    // afresh with backoff, and completes the run afterwards
    let Some(services) = Services::from_env() else {
        return;
    };
    let _exclusive = exclusive_services();
    const TASKS: u32 = 12;
    // 192 steps: batches of several seconds, so renders are running when the broker goes down
    let (run, user) = conv1_run(&services, "rabbitlong", TASKS, 192);
    let mut worker = run.spawn_worker("worker", &[]);
    let watch = run.spawn_watch();
    run.submit();
    wait_until(Duration::from_secs(120), "the first stored image", || {
        stored(&worker) >= 1.0
    });

    let before = stored(&worker);
    let stopped = Instant::now();
    let _restore = stop_rabbitmq();
    // while lapin is still recovering, the worker already counts itself disconnected and unready
    let readyz = format!("{}/readyz", worker.base_url());
    let connected =
        |worker: &Worker| metric_value(&worker.scrape(), "lucid_worker_broker_connected", &[]);
    wait_until(
        Duration::from_secs(10),
        "lucid_worker_broker_connected to read 0 and /readyz to answer 503",
        || connected(&worker) == Some(0.0) && services.get_status(&readyz) == Some(503),
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "the loss should show before lapin's recovery ends"
    );
    let took_over = |log: &str| {
        log.contains("consumer failed; reconnecting")
            || log.contains("consumer closed; reconnecting")
    };
    while !took_over(&worker.process.stderr()) {
        assert!(
            stopped.elapsed() < Duration::from_secs(150),
            "the worker's own loop did not take over from lapin in 150 s:\n{}",
            tail(&worker.process.stderr(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let lapin_gave_up = stopped.elapsed();
    assert!(
        lapin_gave_up >= Duration::from_secs(30),
        "lapin's recovery should have its 30 s (and the deadline its 60 s) first, not {lapin_gave_up:?}"
    );
    assert_eq!(
        services.get_status(&readyz),
        Some(503),
        "a worker without a broker connection is not ready"
    );
    assert!(
        worker.process.is_running(),
        "the worker must outlive the broker outage:\n{}",
        tail(&worker.process.stderr(), 30)
    );
    // the worker's own loop is now connecting afresh (with lapin's backoff on each connect); the
    // broker comes back during those attempts
    std::thread::sleep(Duration::from_secs(3));
    start_rabbitmq();
    let down = stopped.elapsed();
    eprintln!(
        "RabbitMQ was down for {down:?} with {before} of {TASKS} tasks stored; after \
         {lapin_gave_up:?} and the worker's own loop took over"
    );

    wait_until(
        Duration::from_secs(120),
        "the worker to consume again after the outage",
        || {
            services
                .queue_info(&run.tasks_queue)
                .is_some_and(|q| q.consumers >= 1)
        },
    );
    wait_until(
        Duration::from_secs(120),
        "every task whose ack was lost to come back and be settled",
        || Redeliveries::of(&[&worker], TASKS).all_settled(),
    );
    let report = run.assert_invariants(&[], Some(&watch), &[&worker], Duration::from_secs(300));
    eprintln!("after the long broker outage: {report}");
    assert_eq!(
        worker.tasks("dead_lettered"),
        0.0,
        "nothing may be given up"
    );
    assert_eq!(
        services.get_status(&readyz),
        Some(200),
        "the worker is ready again"
    );
    assert_eq!(
        connected(&worker),
        Some(1.0),
        "the worker counts itself connected again"
    );
    let copies = Redeliveries::of(&[&worker], TASKS);
    eprintln!("after the long broker outage: {copies:?}");
    assert!(
        copies.lost > 0.0,
        "the outage should land mid-sweep: a batch rendering then loses its acks"
    );
    assert_eq!(
        copies.skipped + copies.rendered_again,
        copies.lost,
        "each copy of a lost ack is settled exactly once"
    );
    let log = worker.process.stderr();
    assert!(
        log.contains("lost the connection to rabbitmq")
            && log.contains("the connection to rabbitmq failed"),
        "the worker should log the loss and the failed recovery:\n{}",
        tail(&log, 40)
    );
    scan_logs(&run, &user);
}

#[test]
fn a_20_s_storage_outage_mid_sweep_acks_nothing_and_the_sweep_completes() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let _exclusive = exclusive_services();
    const TASKS: u32 = 12;
    const OUTAGE: Duration = Duration::from_secs(20);
    // 96 steps: batches of about 3 s, so the store goes down while the worker still holds tasks
    let (run, user) = conv1_run(&services, "s3outage", TASKS, 96);
    let mut worker = run.spawn_worker("worker", &[]);
    let watch = run.spawn_watch();
    run.submit();
    wait_until(Duration::from_secs(120), "the first stored image", || {
        stored(&worker) >= 1.0
    });

    let _restore = Restore::new(|| services_script("start", "seaweedfs"));
    services_script("stop", "seaweedfs");
    let down = Instant::now();
    let acked_at_stop = stored(&worker);
    let mut unacked_seen = 0;
    while down.elapsed() < OUTAGE {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            stored(&worker),
            acked_at_stop,
            "a task was counted stored (and acked) while the store was down"
        );
        assert_eq!(
            worker.tasks("dead_lettered"),
            0.0,
            "nothing may be given up"
        );
        if let Some(q) = services.queue_info(&run.tasks_queue) {
            unacked_seen = unacked_seen.max(q.unacked);
        }
    }
    assert!(
        unacked_seen > 0,
        "the worker should hold unacked tasks during the outage"
    );
    assert!(
        worker.process.stderr().contains("retry") || worker.process.stderr().contains("Retry"),
        "the worker should log its storage retries:\n{}",
        tail(&worker.process.stderr(), 20)
    );
    services_script("start", "seaweedfs");
    eprintln!(
        "storage was down for {:?} with {acked_at_stop} of {TASKS} tasks stored and up to {unacked_seen} held unacked",
        down.elapsed()
    );

    let report = run.assert_invariants(&[], Some(&watch), &[&worker], Duration::from_secs(300));
    eprintln!("after the storage outage: {report}");
    assert!(
        worker.process.is_running(),
        "the worker survives the outage"
    );
    scan_logs(&run, &user);
}

#[test]
fn a_failure_that_keeps_coming_back_is_retried_until_the_delivery_limit_then_dead_lettered() {
    // A worker with a wrong S3 secret key: every upload is refused (403), an error the store does
    // not call transient, which the worker still retries (the task is fine; the store refused). Each
    // task is requeued until its fifth delivery (`queue.delivery_limit = 5`), then dead-lettered
    // with the reason and the count. `retry-dead` and a healthy worker then complete the run.
    let Some(services) = Services::from_env() else {
        return;
    };
    let _shared = shared_services();
    const TASKS: u32 = 2;
    const LIMIT: u32 = 5;
    let (run, user) = conv1_run(&services, "retries", TASKS, 2);
    let wrong_secret = format!("not-{}", services.s3_secret_key);
    let mut refused = run.start_worker(
        "refused",
        &[],
        &[("LUCID_S3_SECRET_ACCESS_KEY", wrong_secret)],
    );
    run.wait_ready(&mut refused);
    run.submit();
    let started = Instant::now();
    while refused.tasks("dead_lettered") < f64::from(TASKS) {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the tasks were not dead-lettered in 180 s; worker log:\n{}",
            tail(&refused.process.stderr(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(refused.tasks("ok"), 0.0, "nothing can have been stored");
    assert_eq!(
        refused.tasks("failed"),
        f64::from(TASKS * (LIMIT - 1)),
        "each task is requeued after each of its first {} deliveries",
        LIMIT - 1
    );
    let dead = wait_for(
        Duration::from_secs(30),
        "the dead letters in their queue",
        || {
            let dead = services.peek_messages(&run.dead_letter_queue, 10);
            (dead.len() == TASKS as usize).then_some(dead)
        },
    );
    eprintln!(
        "dead letter reason: {}",
        dead[0].reason.as_deref().unwrap_or_default()
    );
    for letter in &dead {
        let reason = letter.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("storing the result failed")
                && reason.ends_with(&format!("(gave up after {LIMIT} attempts)")),
            "dead letter {:?} has reason {reason:?}",
            letter.message_id
        );
    }
    refused.process.terminate();

    let moved = run.coordinator("retry-dead", &["--json"]);
    let moved = lucid_e2e::run::json_document(moved.expect_success("lucid-coordinator retry-dead"));
    assert_eq!(
        moved["moved"], TASKS,
        "retry-dead moves both dead letters back: {moved}"
    );
    let healthy = run.spawn_worker("healthy", &[]);
    let report = run.assert_invariants(&[], None, &[&healthy], Duration::from_secs(120));
    eprintln!("after {LIMIT} refused deliveries per task and retry-dead: {report}");
    scan_logs(&run, &user);
}

#[test]
fn an_unusable_model_cache_stops_the_worker_and_loses_no_task() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let _shared = shared_services();
    const TASKS: u32 = 4;
    let (run, user) = conv1_run(&services, "cachefault", TASKS, 4);
    // the model comes from S3, so the worker must write it into its cache
    let model = services.upload_model(
        &lucid_e2e::fixture_model("training_seed_01"),
        lucid_e2e::BUCKET,
        &format!("models-{}/training_seed_01", run.run_id),
    );
    let model_set = format!("models.training_seed_01={model}");
    assert_eq!(
        run.coordinator_with_sets("submit", &[&model_set], &[])
            .expect_success("submit")
            .trim(),
        format!("published {TASKS} of {TASKS} tasks (0 already stored)")
    );

    // an unwritable cache: its folder's parent is a file
    let blocker = run.dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("write the blocking file");
    let mut cases = vec![("unwritable", blocker.join("cache"), "Not a directory")];
    // a full disk: a 16 KiB tmpfs (needs root; skipped with a message otherwise)
    let tiny = run.dir.path().join("tiny");
    std::fs::create_dir_all(&tiny).expect("create the mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(&tiny)
        .status()
        .is_ok_and(|s| s.success());
    let unmount_dir = tiny.clone();
    let _unmount = Restore::new(move || {
        let _ = std::process::Command::new("umount")
            .arg(&unmount_dir)
            .status();
    });
    if mounted {
        cases.push(("full", tiny.clone(), "No space left on device"));
    } else {
        // the one policy: under CI a case that cannot run fails the test
        lucid_testkit::skip_or_fail(
            "cannot mount a tmpfs (needs root); the full-disk case of the model cache",
            "run the tests as root, as CI does",
        );
    }
    for (i, (case, cache_dir, expected)) in cases.iter().enumerate() {
        let mut worker = run.start_worker(
            &format!("worker-{case}-cache"),
            &[&model_set],
            &[("LUCID_CACHE_DIR", cache_dir.display().to_string())],
        );
        let status = worker
            .process
            .wait_timeout(Duration::from_secs(120))
            .unwrap_or_else(|| panic!("the worker with a {case} cache should stop by itself"));
        let stderr = worker.process.stderr();
        assert!(!status.success(), "{case} cache: it must exit non-zero");
        assert!(
            stderr.contains("cannot continue") && stderr.contains(expected),
            "{case} cache: the error should say why ({expected:?}):\n{}",
            tail(&stderr, 20)
        );
        assert!(
            worker.stored_task_ids().is_empty(),
            "{case} cache: nothing can have been stored"
        );
        // every task is back in the queue, none dead-lettered
        wait_until(
            Duration::from_secs(30),
            &format!(
                "{case} cache: all {TASKS} tasks ready again in {}",
                run.tasks_queue
            ),
            || {
                services
                    .queue_info(&run.tasks_queue)
                    .is_some_and(|q| q.ready == u64::from(TASKS))
            },
        );
        assert!(
            services
                .peek_messages(&run.dead_letter_queue, 10)
                .is_empty(),
            "{case} cache: nothing may be dead-lettered"
        );
        eprintln!(
            "{case} cache (case {i}): worker stopped with: {}",
            tail(&stderr, 1)
        );
    }

    // a worker with a usable cache finishes the run
    let healthy = run.spawn_worker("worker-healthy", &[&model_set]);
    let report = run.assert_invariants(&[], None, &[&healthy], Duration::from_secs(240));
    eprintln!("after the cache faults: {report}");
    scan_logs(&run, &user);
}

#[test]
fn local_mode_on_a_full_disk_stops_with_the_cause_and_records_nothing_unfinished_as_done() {
    // `lucid-worker local` (no services) writing its results to a 64 KiB tmpfs: the disk fills
    // during the first batch. Needs root for the mount; skipped with a message otherwise.
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("create the mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        lucid_testkit::skip_or_fail(
            "cannot mount a tmpfs (needs root) for the full-disk local run",
            "run the tests as root, as CI does",
        );
        return;
    }
    let unmount_dir = out.clone();
    let _unmount = Restore::new(move || {
        let _ = std::process::Command::new("umount")
            .arg(&unmount_dir)
            .status();
    });
    let spec = dir.path().join("local.toml");
    let model = lucid_e2e::workspace_root().join("fixtures/demo/training_seed_01");
    std::fs::write(
        &spec,
        format!(
            "run_id = \"fulldisk\"\nlayers = [\"conv1\"]\nchannels = \"0-7\"\n[models]\ntraining_seed_01 = {:?}\n[render]\nsteps = 4\nsize = 96\n[storage]\nkind = \"local\"\nlocal_dir = {:?}\n",
            model.display().to_string(),
            out.display().to_string()
        ),
    )
    .expect("write the spec");
    let output = std::process::Command::new(lucid_e2e::binary("lucid-worker"))
        .args([
            "local",
            "--device",
            "cpu",
            "--no-gallery",
            "--quiet",
            "--spec",
        ])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run lucid-worker local");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a full disk must fail the run");
    assert!(
        stderr.contains("No space left on device"),
        "the error should name the cause:\n{stderr}"
    );
    // nothing half-written, and nothing counted done without both of its files
    let mut files = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".lucid-tmp")),
        "temporary files were left behind: {names:?}"
    );
    let sidecars: Vec<&std::path::PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n != "run.json"))
        .collect();
    for sidecar in &sidecars {
        assert!(
            sidecar.with_extension("png").is_file(),
            "{} has no PNG",
            sidecar.display()
        );
    }
    assert!(
        sidecars.len() < 8,
        "the disk was full, yet {} of 8 tasks look done",
        sidecars.len()
    );
    eprintln!(
        "full disk: stopped after {} of 8 tasks; stderr: {}",
        sidecars.len(),
        tail(&stderr, 2)
    );
}
