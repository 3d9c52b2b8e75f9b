//! Builds the gallery of a synthetic run in a temporary folder and checks what it wrote.

mod support;

use std::fs;

use lucid_gallery::{FolderStore, GalleryOptions, GallerySummary};
use support::{Pattern, channel_color, check_links, decode_rgb, html_files, make_run};

const HOSTILE: &str = "<script>alert(\"x&y\")</script>'";
const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;";

fn options() -> GalleryOptions {
    GalleryOptions {
        run_id: "run1".into(),
        thumb_size: 16,
        sprite_columns: 8,
        sprite_max_thumbs: 32,
        threads: 2,
    }
}

/// 2 seeds × 2 layers × 40 channels of 32 px; s1/conv1/0005 has no sidecar, s2/conv2/0007.png is
/// corrupt, s1/conv1/0003's sidecar carries markup, s2/conv1/0009.json is not JSON.
fn synthetic_run() -> tempfile::TempDir {
    let dir = support::two_seed_run(Pattern::Solid);
    let root = dir.path();
    fs::write(
        root.join("s2/conv2/0007.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .expect("corrupt png");
    fs::write(root.join("s2/conv1/0009.json"), b"{ truncated").expect("corrupt sidecar");
    let mut meta = support::sidecar("run1", "s1", "conv1", 3, 32);
    meta["worker_id"] = HOSTILE.into();
    meta["settings"][HOSTILE] = HOSTILE.into();
    fs::write(
        root.join("s1/conv1/0003.json"),
        serde_json::to_vec(&meta).expect("json"),
    )
    .expect("write hostile sidecar");
    dir
}

fn build(root: &std::path::Path) -> GallerySummary {
    let mut store = FolderStore::new(root);
    let source = store.clone();
    lucid_gallery::build(&source, &mut store, &options()).expect("gallery build")
}

#[test]
fn builds_a_complete_gallery() {
    let dir = synthetic_run();
    let root = dir.path();
    let summary = build(root);
    // pages: index + 4 contact sheets + 160 channel pages + 2 compare indexes + 80 compare pages
    assert_eq!(
        summary,
        GallerySummary {
            pages: 1 + 4 + 160 + 2 + 80,
            sprites: 8,
            previews: 4,
            images: 159,
            channels: 160,
            missing_images: 0,
            unreadable_images: 1,
            missing_sidecars: 1,
            unreadable_sidecars: 1,
            examples_layers: 0,
            unreadable_examples: 0,
            match_layers: 0,
        }
    );

    let g = root.join("gallery");
    for rel in [
        "index.html",
        "s1/conv1.html",
        "s1/conv1-0.png",
        "s1/conv1-1.png",
        "s1/conv1-preview.png",
        "s2/conv2/0039.html",
        "s2/conv2/0007.html",
        "compare/conv1.html",
        "compare/conv2/0000.html",
        "compare/conv2/0039.html",
    ] {
        assert!(g.join(rel).is_file(), "missing gallery/{rel}");
    }
    assert!(!g.join("s1/conv1-2.png").exists());
    assert_eq!(html_files(&g).len(), summary.pages);

    let links = check_links(&g);
    assert!(links > 1000, "only {links} links checked");

    // sprites: 8 columns of 16 px; 32 thumbnails in 4 rows, then 8 in one row
    let (w, h, px) = decode_rgb(&fs::read(g.join("s1/conv1-0.png")).expect("sprite 0"));
    assert_eq!((w, h), (128, 64));
    let at = |px: &[u8], w: u32, x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        [px[i], px[i + 1], px[i + 2]]
    };
    // channel 10 sits at column 2, row 1 of sprite 0
    assert_eq!(at(&px, w, 2 * 16 + 8, 16 + 8), channel_color(0, 0, 10));
    let (w, h, px) = decode_rgb(&fs::read(g.join("s1/conv1-1.png")).expect("sprite 1"));
    assert_eq!((w, h), (128, 16));
    // channel 33 is the second thumbnail of sprite 1
    assert_eq!(at(&px, w, 16 + 3, 5), channel_color(0, 0, 33));
    // the corrupt channel's cell is painted, not left blank
    let (w, _, px) = decode_rgb(&fs::read(g.join("s2/conv2-0.png")).expect("s2 sprite"));
    let cell = at(&px, w, 7 * 16 + 8, 8);
    assert_ne!(cell, channel_color(1, 1, 7));
    assert_ne!(cell, [17, 17, 17]);
    let (w, h, _) = decode_rgb(&fs::read(g.join("s1/conv1-preview.png")).expect("preview"));
    assert_eq!((w, h), (64, 32));

    // pages
    let read = |rel: &str| fs::read_to_string(g.join(rel)).expect("read page");
    let layer = read("s1/conv1.html");
    assert!(layer.contains("loading=\"lazy\""));
    assert!(layer.contains("src=\"conv1-0.png\""));
    assert!(layer.contains("href=\"conv1/0039.html\""));
    assert!(layer.contains("sidecar missing"));
    assert!(read("s2/conv2.html").contains("class=\"unreadable\""));
    let bad = read("s2/conv2/0007.html");
    assert!(bad.contains("image unreadable"));
    assert!(
        !bad.contains("<img"),
        "an undecodable PNG must not be shown as an image"
    );
    assert!(read("s2/conv1/0009.html").contains("sidecar unreadable"));
    let nometa = read("s1/conv1/0005.html");
    assert!(nometa.contains("sidecar missing"));
    assert!(nometa.contains("src=\"../../../s1/conv1/0005.png\""));

    let channel = read("s1/conv1/0004.html");
    assert!(channel.contains("src=\"../../../s1/conv1/0004.png\""));
    assert!(channel.contains("href=\"0003.html\" rel=\"prev\""));
    assert!(channel.contains("href=\"0005.html\" rel=\"next\""));
    for field in [
        "objective_start",
        "objective_end",
        "render_seconds",
        "worker_id",
        "created_at",
        "lr",
    ] {
        assert!(channel.contains(&format!("<th>{field}</th>")), "no {field}");
    }
    assert!(channel.contains("2025-01-02T03:04:05Z"));

    let compare = read("compare/conv1/0004.html");
    for seed in ["s1", "s2"] {
        assert!(compare.contains(&format!("src=\"../../../{seed}/conv1/0004.png\"")));
    }
    assert!(
        compare.contains("0.0400 → 2.5000"),
        "objective values shown"
    );
    assert!(read("compare/conv2.html").contains("url(\"../s2/conv2-1.png\")"));
    let index = read("index.html");
    assert!(index.contains("href=\"s2/conv2.html\""));
    assert!(index.contains("href=\"compare/conv1.html\""));
    assert!(index.contains("image unreadable"));

    // escaping: the hostile string shows up escaped, never as markup
    let hostile = read("s1/conv1/0003.html");
    assert!(
        hostile.contains(&format!("<td>{HOSTILE_ESCAPED}</td>")),
        "worker_id escaped"
    );
    assert!(
        hostile.contains(&format!("<th>{HOSTILE_ESCAPED}</th>")),
        "field name escaped"
    );
    for page in html_files(&g) {
        let html = fs::read_to_string(&page).expect("read page");
        assert!(!html.contains("<script"), "{}", page.display());
        assert!(
            !html.contains("http:") && !html.contains("https:"),
            "{}",
            page.display()
        );
    }
}

#[test]
fn rebuilding_is_stable_and_leaves_no_temporaries() {
    let dir = synthetic_run();
    let first = build(dir.path());
    let index = fs::read(dir.path().join("gallery/index.html")).expect("index");
    let second = build(dir.path());
    assert_eq!(
        first, second,
        "the gallery's own files are not taken for channels"
    );
    assert_eq!(
        fs::read(dir.path().join("gallery/index.html")).expect("index"),
        index
    );
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name();
            assert!(
                !name.to_string_lossy().starts_with('.'),
                "temporary left behind: {}",
                entry.path().display()
            );
            if entry.path().is_dir() {
                stack.push(entry.path());
            }
        }
    }
}

#[test]
fn a_layer_missing_in_one_seed_and_an_image_without_png() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    make_run(root, &["a"], &["conv1", "fc8"], 3, 8, Pattern::Solid);
    make_run(root, &["b"], &["conv1"], 5, 8, Pattern::Solid);
    fs::remove_file(root.join("b/conv1/0004.png")).expect("remove png");
    let summary = build(root);
    assert_eq!(summary.channels, 11);
    assert_eq!(summary.missing_images, 1);
    let g = root.join("gallery");
    check_links(&g);
    let compare = fs::read_to_string(g.join("compare/fc8/0000.html")).expect("compare page");
    assert!(compare.contains("not rendered"), "seed b has no fc8");
    let compare = fs::read_to_string(g.join("compare/conv1/0004.html")).expect("compare page");
    assert!(compare.contains("missing"));
    let index = fs::read_to_string(g.join("index.html")).expect("index");
    assert!(
        index.contains("<td class=\"muted\">—</td>"),
        "b/fc8 cell is empty"
    );
}
