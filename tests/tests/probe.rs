//! The distributed probe pass (issue 15) through the real binaries: `submit` lists a probe set in
//! SeaweedFS and publishes one task per seed × shard on the render tasks' queue, `serve` workers
//! probe the shards (one of them killed with SIGKILL while holding deliveries), `examples` merges
//! them; the merged examples and means equal, to the byte, a `lucid-worker local` run of the same
//! spec over the same files in a folder; a resubmit publishes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lucid_e2e::run::json_document;
use lucid_e2e::{
    BUCKET, Services, SweepConfig, TestRun, binary, metric_value, wait_for, wait_until,
};
use lucid_probe::stimuli::{Stimulus, stimuli};

/// The bucket the test probe sets are uploaded to.
const PROBE_BUCKET: &str = "lucid-e2e-probe";

/// Every generated stimulus (53 files) plus a cut JPEG and a text file named `.png`.
fn write_probe_set(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).expect("mkdir");
    let all = stimuli();
    for stimulus in &all {
        std::fs::write(dir.join(stimulus.file_name()), stimulus.encoded()).expect("write");
    }
    let jpeg = Stimulus::Field([10, 200, 30]).encoded();
    std::fs::write(dir.join("cut.jpg"), &jpeg[..jpeg.len() / 3]).expect("cut");
    std::fs::write(dir.join("notes.png"), "not an image\n").expect("text");
    all.len() + 2
}

fn probe_section(images: &str) -> String {
    format!("images = {images:?}\nk = 4\nshard = 8\nbatch = 2")
}

/// The merged outputs of `model` read from S3.
fn merged_from_s3(run: &TestRun, model: &str, file: &str) -> Vec<u8> {
    let key = format!("renders/{}/probe/{model}/{file}", run.run_id);
    run.services
        .get_object(BUCKET, &key)
        .unwrap_or_else(|| panic!("s3://{BUCKET}/{key} is not stored"))
}

