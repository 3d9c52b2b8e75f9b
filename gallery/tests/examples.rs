//! A run with a probe pass gets its dataset examples in the gallery: each channel page shows the
//! top-k and bottom-k images by mean and the top-k maxima as receptive-field crops, each linked to
//! the prepared picture the merge stored; a layer gets a page of examples instead of
//! visualizations; a missing picture or an unreadable examples file is shown as such, never fails
//! the build. The probe objects are written with the probe pass's own writers (lucid-probe,
//! lucid-proto), as the coordinator's merge writes them.

mod support;

use std::fs;
use std::path::Path;

use lucid_gallery::{FolderStore, GalleryOptions};
use lucid_network::ReceptiveField;
use lucid_probe::output::{
    self, LayerReport, ModelReport, ProbeReport, ProbeSetReport, ProbeTiming,
};
use lucid_probe::stimuli::{Stimulus, stimuli};
use lucid_probe::{ChannelExamples, DecodeLimits, Example, Preprocessing};
use lucid_proto::probe::ProbeIndex;
use lucid_proto::spec::ProbeSection;
use support::{Pattern, check_links};

/// The probe side of the test run (crops are in these pixels).
const SIDE: u32 = 64;

/// A file name that needs escaping in HTML.
const ODD_NAME: &str = "odd & 'quoted' <name>.png";

/// Probe files: eight stimuli and [`ODD_NAME`], in key order as the index lists them.
fn probe_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = stimuli()
        .into_iter()
        .step_by(6)
        .take(8)
        .map(|s| (s.file_name(), s.encoded()))
        .collect();
    files.push((ODD_NAME.into(), Stimulus::Field([200, 40, 40]).encoded()));
    files.sort();
    files
}

/// Channel `c` of a layer: image `(c + i) % n` is its i-th best, the reverse its worst, its
/// maxima at position (i, c % 3).
fn channel_examples(c: u32, images: u32) -> ChannelExamples {
    let mut examples = ChannelExamples::new(3);
    for image in 0..images {
        let rank = (image + images - c % images) % images;
        let score = (images - rank) as f32;
        let peak = Example {
            score,
            image,
            y: rank,
            x: c % 3,
        };
        examples.offer(image, score / 2.0, peak).expect("finite");
    }
    examples
}

/// Writes the probe objects of model `s1` (conv1 and conv2) into the run at `root`: the index, the
/// report, each layer's examples (conv1 with a 7 px field, conv2 without geometry) and every
/// picture but file 2's.
fn write_probe_pass(root: &Path) -> Vec<String> {
    let files = probe_files();
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let probe = root.join("probe");
    fs::create_dir_all(probe.join("images")).expect("mkdir");
    fs::create_dir_all(probe.join("s1")).expect("mkdir");
    let section: ProbeSection = toml_section();
    let index = ProbeIndex::new(&section, names.clone());
    fs::write(probe.join("images.json"), index.encode()).expect("index");
    let how = Preprocessing::for_side(SIDE);
    for (i, (name, bytes)) in files.iter().enumerate() {
        if i == 2 {
            continue; // a picture the merge did not store
        }
        let jpeg =
            lucid_probe::preview_jpeg(name, bytes, how, DecodeLimits::default()).expect("preview");
        fs::write(probe.join(format!("images/{i:06}.jpg")), jpeg).expect("picture");
    }
    let field = ReceptiveField::Local {
        rows: lucid_network::Axis {
            size: 7,
            jump: 4,
            offset: 0,
        },
        cols: lucid_network::Axis {
            size: 7,
            jump: 4,
            offset: 0,
        },
    };
    let images = names.len() as u32;
    for (layer, field) in [("conv1", Some(field)), ("conv2", None)] {
        let channels: Vec<ChannelExamples> = (0..40).map(|c| channel_examples(c, images)).collect();
        let json = output::examples_json(&channels, field, SIDE as usize);
        fs::write(probe.join(format!("s1/{layer}.examples.json")), json).expect("examples");
    }
    let report = ProbeReport {
        schema_version: output::REPORT_SCHEMA_VERSION,
        model: ModelReport {
            label: "s1".into(),
            network: "alexnet_v2".into(),
        },
        layers: ["conv1", "conv2"]
            .map(|layer| LayerReport {
                layer: layer.into(),
                channels: 40,
                receptive_field: None,
            })
            .into(),
        probe_set: ProbeSetReport {
            images: names.clone(),
            preprocessing: how,
            skipped: Vec::new(),
        },
        timing: ProbeTiming::of(names.len(), 1.0, 1.0),
    };
    fs::write(
        probe.join("s1/probe.json"),
        serde_json::to_vec_pretty(&report).expect("json"),
    )
    .expect("report");
    // s2's examples cannot be read: the gallery says so on its pages
    fs::create_dir_all(probe.join("s2")).expect("mkdir");
    fs::write(probe.join("s2/conv1.examples.json"), b"[{\"channel\": 0,").expect("cut");
    fs::write(
        probe.join("s2/probe.json"),
        serde_json::to_vec_pretty(&report).expect("json"),
    )
    .expect("report");
    names
}

