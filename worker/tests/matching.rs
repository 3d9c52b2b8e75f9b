//! Ground truth for matching channels across seeds (issue 16): seed 2 is seed 1 with every layer's
//! channels permuted (the next layer's inputs with them) and 2% weight noise, seed 3 another random
//! network. `lucid-worker local` renders, probes the shipped probe set (scikit-image's photographs
//! and the generated stimuli) and matches; the assignment recovers the permutation exactly at every
//! convolutional layer and for ≥ 95% of the channels of the fully connected ones, and seed 3's
//! matches are clearly worse. `lucid-coordinator match` computes the same again from the stored
//! means alone (the library function `lucid-coordinator match` calls).

mod common;

use std::path::Path;

use common::run_worker;
use lucid_probe::stimuli::stimuli;
use lucid_worker::synthetic;

const LAYERS: [&str; 8] = [
    "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8",
];

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("json")
}

#[test]
fn a_permuted_copy_is_matched_to_its_original_at_every_layer_and_an_unrelated_seed_is_not() {
    let Some(photos) = lucid_testkit::fixtures::probe_photos_dir() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    let seed = |n: u32| models.join(format!("training_seed_{n:02}/model.safetensors"));
    synthetic::write_model(&seed(1), &synthetic::demo_filters(), 1).expect("seed 1");
    let perms = synthetic::write_permuted_copy(&seed(1), &seed(2), 99, 0.02).expect("seed 2");
    // seed 3 shares nothing: random weights at the demo's widths (the demo's first layers are fixed)
    let widths = [8, 16, 16, 16, 16, 32, 32, 10];
    synthetic::write_random_model(&seed(3), widths, 3).expect("seed 3");

    let set = dir.path().join("set");
    std::fs::create_dir_all(&set).expect("mkdir");
    for entry in std::fs::read_dir(&photos).expect("photos") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, set.join(path.file_name().expect("name"))).expect("copy");
    }
    for stimulus in stimuli() {
        std::fs::write(set.join(stimulus.file_name()), stimulus.encoded()).expect("stimulus");
    }
    let out = dir.path().join("out");
    let spec = dir.path().join("spec.toml");
    let mut text =
        format!("run_id = \"seeds\"\nlayers = {LAYERS:?}\nchannels = \"all\"\n\n[models]\n");
    for n in 1..=3 {
        let folder = seed(n).parent().expect("folder").display().to_string();
        text.push_str(&format!("training_seed_{n:02} = {folder:?}\n"));
    }
    text.push_str(&format!(
        "\n[render]\nsteps = 1\nsize = 224\n\n[storage]\nkind = \"local\"\nlocal_dir = {:?}\n\n\
         [probe]\nimages = {:?}\nk = 3\nshard = 32\nbatch = 8\n",
        out.display().to_string(),
        set.display().to_string()
    ));
    std::fs::write(&spec, text).expect("spec");
    let spec = spec.display().to_string();
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec, "--json", "--device", "cpu"]);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary");
    let matched = &summary["probe"]["matched"];
    assert_eq!(
        matched["layers"].as_array().map(Vec::len),
        Some(8),
        "{matched}"
    );

    let run = out.join("seeds");
    let mut report = Vec::new();
    for (l, layer) in LAYERS.iter().enumerate() {
        let m = read_json(&run.join(format!("match/layers/{layer}.json")));
        assert_eq!(m["models"][0], "training_seed_01");
        let pair = |i: usize| &m["pairs"][i];
        assert_eq!(
            (pair(0)["a"].as_str(), pair(0)["b"].as_str()),
            (Some("training_seed_01"), Some("training_seed_02"))
        );
        let assigned = pair(0)["assignment"].as_array().expect("assignment");
        let right = assigned
            .iter()
            .filter(|p| {
                p["b"].as_u64() == Some(perms[l][p["a"].as_u64().expect("a") as usize] as u64)
            })
            .count();
        let width = perms[l].len();
        assert_eq!(assigned.len(), width);
        if layer.starts_with("conv") {
            assert_eq!(right, width, "{layer}: the permutation exactly");
        } else {
            assert!(right * 100 >= 95 * width, "{layer}: {right} of {width}");
        }
        let copy = pair(0)["mean_assigned"].as_f64().expect("mean");
        let unrelated = pair(1)["mean_assigned"].as_f64().expect("mean");
        let spread = |i: usize| {
            let mut r: Vec<f64> = pair(i)["assignment"]
                .as_array()
                .expect("assignment")
                .iter()
                .filter_map(|p| p["correlation"].as_f64())
                .collect();
            r.sort_by(f64::total_cmp);
            (r[0], r[r.len() / 2], r[r.len() - 1])
        };
        let ((c0, c1, c2), (u0, u1, u2)) = (spread(0), spread(1));
        report.push(format!(
            "{layer}: copy mean {copy:.3} (min {c0:.3} median {c1:.3} max {c2:.3}), \
             unrelated mean {unrelated:.3} (min {u0:.3} median {u1:.3} max {u2:.3})"
        ));
        assert!(copy > 0.95, "{layer}: {copy}");
        assert!(
            unrelated < copy - 0.05,
            "{layer}: copy {copy}, unrelated {unrelated}"
        );
        let r = &m["consistency"]["r"];
        assert!(r[0][1].as_f64() > r[0][2].as_f64(), "{layer}: {r}");
    }
    eprintln!("matched correlation per layer:\n{}", report.join("\n"));

    // the same again from the stored means alone (`lucid-coordinator match`), another reference
    let args = lucid_coordinator::commands::SpecArgs {
        file: spec.clone().into(),
        sets: Vec::new(),
    };
    let settings = lucid_coordinator::matching::MatchSettings {
        reference: Some("training_seed_02".into()),
        ..Default::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let again = runtime
        .block_on(lucid_coordinator::commands::match_seeds(&args, &settings))
        .expect("match from the stored means");
    assert_eq!(again.reference, "training_seed_02");
    assert_eq!(again.layers.len(), 8);
    let fc8 = read_json(&run.join("match/layers/fc8.json"));
    assert_eq!(fc8["reference"], "training_seed_02");
    let csv = std::fs::read_to_string(run.join("match/layers/conv3.csv")).expect("csv");
    assert!(csv.starts_with("method,a_model,a_channel,b_model,b_channel,correlation\n"));
    let index = summary["gallery"]
        .as_str()
        .expect("local built the gallery");
    check_gallery(Path::new(index).parent().expect("gallery folder"));
}

