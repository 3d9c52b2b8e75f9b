//! The dataset examples as a lab sees them: `lucid-worker local` renders the demo model and probes a
//! set of real photographs (scikit-image's public-domain and CC0 ones, written by
//! `scripts/exports.sh`), generated gratings and colour fields, a corrupt JPEG and a text file named
//! `.png`; the bad files are set aside naming them, the rest completes, and the gallery's channel
//! pages (examples, receptive-field crops, negatives) and examples page load in headless Chromium
//! with every image decoded and no console error. Keeps a screenshot of a channel page in
//! `docs/dataset-examples-screenshot.png` (written when missing).

mod common;

use std::path::Path;

use common::run_worker;
use lucid_probe::stimuli::{Stimulus, stimuli};
use lucid_testkit::browser::Browser;

/// Copies the photographs and writes the generated stimuli and the two bad files into `set`.
fn write_probe_set(set: &Path, photos: &Path) -> Vec<String> {
    std::fs::create_dir_all(set.join("photos")).expect("mkdir");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(photos).expect("photos") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        std::fs::copy(&path, set.join("photos").join(&name)).expect("copy photo");
        names.push(format!("photos/{name}"));
    }
    for stimulus in stimuli().into_iter().step_by(3) {
        std::fs::write(set.join(stimulus.file_name()), stimulus.encoded()).expect("stimulus");
    }
    let jpeg = Stimulus::Field([10, 200, 30]).encoded();
    std::fs::write(set.join("photos/cut.jpg"), &jpeg[..jpeg.len() / 3]).expect("cut");
    std::fs::write(set.join("notes.png"), "not an image\n").expect("text");
    names
}

#[test]
fn a_probe_pass_over_photographs_shows_its_examples_in_the_gallery_in_chromium() {
    let Some(photos) = lucid_testkit::fixtures::probe_photos_dir() else {
        return;
    };
    let Some(browser) = Browser::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let set = dir.path().join("set");
    let photo_names = write_probe_set(&set, &photos);
    let out = dir.path().join("out");
    let model = common::fixtures().join("demo/training_seed_01");
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "run_id = \"examples\"\nlayers = [\"conv1\", \"conv2\"]\nchannels = \"0-7\"\n\n\
             [models]\ntraining_seed_01 = {:?}\n\n[render]\nsteps = 48\nsize = 96\n\n\
             [storage]\nkind = \"local\"\nlocal_dir = {:?}\n\n\
             [probe]\nimages = {:?}\nk = 6\nshard = 12\nbatch = 6\n",
            model.display().to_string(),
            out.display().to_string(),
            set.display().to_string()
        ),
    )
    .expect("spec");
    let spec = spec.display().to_string();
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec, "--json", "--device", "cpu"]);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary");
    let merged = &summary["probe"]["merged"]["models"][0];
    let skipped: Vec<(&str, &str)> = merged["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .filter_map(|s| Some((s["file"].as_str()?, s["reason"].as_str()?)))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|(f, r)| *f == "photos/cut.jpg" && r.contains("corrupt JPEG")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|(f, r)| *f == "notes.png" && r.contains("not a JPEG or PNG")),
        "{skipped:?}"
    );

    let run = out.join("examples");
    let gallery = run.join("gallery");
    let page = std::fs::read_to_string(gallery.join("training_seed_01/conv2/0000.html"))
        .expect("channel page");
    for heading in [
        "<h2>Dataset examples</h2>",
        "<h3>Highest mean activation</h3>",
        "<h3>Strongest single positions (receptive-field crops)</h3>",
        "<h3>Lowest mean activation</h3>",
    ] {
        assert!(page.contains(heading), "{heading}");
    }
    // the photographs take part: some channel of conv2 ranks one of them among its best
    let examples = std::fs::read_to_string(gallery.join("training_seed_01/conv2/examples.html"))
        .expect("examples page");
    assert!(
        photo_names.iter().any(|n| examples.contains(n.as_str())),
        "no photograph among the top examples: {examples}"
    );

    let shot = dir.path().join("shot.png");
    let pages = [
        "training_seed_01/conv2/0000.html",
        "training_seed_01/conv1/0001.html",
        "training_seed_01/conv2/examples.html",
    ];
    let reports = browser.check(&gallery, &pages, Some(&shot));
    // the visualization and 3 × 6 examples, each decoded by the browser
    assert_eq!(reports[0]["images"], 1 + 3 * 6, "{}", reports[0]);
    assert_eq!(reports[1]["images"], 1 + 3 * 6, "{}", reports[1]);
    let docs =
        lucid_testkit::fixtures::workspace_root().join("docs/dataset-examples-screenshot.png");
    if !docs.exists() {
        std::fs::copy(&shot, &docs).expect("keep the screenshot");
        eprintln!("screenshot saved to {}", docs.display());
    }
}
