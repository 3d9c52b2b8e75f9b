//! Opens built galleries from disk in headless Chromium and checks that every image decodes and
//! nothing logs an error ([`lucid_testkit::browser`]; it fails under CI without Chromium and Node,
//! and is reported as skipped elsewhere). Keeps a screenshot of a contact
//! sheet in `docs/gallery-screenshot.png`: rewritten when the lead's demo renders (`out/demo/…`) are
//! present, or when the file does not exist yet.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use lucid_gallery::{FolderStore, GalleryOptions};
use lucid_testkit::browser::Browser;
use support::{Pattern, make_run};

fn workspace() -> PathBuf {
    lucid_testkit::fixtures::workspace_root()
}

fn build(root: &Path, opts: &GalleryOptions) {
    let mut store = FolderStore::new(root);
    let source = store.clone();
    let summary = lucid_gallery::build(&source, &mut store, opts).expect("gallery build");
    eprintln!("built {}: {summary:?}", root.display());
}

/// The browser check of `pages` of the gallery of the run at `root`.
fn check(
    browser: &Browser,
    root: &Path,
    pages: &[&str],
    screenshot: Option<&Path>,
) -> Vec<serde_json::Value> {
    browser.check(&root.join("gallery"), pages, screenshot)
}

/// Copies the lead's demo renders into `root` as a run; false if they are not there.
fn copy_demo(root: &Path) -> bool {
    let demo = workspace().join("out/demo");
    let seeds = ["training_seed_01", "training_seed_02"];
    if !seeds.iter().all(|s| demo.join(s).join("conv2").is_dir()) {
        return false;
    }
    for seed in seeds {
        let from = demo.join(seed).join("conv2");
        let to = root.join(seed).join("conv2");
        fs::create_dir_all(&to).expect("create demo folder");
        for entry in fs::read_dir(&from).expect("read demo folder") {
            let path = entry.expect("demo entry").path();
            if let Some(name) = path.file_name() {
                fs::copy(&path, to.join(name)).expect("copy demo file");
            }
        }
    }
    true
}

#[test]
fn gallery_pages_load_in_chromium() {
    let Some(browser) = Browser::find() else {
        return;
    };

    // A run with problems: a missing sidecar, a corrupt PNG, several sprites per layer.
    let dir = support::two_seed_run(Pattern::Waves);
    let root = dir.path();
    // unit s1/conv1/0003 has three more views, one of them with two copies (issue 17)
    let unit = root.join("s1/conv1");
    for (view, pngs) in [
        ("neuron", &["neuron"][..]),
        ("negative_channel", &["negative_channel"]),
        ("diversity-2", &["diversity-2.0", "diversity-2.1"]),
    ] {
        for png in pngs {
            fs::copy(unit.join("0003.png"), unit.join(format!("0003.{png}.png")))
                .expect("view png");
        }
        fs::copy(
            unit.join("0003.json"),
            unit.join(format!("0003.{view}.json")),
        )
        .expect("view json");
    }
    fs::write(root.join("s2/conv2/0007.png"), b"\x89PNG\r\n\x1a\ngarbage").expect("corrupt png");
    let opts = GalleryOptions {
        run_id: "run1".into(),
        thumb_size: 32,
        sprite_columns: 8,
        sprite_max_thumbs: 16,
        threads: 2,
    };
    build(root, &opts);
    check(
        &browser,
        root,
        &[
            "index.html",
            "s1/conv1.html",
            "s2/conv2.html",
            "compare/conv2.html",
            "compare/conv2/0007.html",
            "s1/conv1/0005.html",
        ],
        None,
    );
    // the unit page shows every view side by side, each image decoded in the browser
    let unit_page = check(&browser, root, &["s1/conv1/0003.html"], None);
    assert_eq!(unit_page[0]["images"], 1 + 4, "{}", unit_page[0]);
    let html = fs::read_to_string(root.join("gallery/s1/conv1/0003.html")).expect("unit page");
    for label in [
        "neuron",
        "negative_channel",
        "diversity:2 · copy 0",
        "diversity:2 · copy 1",
    ] {
        assert!(html.contains(&format!("<figcaption>{label}")), "{label}");
    }
    // the layer page switches to each view's page, which shows the units that have it
    let layer_page = fs::read_to_string(root.join("gallery/s1/conv1.html")).expect("layer page");
    for view in ["negative_channel", "neuron", "diversity-2"] {
        assert!(
            layer_page.contains(&format!("href=\"conv1/view-{view}.html\"")),
            "{view}"
        );
    }
    let views = check(
        &browser,
        root,
        &[
            "s1/conv1/view-neuron.html",
            "s1/conv1/view-diversity-2.html",
        ],
        None,
    );
    assert_eq!(
        (&views[0]["images"], &views[1]["images"]),
        (&1.into(), &2.into())
    );

    // The screenshot: the demo renders if present, else a synthetic run.
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let demo = copy_demo(root);
    let (seed, layer, thumb) = if demo {
        ("training_seed_01", "conv2", 128)
    } else {
        make_run(
            root,
            &["seed_01", "seed_02"],
            &["conv2"],
            24,
            96,
            Pattern::Waves,
        );
        ("seed_01", "conv2", 96)
    };
    let opts = GalleryOptions {
        run_id: if demo { "demo" } else { "synthetic" }.into(),
        thumb_size: thumb,
        sprite_columns: 8,
        sprite_max_thumbs: 1024,
        threads: 2,
    };
    build(root, &opts);
    let shot = root.join("screenshot.png");
    let layer_page = format!("{seed}/{layer}.html");
    check(&browser, root, &[&layer_page, "index.html"], Some(&shot));
    let (w, h) = support::png_size(&fs::read(&shot).expect("read screenshot"));
    assert_eq!(w, 1280);
    assert!(h >= 200, "screenshot height {h}");
    let docs = workspace().join("docs/gallery-screenshot.png");
    if demo || !docs.exists() {
        fs::copy(&shot, &docs).expect("keep screenshot in docs/");
        eprintln!("screenshot saved to {}", docs.display());
    }
}
