//! CLI and library tests of the coordinator against the real test services (`make services-start`;
//! `source <(scripts/services.sh env)`). A test that cannot reach them fails under CI and is reported
//! as skipped elsewhere (`lucid_e2e::Services::from_env`, the one policy of `lucid_testkit`).
//!
//! Each test gets its own `lucid_e2e::TestRun` (temp dir, spec, run id and queue names), so tests run
//! in parallel.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lucid_coordinator::commands::{SpecArgs, WatchArgs};
use lucid_coordinator::output::{
    self, CancelOutput, GalleryOutput, PlanOutput, RetryDeadOutput, StatusOutput, SubmitOutput,
    VerifyOutput,
};
use lucid_coordinator::verify::{self, Fetched, PngFacts, Violation};
use lucid_e2e::{Services, SweepConfig, fixture_model as fixture};
use lucid_proto::{
    KeyPrefix, Plan, Provenance, RenderOutcome, ResultId, ResultSidecar, SweepSpec, TaskMessage,
};
use lucid_queue::{Broker, QueueStats, Topology};
use lucid_storage::Store;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_lucid-coordinator");

/// The bucket and prefix of these tests' results (the end-to-end tests use their own).
const BUCKET: &str = "lucid-test";
const PREFIX: &str = "coordinator-tests";

/// One test's world: a `lucid_e2e::TestRun` (temp dir, spec, unique run id and queues, the test
/// services) with the two files the coordinator library reads when it runs in this process: the S3
/// credentials and the full AMQP URI. Dereferences to the run (`t.dir`, `t.run_id`, `t.services`).
struct TestRun {
    run: lucid_e2e::TestRun,
    spec_path: PathBuf,
    /// `--set` overrides every command and every in-process load of the spec gets.
    sets: Vec<String>,
}

impl std::ops::Deref for TestRun {
    type Target = lucid_e2e::TestRun;

    fn deref(&self) -> &Self::Target {
        &self.run
    }
}

impl TestRun {
    /// Both fixture seeds, every layer, `channels`, 16 steps; `None` when the test is skipped.
    fn new(name: &str, channels: &str) -> Option<Self> {
        let services = Services::from_env()?;
        let config = SweepConfig {
            channels: channels.to_owned(),
            steps: 16,
            prefetch: 256,
            ..SweepConfig::default()
        };
        let run = lucid_e2e::TestRun::new(&services, name, config);
        let creds = run.dir.path().join("s3-credentials");
        std::fs::write(
            &creds,
            format!(
                "access_key_id={}\nsecret_access_key={}\n",
                services.s3_access_key, services.s3_secret_key
            ),
        )
        .expect("write credentials");
        let uri_file = run.dir.path().join("amqp-uri");
        std::fs::write(&uri_file, &services.amqp_uri).expect("write uri file");
        let sets = vec![
            format!("storage.bucket={BUCKET}"),
            format!("storage.prefix={PREFIX}"),
            format!("storage.credentials_file={}", creds.display()),
            format!("queue.uri_file={}", uri_file.display()),
        ];
        Some(Self {
            spec_path: run.spec.clone(),
            run,
            sets,
        })
    }

