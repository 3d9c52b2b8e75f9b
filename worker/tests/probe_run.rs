//! The probe pass as a sweep runs it: `lucid-worker local` with a `[probe]` section cuts the probe
//! set into shards, runs each as a probe task through the one worker loop, merges the shards with
//! the coordinator's merge — and writes the same examples and means, to the byte, as
//! `lucid-worker probe` over the whole folder in one pass. A resume probes nothing again; an empty
//! probe set is refused before anything is written.

mod common;

use std::path::{Path, PathBuf};

use common::run_worker;
use lucid_probe::stimuli::{Stimulus, stimuli};
use lucid_worker::synthetic;

/// A demo model folder and a probe folder of generated stimuli with two bad files among them.
struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
    images: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("seed").join("model.safetensors");
        std::fs::create_dir_all(model.parent().expect("folder")).expect("mkdir");
        synthetic::write_model(&model, &synthetic::demo_filters(), 7).expect("write model");
        let images = dir.path().join("probe");
        std::fs::create_dir_all(images.join("fields")).expect("mkdir");
        let chosen: Vec<Stimulus> = stimuli().into_iter().step_by(4).collect();
        for stimulus in chosen {
            let folder = match stimulus {
                Stimulus::Field(_) => images.join("fields"),
                Stimulus::Grating { .. } => images.clone(),
            };
            std::fs::write(folder.join(stimulus.file_name()), stimulus.encoded()).expect("write");
        }
        let jpeg = Stimulus::Field([10, 200, 30]).encoded();
        std::fs::write(images.join("fields/cut.jpg"), &jpeg[..jpeg.len() / 3]).expect("cut");
        std::fs::write(images.join("notes.png"), "not an image\n").expect("text");
        Fixture { dir, model, images }
    }

    /// A spec rendering channel 0 of conv1 and conv2 briefly and probing `images` in shards of
    /// `shard`, into `out`.
    fn spec(&self, run: &str, images: &Path, shard: u32, out: &Path) -> String {
        let spec = format!(
            "run_id = {run:?}\nlayers = [\"conv1\", \"conv2\"]\nchannels = \"0\"\n\n[models]\n\
             seed = {:?}\n\n[render]\nsteps = 2\nsize = 64\n\n[storage]\nkind = \"local\"\n\
             local_dir = {:?}\n\n[probe]\nimages = {:?}\nk = 3\nshard = {shard}\nbatch = 1\n",
            self.model.parent().expect("folder").display().to_string(),
            out.display().to_string(),
            images.display().to_string(),
        );
        let path = self.dir.path().join(format!("{run}.toml"));
        std::fs::write(&path, spec).expect("write spec");
        path.display().to_string()
    }
}

fn summary(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).expect("summary JSON")
}