#[test]
fn two_workers_probe_every_shard_a_killed_one_loses_nothing_and_the_merge_equals_local() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let folder = scratch.path().join("set");
    let files = write_probe_set(&folder);
    let config = |images: &str| SweepConfig {
        layers: "conv2,fc6".into(),
        channels: "0".into(),
        steps: 2,
        prefetch: 8,
        probe: Some(probe_section(images)),
        ..SweepConfig::default()
    };
    let run = TestRun::new(&services, "probe", config("s3://placeholder/x"));
    let location = services.upload_model(&folder, PROBE_BUCKET, &format!("{}/set", run.run_id));
    let run = TestRun::new(&services, "probe", config(&location));
    let shards = files.div_ceil(8) as u64;

    let submitted = json_document(
        run.coordinator("submit", &["--json"])
            .expect_success("submit"),
    );
    let probe = &submitted["probe"];
    assert_eq!(
        (
            probe["published"].as_u64(),
            probe["expected"].as_u64(),
            probe["files"].as_u64()
        ),
        (Some(2 * shards), Some(2 * shards), Some(files as u64)),
        "{submitted}"
    );

    // the victim takes a prefetch window of tasks and is killed while it holds them
    let mut victim = run.spawn_worker("worker-victim", &[]);
    let probed =
        |text: &str| metric_value(text, "lucid_worker_probe_images_total", &[]).unwrap_or(0.0);
    wait_until(
        Duration::from_secs(60),
        "worker-victim to hold deliveries",
        || metric_value(&victim.scrape(), "lucid_worker_in_flight", &[]).is_some_and(|v| v >= 2.0),
    );
    let before_kill = probed(&victim.scrape());
    victim.process.signal(libc::SIGKILL);
    victim
        .process
        .wait_timeout(Duration::from_secs(10))
        .expect("SIGKILL ends it at once");
    eprintln!("worker-victim had probed {before_kill} images when killed");

    let worker_a = run.spawn_worker("worker-a", &[]);
    let worker_b = run.spawn_worker("worker-b", &[]);
    let merged = wait_for(
        Duration::from_secs(240),
        "every probe shard to be stored",
        || {
            let out = run.coordinator("examples", &["--json"]);
            out.status.success().then(|| json_document(&out.stdout))
        },
    );
    let usable = stimuli().len() as u64;
    for model in merged["models"].as_array().expect("models") {
        assert_eq!(model["images"].as_u64(), Some(usable), "{merged}");
        assert_eq!(
            model["skipped"].as_array().map(Vec::len),
            Some(2),
            "{merged}"
        );
    }
    let probed_now = probed(&worker_a.scrape()) + probed(&worker_b.scrape());
    assert!(
        probed_now >= (2 * usable) as f64 - before_kill,
        "the survivors probe every shard the victim did not store: {probed_now} + {before_kill}"
    );
    // the channels matched across the two seeds, from the stored means; verify accepts them
    let matched = json_document(
        run.coordinator("match", &["--json"])
            .expect_success("match"),
    );
    assert_eq!(matched["command"], "match", "{matched}");
    assert_eq!(
        matched["layers"].as_array().map(Vec::len),
        Some(2),
        "{matched}"
    );
    run.wait_verified(Duration::from_secs(120));

    // a resubmit finds every shard stored
    let again = json_document(
        run.coordinator("submit", &["--json"])
            .expect_success("resubmit"),
    );
    assert_eq!(
        (
            again["probe"]["published"].as_u64(),
            again["probe"]["already_stored"].as_u64()
        ),
        (Some(0), Some(2 * shards)),
        "{again}"
    );

    // the same spec in one process over the same files in a folder
    let out = scratch.path().join("local");
    let local = run
        .command(&binary("lucid-worker"))
        .args(["local", "--spec"])
        .arg(&run.spec)
        .args(["--set", &format!("run_id={}", run.run_id)])
        .args(["--set", &format!("probe.images={}", folder.display())])
        .args(["--set", "storage.kind=local"])
        .args(["--set", &format!("storage.local_dir={}", out.display())])
        .args(["--device", "cpu", "--no-gallery", "--quiet", "--json"])
        .output()
        .expect("run lucid-worker local");
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    for model in ["training_seed_01", "training_seed_02"] {
        let local_dir: PathBuf = out.join(format!("renders/{}/probe/{model}", run.run_id));
        for file in [
            "conv2.examples.json",
            "fc6.examples.json",
            "conv2.means.safetensors",
            "fc6.means.safetensors",
        ] {
            let here = std::fs::read(local_dir.join(file)).expect("local output");
            assert!(
                here == merged_from_s3(&run, model, file),
                "{model} {file}: distributed and local differ"
            );
        }
        let report = |bytes: Vec<u8>| -> serde_json::Value {
            serde_json::from_slice(&bytes).expect("probe.json")
        };
        let (s3, here) = (
            report(merged_from_s3(&run, model, "probe.json")),
            report(std::fs::read(local_dir.join("probe.json")).expect("local probe.json")),
        );
        assert_eq!(s3["probe_set"], here["probe_set"], "{model}");
        assert_eq!(s3["layers"], here["layers"], "{model}");
    }
    // the matching `local` did at its end equals the coordinator's from S3 (but for timing)
    for layer in ["conv2", "fc6"] {
        let key = format!("renders/{}/match/layers/{layer}.json", run.run_id);
        let s3 = services
            .get_object(BUCKET, &key)
            .unwrap_or_else(|| panic!("s3://{BUCKET}/{key} is not stored"));
        let here =
            std::fs::read(out.join(format!("renders/{}/match/layers/{layer}.json", run.run_id)))
                .expect("local matching");
        let without_timing = |bytes: &[u8]| {
            let mut v: serde_json::Value = serde_json::from_slice(bytes).expect("json");
            v["timing"] = serde_json::Value::Null;
            v
        };
        assert_eq!(without_timing(&s3), without_timing(&here), "{layer}");
    }
    // the prepared pictures the gallery shows: the same files, the same bytes
    let local_images = out.join(format!("renders/{}/probe/images", run.run_id));
    let mut names: Vec<String> = std::fs::read_dir(&local_images)
        .expect("local prepared images")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let written = merged["previews"]["written"].as_u64().expect("previews");
    assert_eq!(names.len() as u64, written, "{merged}");
    assert!(written > 0, "{merged}");
    for name in &names {
        let key = format!("renders/{}/probe/images/{name}", run.run_id);
        let s3 = services
            .get_object(BUCKET, &key)
            .unwrap_or_else(|| panic!("s3://{BUCKET}/{key} is not stored"));
        let here = std::fs::read(local_images.join(name)).expect("local image");
        assert!(s3 == here, "{name}: distributed and local differ");
    }
}
