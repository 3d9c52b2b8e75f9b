//! Shared by the gallery's integration tests: a synthetic run on disk and a link checker.
#![allow(dead_code)] // each test binary uses its own subset

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

/// What the generated channel images look like.
#[derive(Clone, Copy)]
pub enum Pattern {
    /// One flat colour per channel, [`channel_color`]: thumbnails are predictable to the pixel.
    Solid,
    /// Coloured interference stripes, different per channel: looks like something in a screenshot.
    Waves,
}

/// The flat colour of a channel's image under [`Pattern::Solid`].
pub fn channel_color(seed: usize, layer: usize, channel: u32) -> [u8; 3] {
    [
        (40 + channel * 5) as u8,
        (60 + layer * 90) as u8,
        (80 + seed * 100) as u8,
    ]
}

/// An 8-bit RGB PNG.
pub fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("png header");
    writer.write_image_data(rgb).expect("png data");
    writer.finish().expect("png finish");
    out
}

/// Decodes an 8-bit RGB PNG (as the gallery writes its sprites): width, height, pixels.
pub fn decode_rgb(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info().expect("png info");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Width and height of any PNG.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(bytes).read_info().expect("png info");
    let info = reader.info();
    (info.width, info.height)
}

fn image(pattern: Pattern, size: u32, seed: usize, layer: usize, channel: u32) -> Vec<u8> {
    let mut rgb = Vec::with_capacity((size * size * 3) as usize);
    let base = channel_color(seed, layer, channel);
    for y in 0..size {
        for x in 0..size {
            match pattern {
                Pattern::Solid => rgb.extend(base),
                Pattern::Waves => {
                    let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
                    let k = 3.0 + (channel % 7) as f32 * 2.0 + seed as f32;
                    let a = (fx * k + fy * (channel % 5) as f32 * 3.0).sin();
                    let b = ((fx - 0.5).hypot(fy - 0.5) * k * 2.0 + channel as f32).cos();
                    let v = (a * b * 0.5 + 0.5).clamp(0.0, 1.0);
                    rgb.extend(
                        base.map(|c| (f32::from(c) * (0.35 + v) + 40.0 * v).min(255.0) as u8),
                    );
                }
            }
        }
    }
    encode_png(size, size, &rgb)
}

/// A sidecar with the field names of `lucid_proto::result::ResultSidecar`.
pub fn sidecar(run: &str, seed: &str, layer: &str, channel: u32, size: u32) -> serde_json::Value {
    json!({
        "schema_version": 1,
        "task_id": format!("{run}/{seed}/{layer}/{channel:04}"),
        "run_id": run,
        "seed": seed,
        "layer": layer,
        "channel": channel,
        "settings": {"steps": 64, "size": size, "lr": 0.05, "param": "fft", "decorrelate": true},
        "objective_start": 0.01 * f64::from(channel),
        "objective_end": 1.5 + 0.25 * f64::from(channel),
        "steps": 64,
        "size": size,
        "render_seconds": 0.75,
        "worker_id": "worker-0",
        "code_version": "0.1.0+test",
        "created_at": "2025-01-02T03:04:05Z",
        "png_sha256": "ab".repeat(32),
    })
}

/// Writes `seeds × layers × channels` images of `size` px with sidecars under `root`, as workers would.
pub fn make_run(
    root: &Path,
    seeds: &[&str],
    layers: &[&str],
    channels: u32,
    size: u32,
    pattern: Pattern,
) {
    for (s, seed) in seeds.iter().enumerate() {
        for (l, layer) in layers.iter().enumerate() {
            let dir = root.join(seed).join(layer);
            fs::create_dir_all(&dir).expect("create layer folder");
            for c in 0..channels {
                fs::write(
                    dir.join(format!("{c:04}.png")),
                    image(pattern, size, s, l, c),
                )
                .expect("write png");
                let meta = sidecar("run1", seed, layer, c, size);
                fs::write(
                    dir.join(format!("{c:04}.json")),
                    serde_json::to_vec_pretty(&meta).expect("json"),
                )
                .expect("write sidecar");
            }
        }
    }
    fs::write(root.join("run.json"), b"{\"run_id\": \"run1\"}").expect("write manifest");
}

/// The run both gallery suites start from: two seeds × conv1, conv2 × 40 channels of 32 px in
/// `pattern`, with the sidecar of s1/conv1/0005 missing.
pub fn two_seed_run(pattern: Pattern) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    make_run(
        dir.path(),
        &["s1", "s2"],
        &["conv1", "conv2"],
        40,
        32,
        pattern,
    );
    fs::remove_file(dir.path().join("s1/conv1/0005.json")).expect("remove sidecar");
    dir
}

/// Every HTML file under `dir`, recursively.
pub fn html_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "html") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The URLs an HTML page refers to: `href="…"`, `src="…"` and CSS `url("…")`, entity-decoded.
pub fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for open in ["href=\"", "src=\"", "url(\""] {
        let mut rest = html;
        while let Some(i) = rest.find(open) {
            rest = &rest[i + open.len()..];
            let end = rest.find('"').expect("unterminated attribute");
            out.push(
                rest[..end]
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            );
            rest = &rest[end..];
        }
    }
    out
}

/// Checks every link of every page under `gallery`: relative, no scheme (except the empty `data:,`
/// favicon), and resolving to an existing file. Returns the number of links checked.
pub fn check_links(gallery: &Path) -> usize {
    let mut checked = 0;
    for page in html_files(gallery) {
        let html = fs::read_to_string(&page).expect("read page");
        for link in links(&html) {
            if link == "data:," {
                continue;
            }
            assert!(
                !link.starts_with('/') && !link.contains("://") && !link.contains(':'),
                "{}: link {link:?} is not relative",
                page.display()
            );
            let target = link.split(['#', '?']).next().unwrap_or_default();
            let resolved = page.parent().expect("page folder").join(target);
            assert!(
                resolved.is_file(),
                "{}: link {link:?} does not resolve ({})",
                page.display(),
                resolved.display()
            );
            checked += 1;
        }
    }
    checked
}