/// The matching pages of the gallery `local` built: one row per reference channel with a partner
/// (tile and top example) in each of the three seeds, the plots, and every page loading in
/// headless Chromium. Keeps a screenshot in `docs/matching-screenshot.png` (written when missing).
fn check_gallery(gallery: &Path) {
    let page = std::fs::read_to_string(gallery.join("match/conv2.html")).unwrap_or_else(|e| {
        let listing: Vec<_> = std::fs::read_dir(gallery)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        panic!("match page: {e}; the gallery holds {listing:?}")
    });
    assert_eq!(
        page.matches("<tr><td>").count(),
        16,
        "a row per conv2 channel"
    );
    assert!(page.contains("conv2-consistency.svg") && page.contains("conv2-histogram.svg"));
    assert!(
        page.contains("../probe/images/") || page.contains("../../probe/images/"),
        "top examples"
    );
    let index = std::fs::read_to_string(gallery.join("index.html")).expect("index");
    assert!(
        index.contains("href=\"match/index.html\""),
        "the index links the matching"
    );
    assert!(
        !gallery.join("compare/conv2.html").exists(),
        "no index-aligned comparison"
    );
    let Some(browser) = lucid_testkit::browser::Browser::find() else {
        return;
    };
    let shot = gallery.join("../shot.png");
    let reports = browser.check(
        gallery,
        &[
            "match/conv2.html",
            "match/index.html",
            "training_seed_01/conv2/0003.html",
        ],
        Some(&shot),
    );
    // 16 rows x 3 seeds of (tile + example) images and backgrounds, the two plots
    assert!(
        reports[0]["images"].as_u64() >= Some(2 + 16 * 3),
        "{}",
        reports[0]
    );
    let docs = lucid_testkit::fixtures::workspace_root().join("docs/matching-screenshot.png");
    if !docs.exists() {
        std::fs::copy(&shot, &docs).expect("keep the screenshot");
    }
}
