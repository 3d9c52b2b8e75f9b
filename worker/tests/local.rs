//! `lucid-worker local` end to end on the embedded default: dead letters (render and probe tasks) are
//! recorded, the good tasks stored, the gallery built, and the exit says how many failed; a resume
//! checks the manifest.

mod common;

use std::path::Path;

use common::{run_worker, small_prefix};
use lucid_proto::{DeadLetterReport, ResultSidecar, RunManifest};

/// Copies the fixture checkpoint of `seed` into `dir/seed/`, returning that folder.
fn copy_seed(seed: &str, dir: &Path) -> std::path::PathBuf {
    let target = dir.join(seed);
    std::fs::create_dir_all(&target).expect("create seed folder");
    let source = small_prefix(seed)
        .parent()
        .expect("a seed folder")
        .to_path_buf();
    for entry in std::fs::read_dir(&source).expect("read fixture folder") {
        let from = entry.expect("fixture entry").path();
        let name = from.file_name().expect("a file name");
        std::fs::copy(&from, target.join(name)).expect("copy fixture");
    }
    target
}

fn write_spec(dir: &Path, run: &str, seeds: &[(&str, &Path)], out: &Path, steps: u32) -> String {
    let models: String = seeds
        .iter()
        .map(|(seed, path)| format!("{seed} = {:?}\n", path.display().to_string()))
        .collect();
    let spec = format!(
        "run_id = {run:?}\nlayers = [\"conv1\"]\nchannels = \"0-3\"\n\n[models]\n{models}\n\
         [render]\nsteps = {steps}\nsize = 64\n\n[storage]\nkind = \"local\"\nlocal_dir = {:?}\n",
        out.display().to_string()
    );
    let path = dir.join(format!("{run}.toml"));
    std::fs::write(&path, spec).expect("write spec");
    path.display().to_string()
}