fn toml_section() -> ProbeSection {
    ProbeSection {
        images: lucid_proto::ModelLocation::Local("/probe-set".into()),
        k: 3,
        side: SIDE,
        shard: 4,
        batch: 2,
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn channel_pages_show_examples_crops_and_negatives_and_a_layer_page_shows_examples() {
    let dir = support::two_seed_run(Pattern::Waves);
    let root = dir.path();
    let names = write_probe_pass(root);
    let mut store = FolderStore::new(root);
    let source = store.clone();
    let opts = GalleryOptions {
        run_id: "run1".into(),
        thumb_size: 16,
        sprite_columns: 8,
        sprite_max_thumbs: 32,
        threads: 2,
    };
    let summary = lucid_gallery::build(&source, &mut store, &opts).expect("build");
    assert_eq!(
        (summary.examples_layers, summary.unreadable_examples),
        (2, 1)
    );
    // every link of every page, examples included, resolves to a stored file
    assert!(check_links(&root.join("gallery")) > 0);

    // channel 4 of conv1: images 4, 5, 6 best (scores 9, 8, 7 halved), 3, 2, 1 worst
    let page = read(&root.join("gallery/s1/conv1/0004.html"));
    let (top, rest) = page
        .split_once("<h3>Highest mean activation</h3>")
        .expect("top section");
    assert!(top.contains("<h2>Dataset examples</h2>"));
    let (top, rest) = rest
        .split_once("<h3>Strongest single positions (receptive-field crops)</h3>")
        .expect("maxima section");
    let (maxima, bottom) = rest
        .split_once("<h3>Lowest mean activation</h3>")
        .expect("bottom section");
    let picture = |i: usize| format!("../../../probe/images/{i:06}.jpg");
    let order = |html: &str, files: [usize; 3]| {
        let at: Vec<usize> = files
            .iter()
            .map(|&i| {
                html.find(&picture(i))
                    .unwrap_or_else(|| panic!("{i} in {html}"))
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{files:?}: {html}");
    };
    order(top, [4, 5, 6]);
    order(maxima, [4, 5, 6]);
    // the bottom list holds file 2, whose picture is not stored: shown as such, named
    assert!(bottom.contains(&picture(3)) && bottom.contains(&picture(1)));
    assert!(bottom.contains("picture not stored"), "{bottom}");
    assert!(bottom.contains(&names[2]), "{bottom}");
    assert!(top.contains("<figcaption>4.5000<br>"), "{top}");
    // the best maximum, at (0, 1) with a 7 px field at jump 4: rows [0, 7) and columns [4, 11),
    // scaled by 112 / 7 = 16 so the 64 px picture is 1024 px, shifted left by 64 px
    assert!(
        maxima.contains(
            "<div class=\"crop\" style=\"width:112.0px;height:112.0px\"><img src=\"../../../probe/images/000004.jpg\" \
             style=\"width:1024.0px;height:1024.0px;left:-64.0px;top:0.0px\""
        ),
        "{maxima}"
    );
    assert!(maxima.contains("<figcaption>9 at (0, 1)<br>"), "{maxima}");

    // conv2 has no geometry: its maxima are whole pictures, and the heading says why
    let page = read(&root.join("gallery/s1/conv2/0000.html"));
    assert!(page.contains("(whole images: the network carries no geometry to crop by)"));
    assert!(!page.contains("class=\"crop\""));

    // a name that needs escaping is escaped wherever it is shown
    let odd = names.iter().position(|n| n == ODD_NAME).expect("odd name");
    let page = read(&root.join(format!("gallery/s1/conv1/{:04}.html", odd)));
    assert!(!page.contains(ODD_NAME));
    assert!(page.contains("odd &amp; &#39;quoted&#39; &lt;name&gt;.png"));

    // the layer page switches to the examples page; it has one row per channel with its tile
    let layer = read(&root.join("gallery/s1/conv1.html"));
    assert!(layer.contains("<a href=\"conv1/examples.html\">dataset examples</a>"));
    let examples = read(&root.join("gallery/s1/conv1/examples.html"));
    assert_eq!(examples.matches("<div class=\"exrow\">").count(), 40);
    assert!(examples.contains("<b>dataset examples</b>"));
    assert!(examples.contains("href=\"0039.html\""));
    // s2 has no renders of its own examples' layer conv2, and conv1's examples are unreadable
    let s2 = read(&root.join("gallery/s2/conv1/0000.html"));
    assert!(
        s2.contains("examples unreadable: probe/s2/conv1.examples.json"),
        "{s2}"
    );
    assert!(!root.join("gallery/s2/conv2/examples.html").exists());
}