/// `lucid-worker probe` of `model` over the folder `images` into `out`, with the settings of the
/// fixture's specs (conv1 and conv2, k = 3, batch 1, on the CPU).
fn one_pass_over(model: &Path, images: &Path, out: &Path) {
    let paths = [model, images, out].map(|p| p.display().to_string());
    let (ok, _, stderr) = run_worker(&[
        "probe",
        "--checkpoint",
        &paths[0],
        "--images",
        &paths[1],
        "--out",
        &paths[2],
        "--layers",
        "conv1,conv2",
        "--k",
        "3",
        "--batch",
        "1",
        "--device",
        "cpu",
    ]);
    assert!(ok, "{stderr}");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_sharded_local_probe_pass_writes_what_one_pass_over_the_folder_writes() {
    let fx = Fixture::new();
    let out = fx.dir.path().join("out");
    // 16 files in shards of 5: four tasks, the bad files in two of them
    let spec = fx.spec("probed", &fx.images, 5, &out);
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec, "--json", "--no-gallery"]);
    assert!(ok, "{stderr}");
    let first = summary(&stdout);
    let probe = &first["probe"];
    assert_eq!(
        (probe["expected"].as_u64(), probe["already_stored"].as_u64()),
        (Some(4), Some(0)),
        "{first}"
    );
    assert_eq!(probe["probed_images"], 14, "{first}");
    let merged = &probe["merged"]["models"][0];
    assert_eq!(
        (merged["images"].as_u64(), merged["shards"].as_u64()),
        (Some(14), Some(4)),
        "{first}"
    );
    let reasons: Vec<&str> = merged["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .filter_map(|s| s["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("probe image fields/cut.jpg: corrupt JPEG")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"probe image notes.png: not a JPEG or PNG file"),
        "{reasons:?}"
    );

    let one_pass = fx.dir.path().join("one-pass");
    one_pass_over(&fx.model, &fx.images, &one_pass);
    let sharded = out.join("probed/probe/seed");
    for file in [
        "conv1.examples.json",
        "conv2.examples.json",
        "conv1.means.safetensors",
        "conv2.means.safetensors",
    ] {
        assert!(
            read(&sharded.join(file)) == read(&one_pass.join(file)),
            "{file} differs between the sharded pass and one pass"
        );
    }
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&read(&dir.join("probe.json"))).expect("probe.json")
    };
    let (a, b) = (report(&sharded), report(&one_pass));
    assert_eq!(
        a["probe_set"], b["probe_set"],
        "images, preparation and files set aside"
    );
    assert_eq!(a["layers"], b["layers"], "widths and receptive fields");
    assert_previews_are_the_examples_pictures(&first, &out.join("probed/probe"));

    // a resume finds every shard stored and probes nothing again
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec, "--json", "--no-gallery"]);
    assert!(ok, "{stderr}");
    let again = summary(&stdout);
    assert_eq!(
        (
            again["probe"]["already_stored"].as_u64(),
            again["probe"]["probed_images"].as_u64()
        ),
        (Some(4), Some(0)),
        "{again}"
    );
    let previews = &again["probe"]["merged"]["previews"];
    assert_eq!(
        (
            previews["written"].as_u64(),
            previews["already_stored"].as_u64()
        ),
        (
            Some(0),
            first["probe"]["merged"]["previews"]["written"].as_u64()
        ),
        "a merge again prepares nothing again: {again}"
    );
    assert!(
        read(&sharded.join("conv2.examples.json")) == read(&one_pass.join("conv2.examples.json"))
    );

    // a set changed under the run is refused, naming the index
    std::fs::write(
        fx.images.join("late.png"),
        Stimulus::Field([1, 2, 3]).encoded(),
    )
    .expect("write");
    let (ok, _, stderr) = run_worker(&["local", "--spec", &spec, "--json", "--no-gallery"]);
    assert!(!ok);
    assert!(
        stderr.contains("probe/images.json conflicts") && stderr.contains("holds 17 now"),
        "{stderr}"
    );
}