#[test]
fn local_with_a_truncated_checkpoint_records_every_dead_letter_builds_the_gallery_and_fails_counting_them()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = copy_seed("training_seed_01", dir.path());
    let bad = copy_seed("training_seed_02", dir.path());
    let data = bad.join("model.ckpt_epoch89.data-00000-of-00002");
    let bytes = std::fs::read(&data).expect("read data");
    std::fs::write(&data, &bytes[..bytes.len() / 3]).expect("truncate");
    let out = dir.path().join("out");
    let spec = write_spec(
        dir.path(),
        "deadletters",
        &[
            ("training_seed_01", good.as_path()),
            ("training_seed_02", bad.as_path()),
        ],
        &out,
        4,
    );
    // and a probe pass of three images in shards of two: the bad seed's two probe tasks die too
    let probe = dir.path().join("probe");
    std::fs::create_dir_all(&probe).expect("mkdir");
    for stimulus in lucid_probe::stimuli::stimuli().into_iter().take(3) {
        std::fs::write(probe.join(stimulus.file_name()), stimulus.encoded()).expect("write");
    }
    let section = format!(
        "\n[probe]\nimages = {:?}\nshard = 2\nbatch = 1\n",
        probe.display().to_string()
    );
    let mut text = std::fs::read_to_string(&spec).expect("read spec");
    text.push_str(&section);
    std::fs::write(&spec, text).expect("write spec");

    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec, "--json"]);
    assert!(!ok, "a run with dead letters must exit non-zero: {stderr}");
    assert!(
        stderr.contains(
            "4 of 8 task(s) and 2 of 4 probe shard task(s) failed, so no examples were merged"
        ),
        "the error says how many of each failed: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary JSON");
    assert_eq!(summary["expected"], 8, "{summary}");
    assert_eq!(summary["rendered"], 4, "{summary}");

    let run = out.join("deadletters");
    for channel in 0..4 {
        let stem = run.join(format!("training_seed_01/conv1/{channel:04}"));
        assert!(stem.with_extension("png").is_file(), "{stem:?}.png");
        let sidecar = std::fs::read(stem.with_extension("json")).expect("sidecar");
        let sidecar = ResultSidecar::decode(&sidecar).expect("a proto sidecar");
        assert_eq!(sidecar.channel, channel);
        assert!(
            !run.join(format!("training_seed_02/conv1/{channel:04}.json"))
                .exists()
        );
    }

    let report = std::fs::read(run.join("dead-letters.json")).expect("dead-letters.json");
    let report = DeadLetterReport::decode(&report).expect("local writes the proto report");
    assert_eq!(report.run_id.as_str(), "deadletters");
    let mut channels: Vec<u32> = report
        .dead_letters
        .iter()
        .map(|l| {
            assert_eq!(l.model_id.as_str(), "training_seed_02", "{l:?}");
            assert_eq!(l.layer.as_str(), "conv1", "{l:?}");
            assert!(
                l.reason.contains("cannot load model") && l.reason.contains("training_seed_02"),
                "the reason names the model: {}",
                l.reason
            );
            l.channel
        })
        .collect();
    channels.sort_unstable();
    assert_eq!(channels, vec![0, 1, 2, 3], "every dead task is listed once");
    assert_eq!(summary["dead_lettered"].as_array().map(Vec::len), Some(4));
    let mut shards: Vec<u32> = report
        .probe_dead_letters
        .iter()
        .map(|d| {
            let expected_id = format!("deadletters/probe/training_seed_02/{:05}", d.shard);
            assert_eq!(d.task_id, expected_id, "{d:?}");
            assert_eq!(d.model_id.as_str(), "training_seed_02", "{d:?}");
            assert!(d.reason.contains("training_seed_02"), "{}", d.reason);
            d.shard
        })
        .collect();
    shards.sort_unstable();
    assert_eq!(shards, vec![0, 1], "both shards of the bad seed, once each");
    let probe = &summary["probe"];
    assert_eq!(
        probe["dead_lettered"].as_array().map(Vec::len),
        Some(2),
        "{probe}"
    );
    assert!(
        probe["merged"].is_null(),
        "nothing merged while a shard is missing: {probe}"
    );
    for shard in 0..2 {
        let done = run.join(format!("probe/training_seed_01/shards/{shard:05}.json"));
        assert!(done.is_file(), "the good seed's shard {shard} is stored");
    }

    let index = run.join("gallery/index.html");
    assert!(index.is_file(), "the gallery is built despite the failures");
    assert_eq!(summary["gallery"], index.display().to_string());

    let manifest = std::fs::read(run.join("run.json")).expect("run.json");
    let manifest = RunManifest::decode(&manifest).expect("local writes the proto manifest");
    assert_eq!(manifest.task_count, 8);
}

#[test]
fn a_local_resume_with_other_settings_is_refused_by_the_manifest_check_and_an_equal_one_renders_nothing()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = copy_seed("training_seed_01", dir.path());
    let out = dir.path().join("out");
    let seeds = [("training_seed_01", seed.as_path())];
    let spec = write_spec(dir.path(), "resume", &seeds, &out, 2);
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec, "--json", "--no-gallery"]);
    assert!(ok, "{stderr}");
    let first: serde_json::Value = serde_json::from_str(&stdout).expect("summary JSON");
    assert_eq!(first["rendered"], 4, "{first}");

    common::assert_rerun_renders_nothing(&spec, 4);

    let other = write_spec(dir.path(), "resume", &seeds, &out, 3);
    let (ok, _, stderr) = run_worker(&["local", "--spec", &other, "--json", "--no-gallery"]);
    assert!(!ok, "other settings under the same run id must be refused");
    assert!(
        stderr.contains("resume/run.json") && stderr.contains("render settings differ"),
        "the refusal names the manifest and the difference: {stderr}"
    );
}