    /// Runs `lucid-coordinator ARGS --spec SPEC --set …` as a process of the run.
    fn cli(&self, args: &[&str]) -> Output {
        let mut command = self.run.command(Path::new(BIN));
        command.args(args).arg("--spec").arg(&self.spec_path);
        for set in &self.sets {
            command.args(["--set", set]);
        }
        command
            .env("LUCID_CACHE_DIR", self.dir.path().join("cache"))
            .env("LUCID_LOG", "warn")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run lucid-coordinator")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?} failed: {}\nstdout: {stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The spec as the coordinator loads it, with the run's overrides and then `sets`.
    fn spec(&self, sets: &[&str]) -> SweepSpec {
        let sets: Vec<String> = self
            .sets
            .iter()
            .cloned()
            .chain(sets.iter().map(|s| (*s).to_owned()))
            .collect();
        lucid_coordinator::spec::load(&self.spec_path, &sets).expect("load spec")
    }

    fn spec_args(&self) -> SpecArgs {
        SpecArgs {
            file: self.spec_path.clone(),
            sets: self.sets.clone(),
        }
    }

    async fn plan(&self, spec: &SweepSpec) -> Plan {
        let cache = lucid_coordinator::models::ModelCache::new(self.dir.path().join("cache"));
        lucid_coordinator::plan::plan_run(spec, &cache, lucid_coordinator::plan::Digests::Skip)
            .await
            .expect("plan")
            .plan
    }

    async fn broker(&self, spec: &SweepSpec) -> Broker {
        Broker::connect(&self.services.amqp_uri, Topology::from_section(&spec.queue))
            .await
            .expect("connect broker")
    }

    async fn store(&self, spec: &SweepSpec) -> Store {
        let store = Store::from_section(&spec.storage).await.expect("store");
        store.ensure_bucket().await.expect("bucket");
        store
    }

    fn prefix(&self, spec: &SweepSpec) -> KeyPrefix {
        spec.storage.key_prefix().expect("prefix")
    }
}

async fn stats(broker: &Broker) -> QueueStats {
    broker.stats(None).await.expect("queue stats")
}

/// Waits until the ready count is `want` (quorum queue counts settle quickly but not instantly).
async fn wait_ready(broker: &Broker, want: u64) -> QueueStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(broker).await;
        if s.ready == want || Instant::now() > deadline {
            assert_eq!(s.ready, want, "timed out waiting for {want} ready tasks");
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn png_bytes(size: u32) -> Vec<u8> {
    lucid_gallery::encode_png(size, size, &vec![128u8; (size * size * 3) as usize]).expect("png")
}

fn sidecar_for(task: &TaskMessage, png: &[u8], created_at: &str) -> ResultSidecar {
    ResultSidecar::from_task(
        task,
        RenderOutcome {
            objective_start: 0.1,
            objective_end: 2.5,
            render_seconds: 0.5,
            png_sha256: Sha256::digest(png)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            further_copies: Vec::new(),
        },
        Provenance {
            worker_id: "test".into(),
            code_version: "test".into(),
            created_at: created_at.into(),
        },
    )
}

/// Uploads a PNG and a valid sidecar for each task, as a worker would.
async fn upload_results(store: &Store, prefix: &KeyPrefix, tasks: &[TaskMessage]) {
    let png = png_bytes(224);
    futures::stream::iter(tasks.iter().enumerate())
        .map(|(i, task)| {
            let png = png.clone();
            async move {
                let created = format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60);
                let sidecar = sidecar_for(task, &png, &created);
                let png_key = prefix.png_key_of(task, 0);
                let json_key = prefix.sidecar_key_of(task);
                store
                    .put(&png_key, png, "image/png")
                    .await
                    .expect("put png");
                store
                    .put(&json_key, sidecar.encode(), "application/json")
                    .await
                    .expect("put sidecar");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

#[test]
fn plan_counts_tasks_from_the_checkpoints() {
    let Some(t) = TestRun::new("plan", "all") else {
        return;
    };
    let plan: PlanOutput = output::parse(&t.ok(&["plan", "--json"])).expect("plan --json");
    let seeds: Vec<(&str, u64)> = plan
        .models
        .iter()
        .map(|s| (s.model_id.as_str(), s.tasks))
        .collect();
    assert_eq!(
        seeds,
        [("training_seed_01", 250), ("training_seed_02", 250)],
        "{plan:?}"
    );
    assert_eq!(plan.total_tasks, 500);
    let fc6 = plan.models[0]
        .layers
        .iter()
        .find(|l| l.layer.as_str() == "fc6")
        .expect("fc6 planned");
    assert_eq!((fc6.tasks, fc6.width), (64, 64));
    // the shipped default: the engine's own H200 measurement, labelled
    let rates = &plan.estimate.rates;
    assert!(rates.built_in, "{rates:?}");
    assert_eq!(
        (
            rates.device.as_str(),
            rates.batch.as_str(),
            rates.date.as_str()
        ),
        ("NVIDIA H200", "B=512", "2026-11-26")
    );
    assert_eq!(rates.precision, lucid_proto::spec::Precision::Bf16);
    assert!(plan.estimate.layers.iter().all(|l| l.measured));

    let plan: PlanOutput =
        output::parse(&t.ok(&["plan", "--set", "channels=0-3", "--json"])).expect("plan --json");
    assert_eq!(plan.models[0].tasks, 32);
    assert_eq!(plan.total_tasks, 64);

    let rates = t.dir.path().join("rates.json");
    std::fs::write(
        &rates,
        r#"{"schema_version":1,"device":"TestGPU","precision":"fp32","steps":16,"size":224,
            "date":"2026-01-02","code_version":"test",
            "layers":[{"layer":"conv1","batch":4,"images_per_second":1.0}]}"#,
    )
    .expect("write rates");
    let rate_arg = rates.display().to_string();
    let args = [
        "plan",
        "--set",
        "layers=conv1",
        "--rates",
        &rate_arg,
        "--json",
    ];
    let plan: PlanOutput = output::parse(&t.ok(&args)).expect("plan --json");
    // 32 conv1 tasks at 1 img/s
    let rates_used = &plan.estimate.rates;
    assert!(!rates_used.built_in);
    assert_eq!(
        (rates_used.path.as_str(), rates_used.device.as_str()),
        (rate_arg.as_str(), "TestGPU")
    );
    let conv1 = &plan.estimate.layers[0];
    assert_eq!(
        (
            conv1.layer.as_str(),
            conv1.tasks,
            conv1.images_per_second,
            conv1.seconds
        ),
        ("conv1", 32, 1.0, 32.0)
    );
    assert_eq!(plan.estimate.total_seconds, 32.0);

    // a malformed rates file is refused, naming the file and the field
    let text = std::fs::read_to_string(&rates).expect("read rates");
    std::fs::write(&rates, text.replace("\"batch\":4", "\"batch\":\"four\"")).expect("write");
    let out = t.cli(&["plan", "--rates", &rate_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("rates file {rate_arg}: field `layers[0].batch`")),
        "{stderr}"
    );
}

#[tokio::test]
async fn submit_publishes_only_missing_tasks() {
    let Some(t) = TestRun::new("submit", "0-3") else {
        return;
    };
    let spec = t.spec(&[]);
    let broker = t.broker(&spec).await;
    let store = t.store(&spec).await;
    let prefix = t.prefix(&spec);
    let plan = t.plan(&spec).await;
    assert_eq!(plan.task_count(), 64);

    let submit =
        || -> SubmitOutput { output::parse(&t.ok(&["submit", "--json"])).expect("submit --json") };
    let submitted = |published, already_stored, wrote_manifest| SubmitOutput {
        published,
        expected: 64,
        already_stored,
        wrote_manifest,
        manifest_key: prefix.manifest_key(&plan.run_id),
        probe: None,
    };
    assert_eq!(submit(), submitted(64, 0, true));
    wait_ready(&broker, 64).await;
    let manifest = store
        .get(&prefix.manifest_key(&plan.run_id))
        .await
        .expect("get manifest")
        .expect("manifest written");
    let manifest = lucid_proto::RunManifest::decode(&manifest).expect("manifest decodes");
    assert_eq!(manifest.task_count, 64);
    assert_eq!(manifest.checkpoints.len(), 2);
    assert!(manifest.checkpoints.values().all(|c| c.digest.len() == 64));

    let tasks: Vec<TaskMessage> = plan.tasks().collect();
    upload_results(&store, &prefix, &tasks[..10]).await;
    assert_eq!(submit(), submitted(54, 10, false));
    wait_ready(&broker, 64 + 54).await;

    // conflicting settings are refused and publish nothing
    let out = t.cli(&["submit", "--set", "render.steps=17"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("render settings differ"), "{stderr}");
    wait_ready(&broker, 64 + 54).await;

    upload_results(&store, &prefix, &tasks[10..]).await;
    assert_eq!(submit(), submitted(0, 64, false));
    wait_ready(&broker, 64 + 54).await;

    let status: StatusOutput =
        output::parse(&t.ok(&["status", "--rate-sample", "20", "--json"])).expect("status --json");
    assert_eq!((status.done, status.expected), (64, 64));
    assert_eq!(status.layers.len(), 16, "two seeds, eight layers");
    assert!(
        status.layers.iter().all(|l| (l.done, l.expected) == (4, 4)),
        "{:?}",
        status.layers
    );
    let queue = status.queue.as_ref().expect("queue depths");
    assert_eq!((queue.ready, queue.unacked), (118, Some(0)), "{status:?}");
    let rate = status.rate.as_ref().expect("a rate");
    assert!((rate.per_second - 1.0).abs() < 1e-9, "{rate:?}");
    assert_eq!(rate.sample, 20);
    assert_eq!(status.eta_seconds, Some(0.0));

    broker.delete_topology().await.expect("delete topology");
}

#[tokio::test]
async fn invalid_specs_fail_naming_the_field_and_publish_nothing() {
    let Some(t) = TestRun::new("invalid", "0-3") else {
        return;
    };
    let spec = t.spec(&[]);
    let broker = t.broker(&spec).await;

    let cases: [(&[&str], &str); 5] = [
        (&["submit", "--set", "render.steps=0"], "render.steps"),
        // 64 px leaves the network 68 px after the transforms: too small for fc6 (and the plan
        // command refuses it too, before anything is published)
        (
            &["submit", "--set", "render.size=64"],
            "render.size = 64 px is too small for layer fc6 of model training_seed_01: after the transforms the network sees 68 px",
        ),
        (
            &[
                "plan",
                "--set",
                "render.size=64",
                "--set",
                "layers=conv1,fc8",
            ],
            "too small for layer fc8",
        ),
        (&["submit", "--set", "render.stepz=3"], "stepz"),
        (
            &["submit", "--set", "layers=conv1,conv9"],
            "layers: unknown layer conv9",
        ),
    ];
    for (args, field) in cases {
        let out = t.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(field), "{args:?}: {stderr}");
    }
    let out = t.cli(&[
        "submit",
        "--set",
        "queue.uri=amqp://guest:hunter2@127.0.0.1:5672/%2f",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--set queue.uri"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let unknown = t.dir.path().join("unknown.toml");
    let text = std::fs::read_to_string(&t.spec_path).expect("read spec");
    std::fs::write(&unknown, format!("{text}\n[render.extra]\n")).expect("write spec");
    let out = std::process::Command::new(BIN)
        .args(["submit", "--spec"])
        .arg(&unknown)
        .env("LUCID_AMQP_URI", &t.services.amqp_uri)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("extra"), "{stderr}");

    assert_eq!(stats(&broker).await.ready, 0, "nothing was published");
    broker.delete_topology().await.expect("delete topology");
}

#[tokio::test]
async fn verify_reports_missing_extra_and_mismatched_objects() {
    let Some(t) = TestRun::new("verify", "0") else {
        return;
    };
    let spec = t.spec(&[]);
    let store = t.store(&spec).await;
    let prefix = t.prefix(&spec);
    let plan = t.plan(&spec).await;
    let tasks: Vec<TaskMessage> = plan.tasks().collect();
    assert_eq!(tasks.len(), 16);

    t.ok(&["submit"]);
    let out = t.cli(&["verify", "--json"]);
    assert_eq!(out.status.code(), Some(2), "nothing rendered yet");
    let report: VerifyOutput =
        output::parse(&String::from_utf8_lossy(&out.stdout)).expect("verify --json");
    assert!(!report.ok);
    assert_eq!((report.complete, report.expected), (0, 16));

    upload_results(&store, &prefix, &tasks).await;
    let report: VerifyOutput = output::parse(&t.ok(&["verify", "--json"])).expect("verify --json");
    assert!(report.ok, "{report:?}");
    assert_eq!(
        (report.complete, report.expected, report.listed),
        (16, 16, 33)
    );

    let missing = &tasks[0];
    let channel_0 = |t: &TaskMessage| ResultId::channel(t.model_id.clone(), t.layer.clone(), 0);
    let missing_key = prefix.sidecar_key(&missing.run_id, &channel_0(missing));
    store.delete(&missing_key).await.expect("delete");
    let extra_key = format!("{}stray.txt", prefix.run_prefix(&plan.run_id));
    store
        .put(&extra_key, b"x".to_vec(), "text/plain")
        .await
        .expect("put");
    let victim = &tasks[1];
    let victim_key = prefix.sidecar_key(&victim.run_id, &channel_0(victim));
    let png = png_bytes(224);
    let wrong = sidecar_for(&tasks[2], &png, "2026-01-01T00:00:00Z");
    store
        .put(&victim_key, wrong.encode(), "application/json")
        .await
        .expect("put");

    let out = t.cli(&["verify", "--run", &t.run_id, "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let report: VerifyOutput = output::parse(&stdout).expect("verify --json");
    let violations: Vec<&Violation> = report.violations.iter().map(|v| &v.violation).collect();
    assert!(
        violations.contains(&&Violation::MissingSidecar {
            task: missing.task_id.clone()
        }),
        "{violations:?}"
    );
    assert!(
        violations.contains(&&Violation::Unexpected {
            key: extra_key.clone()
        }),
        "{violations:?}"
    );
    assert!(
        violations.iter().any(|v| matches!(
            v,
            Violation::SidecarMismatch { key, field, found, .. }
                if *key == victim_key && field == "layer" && *found == tasks[2].layer.to_string()
        )),
        "{violations:?}"
    );
    assert!(!report.ok);
    assert_eq!((report.complete, report.expected), (14, 16));

    let broker = t.broker(&spec).await;
    broker.delete_topology().await.expect("delete topology");
}

#[tokio::test]
async fn verify_check_is_pure() {
    let Some(t) = TestRun::new("verifypure", "0") else {
        return;
    };
    let spec = t.spec(&["layers=fc8"]);
    let plan = t.plan(&spec).await;
    let prefix = t.prefix(&spec);
    let png = png_bytes(224);
    let mut keys = vec![prefix.manifest_key(&plan.run_id)];
    let mut fetched = Fetched::default();
    for task in plan.tasks() {
        let png_key = prefix.png_key_of(&task, 0);
        let json_key = prefix.sidecar_key_of(&task);
        fetched.pngs.insert(png_key.clone(), PngFacts::of(&png));
        fetched.sidecars.insert(
            json_key.clone(),
            sidecar_for(&task, &png, "2026-01-01T00:00:00Z").encode(),
        );
        keys.extend([png_key, json_key]);
    }
    let report = verify::check(&plan, &prefix, &keys, &fetched);
    assert!(report.ok(), "{report}");
    assert_eq!(report.complete, 2);

    // a PNG that is not one
    let first_png = keys[1].clone();
    fetched
        .pngs
        .insert(first_png.clone(), PngFacts::of(b"GIF89a"));
    let report = verify::check(&plan, &prefix, &keys, &fetched);
    assert_eq!(
        report.violations,
        vec![Violation::BadPng { key: first_png }]
    );
}

#[tokio::test]
async fn verify_checks_dead_letters_and_metrics() {
    let Some(t) = TestRun::new("verifydead", "0") else {
        return;
    };
    let spec = t.spec(&["layers=fc8"]);
    let plan = t.plan(&spec).await;
    let prefix = t.prefix(&spec);
    let tasks: Vec<TaskMessage> = plan.tasks().collect();
    let report = || {
        verify::check(
            &plan,
            &prefix,
            &[prefix.manifest_key(&plan.run_id)],
            &Fetched::default(),
        )
    };
    let letter = |id: Option<&str>, body: &str, reason: &str| lucid_queue::DeadLetter {
        message_id: id.map(str::to_owned),
        body: body.as_bytes().to_vec(),
        reason: Some(reason.to_owned()),
        deaths: 0,
    };
    let poison = format!("{}/malformed", plan.run_id);
    let letters = vec![
        letter(Some(&poison), "{", "malformed task message"),
        letter(Some(&tasks[0].task_id), "", "cannot load model"),
        letter(Some("other-run/x/conv1/0000"), "", "not ours"),
        letter(
            None,
            &format!(
                r#"{{"run_id":"{}","task_id":"{}/y"}}"#,
                plan.run_id, plan.run_id
            ),
            "no id",
        ),
        letter(Some(&poison), "{", "malformed task message"),
    ];
    let ours = verify::RunDeadLetter::of_run(plan.run_id.as_str(), &letters);
    assert_eq!(ours.len(), 4, "{ours:?}");

    let mut r = report();
    let before = r.violations.len();
    let expected: BTreeSet<String> = [poison.clone(), format!("{}/absent", plan.run_id)].into();
    verify::check_dead_letters(&plan, &mut r, ours.clone(), Some(&expected), None);
    let new: Vec<String> = r.violations[before..]
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert!(
        new.contains(&format!(
            "dead letter {poison} is in the dead-letter queue 2 times"
        )),
        "{new:?}"
    );
    assert!(
        new.iter().any(|v| v.starts_with(&format!(
            "planned task {} is in the dead-letter queue: cannot load model",
            tasks[0].task_id
        ))),
        "{new:?}"
    );
    assert!(
        new.contains(&format!("unexpected dead letter {}/y: no id", plan.run_id)),
        "{new:?}"
    );
    assert!(
        new.contains(&format!(
            "expected dead letter {}/absent is not in the dead-letter queue",
            plan.run_id
        )),
        "{new:?}"
    );
    assert_eq!(new.len(), 4, "{new:?}");
    assert!(r.to_string().contains("4 dead letters of this run"));

    // without an expected set only the planned task counts
    let mut r = report();
    let before = r.violations.len();
    verify::check_dead_letters(&plan, &mut r, ours[..1].to_vec(), None, Some(10));
    let new: Vec<String> = r.violations[before..]
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        new,
        vec![
            "the dead-letter queue holds more than the 10 messages read; not all were checked"
                .to_string()
        ]
    );

    // metrics: expected and completed of the run, the dead-letter queue's depth
    let run = plan.run_id.as_str();
    let exposition = format!(
        "lucid_run_tasks_expected{{run=\"{run}\"}} 2\nlucid_run_tasks_completed{{run=\"{run}\"}} 1\nlucid_queue_dead_messages{{queue=\"d\"}} 3\n"
    );
    let mut r = report();
    let before = r.violations.len();
    verify::check_metrics(&plan, &mut r, &exposition, "d", Some(3));
    let new: Vec<String> = r.violations[before..]
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        new,
        vec![format!(
            "metric lucid_run_tasks_completed{{run=\"{run}\"}} is 1, expected 0"
        )]
    );
    let mut r = report();
    let before = r.violations.len();
    verify::check_metrics(&plan, &mut r, "", "d", Some(0));
    assert_eq!(
        r.violations.len() - before,
        3,
        "absent series are violations"
    );
}

#[tokio::test]
async fn retry_dead_and_cancel() {
    let Some(t) = TestRun::new("dead", "0") else {
        return;
    };
    let spec = t.spec(&[]);
    let broker = t.broker(&spec).await;
    t.ok(&["submit"]);
    wait_ready(&broker, 16).await;

    // a worker gives one task up
    let mut consumer = broker.consume("test-dead", 1).await.expect("consume");
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("timed out waiting for a delivery")
        .expect("consumer open")
        .expect("delivery");
    delivery
        .dead_letter("test gave up")
        .await
        .expect("dead letter");
    consumer.cancel().await.expect("cancel consumer");
    // the nack freed the prefetch window, so the broker may have pushed the next task before the
    // cancel: give back whatever was delivered since (left unacked, it would not count as ready)
    while let Ok(Some(extra)) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        extra
            .expect("delivery")
            .requeue()
            .await
            .expect("requeue a task delivered before the cancel");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(&broker).await.dead != 1 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a dead letter"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // verify reads the dead-letter queue: a planned task there is a violation
    let out = t.cli(&["verify", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let report: VerifyOutput = output::parse(&stdout).expect("verify --json");
    let dead = report.dead_letters.as_deref().expect("the queue was read");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "test gave up");
    assert!(
        report.violations.iter().any(|v| v.violation
            == Violation::DeadLettered {
                task: dead[0].id.clone(),
                reason: "test gave up".into()
            }),
        "{:?}",
        report.violations
    );
    let out = t.cli(&["verify", "--skip-queue", "--json"]);
    let report: VerifyOutput =
        output::parse(&String::from_utf8_lossy(&out.stdout)).expect("verify --json");
    assert_eq!(
        report.dead_letters, None,
        "--skip-queue reads no queue: {report:?}"
    );
    let moved: RetryDeadOutput =
        output::parse(&t.ok(&["retry-dead", "--json"])).expect("retry-dead --json");
    assert_eq!(moved.moved, 1);
    assert_eq!(moved.queue, spec.queue.tasks);
    let s = wait_ready(&broker, 16).await;
    assert_eq!(s.dead, 0);

    // another run's tasks in the same queue survive a cancel
    let other = format!("{}-other", t.run_id);
    let other_set = format!("run_id={other}");
    t.ok(&["submit", "--set", &other_set]);
    wait_ready(&broker, 32).await;
    let cancelled: CancelOutput =
        output::parse(&t.ok(&["cancel", "--json"])).expect("cancel --json");
    assert_eq!(
        (cancelled.cancelled, cancelled.run_id.as_str()),
        (16, t.run_id.as_str())
    );
    wait_ready(&broker, 16).await;

    broker.delete_topology().await.expect("delete topology");
}

/// The value of the sample `name{label="value"}` in an exposition, if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn watch_exports_progress_and_queue_gauges() {
    let Some(t) = TestRun::new("watch", "0") else {
        return;
    };
    let spec = t.spec(&[]);
    let broker = t.broker(&spec).await;
    let store = t.store(&spec).await;
    let prefix = t.prefix(&spec);
    let plan = t.plan(&spec).await;
    t.ok(&["submit"]);
    wait_ready(&broker, 16).await;
    let tasks: Vec<TaskMessage> = plan.tasks().collect();
    upload_results(&store, &prefix, &tasks[..3]).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let args = t.spec_args();
    let watch_args = WatchArgs {
        rabbit_api: t.services.rabbit_api.clone(),
        interval: Duration::from_secs(1),
    };
    let server = tokio::spawn(async move {
        lucid_coordinator::commands::watch(
            &args,
            &watch_args,
            listener,
            prometheus::Registry::new(),
            async {
                let _ = stop_rx.await;
            },
        )
        .await
    });

    let client = reqwest::Client::new();
    let run = &t.run_id;
    let tasks_q = &spec.queue.tasks;
    let dead_q = &spec.queue.dead_letter_queue;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = match client.get(format!("http://{addr}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let completed = sample(
            &body,
            &format!("lucid_run_tasks_completed{{run=\"{run}\"}}"),
        );
        let unacked = sample(
            &body,
            &format!("lucid_queue_unacked_messages{{queue=\"{tasks_q}\"}}"),
        );
        if completed == Some(3.0) && unacked.is_some() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for /metrics: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        sample(&body, &format!("lucid_run_tasks_expected{{run=\"{run}\"}}")),
        Some(16.0)
    );
    assert_eq!(
        sample(&body, &format!("lucid_run_tasks_failed{{run=\"{run}\"}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!("lucid_queue_ready_messages{{queue=\"{tasks_q}\"}}")
        ),
        Some(16.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!("lucid_queue_unacked_messages{{queue=\"{tasks_q}\"}}")
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!("lucid_queue_dead_messages{{queue=\"{dead_q}\"}}")
        ),
        Some(0.0)
    );
    let refreshed = sample(&body, "lucid_coordinator_last_refresh_timestamp_seconds")
        .expect("last refresh gauge");
    assert!(refreshed > 1.7e9, "{refreshed}");

    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    // the gauges above come from a complete refresh, so the watch is ready
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);

    stop_tx.send(()).expect("watch still running");
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("timed out waiting for watch to shut down")
        .expect("watch task")
        .expect("watch result");

    broker.delete_topology().await.expect("delete topology");
}

#[tokio::test]
async fn plan_downloads_s3_models_into_the_cache() {
    let Some(t) = TestRun::new("s3model", "all") else {
        return;
    };
    let spec = t.spec(&[]);
    let store = t.store(&spec).await;
    let model_prefix = format!("coordinator-tests-models/{}/training_seed_02", t.run_id);
    let local = fixture("training_seed_02");
    for entry in std::fs::read_dir(&local).expect("read fixture dir") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&path).expect("read fixture file");
        store
            .put(
                &format!("{model_prefix}/{name}"),
                bytes,
                "application/octet-stream",
            )
            .await
            .expect("upload model file");
    }
    let location = format!("models.training_seed_02=s3://lucid-test/{model_prefix}");
    let plan: PlanOutput =
        output::parse(&t.ok(&["plan", "--set", &location, "--json"])).expect("plan --json");
    assert_eq!(plan.models[1].model_id.as_str(), "training_seed_02");
    assert_eq!(plan.models[1].tasks, 250);
    let cached = t
        .dir
        .path()
        .join("cache/models/s3/lucid-test")
        .join(&model_prefix)
        .join("model.ckpt_epoch89.index");
    assert!(cached.is_file(), "{} was not cached", cached.display());
    // a second plan uses the cache
    let plan: PlanOutput =
        output::parse(&t.ok(&["plan", "--set", &location, "--json"])).expect("plan --json");
    assert_eq!(plan.total_tasks, 500);
}

/// Every `href="…"` and `src="…"` value in `html`.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attr) {
            rest = &rest[start + attr.len()..];
            let end = rest.find('"').expect("closing quote");
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

/// The key a relative `link` on the page at `page_key` points to (fragment and query dropped).
fn resolve(page_key: &str, link: &str) -> String {
    let link = link.split(['#', '?']).next().unwrap_or_default();
    let mut parts: Vec<&str> = page_key.split('/').collect();
    parts.pop();
    for segment in link.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[tokio::test]
async fn gallery_uploads_pages_and_sprites_with_relative_links() {
    let Some(t) = TestRun::new("gallery", "0") else {
        return;
    };
    let spec = t.spec(&[]);
    let store = t.store(&spec).await;
    let prefix = t.prefix(&spec);
    let plan = t.plan(&spec).await;
    let tasks: Vec<TaskMessage> = plan.tasks().collect();
    // two layers of the first seed and the first layer of the second: a compare page with both seeds
    let second_seed = tasks
        .iter()
        .find(|task| task.model_id != tasks[0].model_id)
        .expect("two seeds")
        .clone();
    let uploaded = vec![tasks[0].clone(), tasks[1].clone(), second_seed];
    upload_results(&store, &prefix, &uploaded).await;

    let args = ["gallery", "--thumb-size", "16", "--threads", "4", "--json"];
    let built: GalleryOutput = output::parse(&t.ok(&args)).expect("gallery --json");
    let run_root = prefix.run_prefix(&uploaded[0].run_id);
    let index = format!("{run_root}gallery/index.html");
    assert_eq!(built.index_key, index);
    let url = format!(
        "{}/lucid-test/{index}",
        t.services.s3_endpoint.trim_end_matches('/')
    );
    assert_eq!(built.url, url);
    assert_eq!(
        (built.summary.channels, built.summary.images),
        (3, 3),
        "{built:?}"
    );

    let (seed, layer) = (uploaded[0].model_id.as_str(), uploaded[0].layer.as_str());
    let html = "text/html; charset=utf-8";
    for (key, content_type) in [
        (index.clone(), html),
        (format!("{run_root}gallery/{seed}/{layer}.html"), html),
        (format!("{run_root}gallery/{seed}/{layer}/0000.html"), html),
        (format!("{run_root}gallery/compare/{layer}.html"), html),
        (format!("{run_root}gallery/compare/{layer}/0000.html"), html),
        (
            format!("{run_root}gallery/{seed}/{layer}-0.png"),
            "image/png",
        ),
        (
            format!("{run_root}gallery/{seed}/{layer}-preview.png"),
            "image/png",
        ),
    ] {
        let info = store
            .head(&key)
            .await
            .expect("head")
            .unwrap_or_else(|| panic!("{key} was not uploaded"));
        assert_eq!(info.content_type.as_deref(), Some(content_type), "{key}");
        assert!(info.size > 0, "{key} is empty");
    }

    let page = store
        .get(&index)
        .await
        .expect("get index")
        .expect("index exists");
    let page = String::from_utf8(page).expect("utf-8 index");
    let found = links(&page);
    assert!(!found.is_empty(), "no links in {page}");
    for link in &found {
        assert!(
            !link.starts_with('/') && !link.contains("://") && !link.starts_with("//"),
            "link {link:?} in index.html is not relative"
        );
        if link.starts_with('#') || link.starts_with("data:") {
            continue; // in-page anchors and inline data load nothing from elsewhere
        }
        let target = resolve(&index, link);
        assert!(
            store.exists(&target).await.expect("head link target"),
            "index.html links to {link:?} ({target}), which does not exist"
        );
    }
}