/// Every probe file some channel's examples name has its prepared picture under
/// `probe/images/{file:06}.jpg` (the file's place in the index), at the probe side, and no other
/// file has one.
fn assert_previews_are_the_examples_pictures(summary: &serde_json::Value, probe_dir: &Path) {
    let index: serde_json::Value =
        serde_json::from_slice(&read(&probe_dir.join("images.json"))).expect("index");
    let files: Vec<&str> = index["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    let report: serde_json::Value =
        serde_json::from_slice(&read(&probe_dir.join("seed/probe.json"))).expect("probe.json");
    let usable: Vec<&str> = report["probe_set"]["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    let mut shown = std::collections::BTreeSet::new();
    for layer in ["conv1", "conv2"] {
        let examples: serde_json::Value = serde_json::from_slice(&read(
            &probe_dir.join(format!("seed/{layer}.examples.json")),
        ))
        .expect("examples");
        for channel in examples.as_array().expect("channels") {
            for list in ["top_mean", "bottom_mean", "top_max"] {
                for e in channel[list].as_array().expect("list") {
                    let name = usable[e["image"].as_u64().expect("image") as usize];
                    let file = files.iter().position(|f| *f == name).expect("in the index");
                    shown.insert(file);
                }
            }
        }
    }
    let stored: std::collections::BTreeSet<usize> = std::fs::read_dir(probe_dir.join("images"))
        .expect("images folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".jpg").and_then(|n| n.parse().ok())
        })
        .collect();
    assert_eq!(
        stored, shown,
        "a prepared picture for exactly the shown files"
    );
    assert_eq!(
        summary["probe"]["merged"]["previews"]["written"].as_u64(),
        Some(shown.len() as u64),
        "{summary}"
    );
    for file in &shown {
        let jpeg = read(&probe_dir.join(format!("images/{file:06}.jpg")));
        let image = lucid_probe::decode("preview", &jpeg, lucid_probe::DecodeLimits::default())
            .expect("a JPEG");
        assert_eq!(image.dimensions(), (224, 224), "file {file}");
    }
}

#[test]
fn an_empty_probe_set_is_refused_before_anything_is_written() {
    let fx = Fixture::new();
    let empty = fx.dir.path().join("empty");
    std::fs::create_dir_all(empty.join(".thumbs")).expect("mkdir");
    std::fs::write(empty.join(".DS_Store"), "hidden").expect("hidden");
    let out = fx.dir.path().join("out");
    let spec = fx.spec("empty", &empty, 5, &out);
    let (ok, _, stderr) = run_worker(&["local", "--spec", &spec, "--json", "--no-gallery"]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("probe set {} holds no files", empty.display())),
        "{stderr}"
    );
    assert!(
        !out.join("empty").exists(),
        "nothing written: no manifest, no index, no render"
    );
}

#[test]
fn two_models_read_each_shard_once_and_write_what_each_models_own_pass_writes() {
    let fx = Fixture::new();
    let other = fx.dir.path().join("other").join("model.safetensors");
    std::fs::create_dir_all(other.parent().expect("folder")).expect("mkdir");
    synthetic::write_model(&other, &synthetic::demo_filters(), 8).expect("write model");
    let out = fx.dir.path().join("out");
    let folder = |p: &Path| p.parent().expect("folder").display().to_string();
    let spec = format!(
        "run_id = \"pair\"\nlayers = [\"conv1\", \"conv2\"]\nchannels = \"0\"\n\n[models]\n\
         seed = {:?}\nother = {:?}\n\n[render]\nsteps = 2\nsize = 64\n\n[storage]\nkind = \"local\"\n\
         local_dir = {:?}\n\n[probe]\nimages = {:?}\nk = 3\nshard = 5\nbatch = 1\n",
        folder(&fx.model),
        folder(&other),
        out.display().to_string(),
        fx.images.display().to_string(),
    );
    let path = fx.dir.path().join("pair.toml");
    std::fs::write(&path, spec).expect("write spec");
    let path = path.display().to_string();
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &path, "--json", "--no-gallery"]);
    assert!(ok, "{stderr}");
    let probe = summary(&stdout)["probe"].clone();
    // 16 files (2 of them bad) in 4 shards, 2 models: 8 tasks, 28 images probed, 16 files read
    assert_eq!(probe["expected"], 8, "{probe}");
    assert_eq!(probe["probed_images"], 28, "{probe}");
    assert_eq!(
        probe["files_read"], 16,
        "each shard read once for both models: {probe}"
    );

    // the other model's examples and means are what its own pass over the folder writes
    let own = fx.dir.path().join("own");
    one_pass_over(&other, &fx.images, &own);
    for file in ["conv2.examples.json", "conv2.means.safetensors"] {
        let shared = read(&out.join("pair/probe/other").join(file));
        assert!(shared == read(&own.join(file)), "{file} differs");
    }
}