/// Four views of four channels through `local`: every (unit, view) has exactly one sidecar naming
/// its view, with one PNG per image of the view (three for `diversity:3`), the manifest records the
/// views, and a rerun renders nothing.
#[test]
fn local_renders_every_view_of_every_unit_once_and_a_rerun_renders_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = copy_seed("training_seed_01", dir.path());
    let out = dir.path().join("out");
    let spec = write_spec(dir.path(), "views", &[("training_seed_01", &seed)], &out, 2);
    let text = std::fs::read_to_string(&spec).expect("spec");
    let views = "views = [\"channel\", \"negative_channel\", \"neuron\", \"diversity:3\"]\n";
    std::fs::write(&spec, format!("{views}{text}")).expect("spec with views");
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec, "--json"]);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary JSON");
    assert_eq!(
        (summary["expected"].as_u64(), summary["rendered"].as_u64()),
        (Some(16), Some(16)),
        "{summary}"
    );
    let layer = out.join("views/training_seed_01/conv1");
    let mut files: Vec<String> = std::fs::read_dir(&layer)
        .expect("layer folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want = Vec::new();
    for channel in 0..4 {
        want.push(format!("{channel:04}.diversity-3.0.png"));
        want.push(format!("{channel:04}.diversity-3.1.png"));
        want.push(format!("{channel:04}.diversity-3.2.png"));
        want.push(format!("{channel:04}.diversity-3.json"));
        want.push(format!("{channel:04}.json"));
        for view in ["negative_channel", "neuron"] {
            want.push(format!("{channel:04}.{view}.json"));
            want.push(format!("{channel:04}.{view}.png"));
        }
        want.push(format!("{channel:04}.png"));
    }
    want.sort();
    assert_eq!(files, want);
    let sidecar = std::fs::read(layer.join("0002.diversity-3.json")).expect("sidecar");
    let sidecar = ResultSidecar::decode(&sidecar).expect("a proto sidecar");
    assert_eq!(sidecar.view, lucid_proto::View::Diversity { copies: 3 });
    assert_eq!(sidecar.further_copies.len(), 2);
    let neuron = std::fs::read(layer.join("0002.neuron.json")).expect("sidecar");
    let neuron = ResultSidecar::decode(&neuron).expect("a proto sidecar");
    assert_eq!(
        neuron.settings.objective,
        lucid_proto::spec::Objective::Neuron
    );
    let manifest = std::fs::read(out.join("views/run.json")).expect("manifest");
    let manifest = RunManifest::decode(&manifest).expect("manifest");
    assert_eq!(manifest.views.len(), 4);
    assert_eq!(manifest.task_count, 16);

    common::assert_rerun_renders_nothing(&spec, 16);
}

/// `render --views` renders the views of a unit into a run like `local`'s (the stored form of the
/// old `--diversity` option), and an unknown view is refused naming the valid ones.
#[test]
fn render_takes_views_and_refuses_an_unknown_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let checkpoint = small_prefix("training_seed_01").display().to_string();
    let out_arg = out.display().to_string();
    let args = [
        "render",
        "--checkpoint",
        &checkpoint,
        "--layer",
        "conv2",
        "--channels",
        "5",
        "--steps",
        "2",
        "--size",
        "64",
        "--device",
        "cpu",
        "--out",
        &out_arg,
        "--views",
        "channel,diversity:2",
        "--diversity-weight",
        "50",
        "--json",
    ];
    let (ok, stdout, stderr) = run_worker(&args);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary JSON");
    assert_eq!(summary["rendered"], 2, "{summary}");
    let layer = out.join("render/training_seed_01/conv2");
    for file in [
        "0005.png",
        "0005.diversity-2.0.png",
        "0005.diversity-2.1.png",
    ] {
        assert!(layer.join(file).is_file(), "{file}");
    }
    let sidecar = std::fs::read(layer.join("0005.diversity-2.json")).expect("sidecar");
    let sidecar = ResultSidecar::decode(&sidecar).expect("a proto sidecar");
    assert_eq!(sidecar.settings.diversity_weight, 50.0);

    let mut bad = args.to_vec();
    let views = bad.len() - 4;
    bad[views] = "channel,negative";
    let (ok, _, stderr) = run_worker(&bad);
    assert!(!ok);
    assert!(
        stderr.contains("unknown view \"negative\"")
            && stderr.contains(lucid_proto::view::VALID_VIEWS),
        "{stderr}"
    );
}
