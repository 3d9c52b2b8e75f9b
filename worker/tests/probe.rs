//! The probe pass's forward step on the synthetic demo model, whose conv2 channels are known: each
//! Gabor channel's best probe image is a grating at its orientation, each colour-opponent channel's
//! best is its colour field and its worst the opponent colour; batching changes nothing.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};
use lucid_checkpoint::ModelFile;
use lucid_probe::stimuli::{BLUE, GREEN, RED, Stimulus, YELLOW, stimuli};
use lucid_probe::{DecodeLimits, Example, Prepared, Preprocessing, decode, prepare};
use lucid_worker::model::AlexNet;
use lucid_worker::probe::{LayerExamples, batch_tensor, probe_batch};
use lucid_worker::synthetic::{self, Filter, orientation_difference};
use tch::Device;

mod common;

/// `stimulus` as a PNG file, decoded and prepared as the probe pass does.
fn probe_image(stimulus: Stimulus) -> Prepared {
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(stimulus.image())
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .expect("encode");
    let decoded = decode("stimulus.png", &bytes, DecodeLimits::default()).expect("decode");
    prepare(&decoded, Preprocessing::for_side(224))
}

fn demo_model(dir: &tempfile::TempDir) -> AlexNet {
    let path = dir.path().join("demo.safetensors");
    synthetic::write_model(&path, &synthetic::demo_filters(), 7).expect("write model");
    AlexNet::load(&ModelFile::open(&path).expect("open"), Device::Cpu).expect("load")
}

/// Probes `images` through `net`'s conv2 in batches of `batch`.
fn probe(net: &AlexNet, images: &[Prepared], batch: usize) -> LayerExamples {
    let index = net.layer_index(synthetic::MIRROR_LAYER).expect("conv2");
    let mut layers = vec![LayerExamples::new(net, index, 3)];
    for (i, chunk) in images.chunks(batch).enumerate() {
        let tensor = batch_tensor(chunk, Device::Cpu);
        probe_batch(net, &tensor, (i * batch) as u32, &mut layers).expect("probe");
    }
    layers.remove(0)
}

#[test]
fn each_demo_channels_best_probe_image_is_its_grating_or_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = demo_model(&dir);
    let stimuli = stimuli();
    let images: Vec<Prepared> = stimuli.iter().map(|&s| probe_image(s)).collect();
    let examples = probe(&net, &images, 8);
    assert_eq!(examples.means.len(), images.len() * examples.channels.len());
    for (channel, filter) in synthetic::demo_filters().into_iter().enumerate() {
        let best = examples.channels[channel].top_mean.examples()[0];
        let worst = examples.channels[channel].bottom_mean.examples()[0];
        let (best_stimulus, worst_stimulus) =
            (stimuli[best.image as usize], stimuli[worst.image as usize]);
        match filter {
            Filter::Gabor { degrees } => {
                let Stimulus::Grating { degrees: got, .. } = best_stimulus else {
                    panic!("channel {channel}: best is {best_stimulus:?}");
                };
                let off = orientation_difference(f64::from(got), f64::from(degrees));
                assert!(
                    off <= 22.5,
                    "channel {channel} ({degrees}°): best grating at {got}°"
                );
            }
            Filter::Opponent { rgb } => {
                let (want_best, want_worst) = match rgb {
                    [1.0, _, _] => (RED, GREEN),
                    [_, 1.0, _] => (GREEN, RED),
                    [_, _, 1.0] => (BLUE, YELLOW),
                    _ => (YELLOW, BLUE),
                };
                assert_eq!(
                    best_stimulus,
                    Stimulus::Field(want_best),
                    "channel {channel}"
                );
                // the opponent colour is among the lowest (conv2 reads rectified conv1, so the
                // lowest responses tie at 0 and the earliest such image is listed first)
                let opponent = stimuli
                    .iter()
                    .position(|s| *s == Stimulus::Field(want_worst))
                    .expect("listed");
                let at_opponent = examples.means[opponent * examples.channels.len() + channel];
                assert_eq!(
                    at_opponent, worst.score,
                    "channel {channel}: {worst_stimulus:?}"
                );
            }
        }
        // the mean matrix holds what the lists rank, and a maximum is never below its mean (but for
        // rounding: max-pooling makes some gratings' maps constant)
        let row = best.image as usize * examples.channels.len();
        assert_eq!(examples.means[row + channel], best.score);
        let peak = examples.channels[channel].top_max.examples()[0];
        assert!(
            peak.score >= best.score * (1.0 - 1e-5),
            "channel {channel}: max {peak:?} below mean {best:?}"
        );
        assert!(
            peak.y < 26 && peak.x < 26,
            "conv2 is 26 x 26 at 224 px: {peak:?}"
        );
    }
}

#[test]
fn batching_the_probe_images_changes_no_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = demo_model(&dir);
    let images: Vec<Prepared> = stimuli().into_iter().step_by(3).map(probe_image).collect();
    let whole = probe(&net, &images, images.len());
    for batch in [1, 5] {
        let split = probe(&net, &images, batch);
        for (channel, (a, b)) in split.channels.iter().zip(&whole.channels).enumerate() {
            let what = |list: &str| format!("batch {batch}, channel {channel}, {list}");
            let (top, bottom) = (&a.top_mean, &a.bottom_mean);
            assert_same_ranking(top.examples(), b.top_mean.examples(), &what("top mean"));
            assert_same_ranking(bottom.examples(), b.bottom_mean.examples(), &what("bottom"));
            assert_same_ranking(a.top_max.examples(), b.top_max.examples(), &what("top max"));
        }
        assert!(
            all_close(&split.means, &whole.means),
            "batch {batch}: means differ"
        );
    }
}

/// Equal but for float noise, element by element.
fn all_close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 * y.abs().max(1.0))
}

/// Equal scores up to float noise, and the same examples wherever no two scores are that close (a
/// near-tie may rank either way when the batch changes the convolution's summation order).
fn assert_same_ranking(a: &[Example], b: &[Example], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let near = |x: f32, y: f32| all_close(&[x], &[y]);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(near(x.score, y.score), "{what} rank {i}: {x:?} vs {y:?}");
        let tied = b
            .iter()
            .enumerate()
            .any(|(j, z)| j != i && near(z.score, y.score));
        if !tied {
            assert_eq!((x.image, x.y, x.x), (y.image, y.y, y.x), "{what} rank {i}");
        }
    }
}

/// Writes `stimulus` as a 300 x 224 file of `format` at `path`.
fn write_stimulus(path: &std::path::Path, stimulus: Stimulus, format: ImageFormat) {
    DynamicImage::ImageRgb8(stimulus.image())
        .save_with_format(path, format)
        .expect("write stimulus");
}

/// A demo model and a probe folder in a temporary directory, for `lucid-worker probe`.
struct ProbeRun {
    dir: tempfile::TempDir,
    model: std::path::PathBuf,
    images: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl ProbeRun {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("demo.safetensors");
        synthetic::write_model(&model, &synthetic::demo_filters(), 7).expect("write model");
        let images = dir.path().join("probe");
        std::fs::create_dir_all(images.join("fields")).expect("mkdir");
        let out = dir.path().join("out");
        ProbeRun {
            dir,
            model,
            images,
            out,
        }
    }

    /// `lucid-worker probe` on the CPU with the whitespace-separated `flags`: (success, stdout,
    /// stderr).
    fn run(&self, flags: &str) -> (bool, String, String) {
        let paths = [&self.model, &self.images, &self.out].map(|p| p.display().to_string());
        let mut args = vec!["probe", "--checkpoint", &paths[0], "--images", &paths[1]];
        args.extend(["--out", &paths[2], "--device", "cpu"]);
        args.extend(flags.split_whitespace());
        common::run_worker(&args)
    }
}

/// `lucid-worker probe` on a folder of gratings and colour fields with a corrupt JPEG and a text
/// file named `.png` among them: both are set aside naming the file, and everything else matches the
/// forward step run in this process, receptive-field crops included.
#[test]
fn the_probe_command_writes_every_channels_examples_and_sets_bad_files_aside() {
    let run = ProbeRun::new();
    let (dir, images, out) = (&run.dir, &run.images, &run.out);
    let stimuli: Vec<Stimulus> = stimuli().into_iter().step_by(4).collect();
    for (i, &stimulus) in stimuli.iter().enumerate() {
        let (folder, format) = match stimulus {
            Stimulus::Field(_) => ("fields", ImageFormat::Jpeg),
            Stimulus::Grating { .. } => (".", ImageFormat::Png),
        };
        let ext = if format == ImageFormat::Png {
            "png"
        } else {
            "jpg"
        };
        write_stimulus(
            &images.join(folder).join(format!("s{i:02}.{ext}")),
            stimulus,
            format,
        );
    }
    let good = std::fs::read(images.join("fields/s12.jpg")).expect("a jpeg");
    std::fs::write(images.join("fields/s99.jpg"), &good[..good.len() / 3]).expect("corrupt");
    std::fs::write(images.join("notes.png"), "not an image\n").expect("text");
    std::fs::write(images.join(".hidden.png"), "ignored").expect("hidden");
    let (ok, stdout, stderr) = run.run("--layers conv1,conv2 --k 3 --batch 4 --json");
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("report JSON");
    let names: Vec<&str> = report["probe_set"]["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert_eq!(names.len(), stimuli.len(), "{report}");
    let skipped = report["probe_set"]["skipped"].as_array().expect("skipped");
    let reasons: Vec<&str> = skipped
        .iter()
        .filter_map(|s| s["reason"].as_str())
        .collect();
    assert_eq!(skipped.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("probe image fields/s99.jpg: corrupt JPEG"))
    );
    assert!(reasons.contains(&"probe image notes.png: not a JPEG or PNG file"));
    let timing = &report["timing"];
    assert!(
        timing["images_per_second"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{timing}"
    );
    let field = &report["layers"][1]["receptive_field"]["local"];
    assert_eq!(field["rows"], serde_json::json!([51, 8, 16]), "{report}");

    // the same images, in the report's order, through the forward step here
    let net = demo_model(dir);
    let in_order: Vec<Prepared> = names
        .iter()
        .map(|name| {
            let bytes = std::fs::read(images.join(name)).expect("read");
            let image = decode(name, &bytes, DecodeLimits::default()).expect("decode");
            prepare(&image, Preprocessing::for_side(224))
        })
        .collect();
    let here = probe(&net, &in_order, 4);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("conv2.examples.json")).expect("examples"))
            .expect("examples JSON");
    for (channel, examples) in here.channels.iter().enumerate() {
        let listed = &written[channel];
        let best = examples.top_mean.examples()[0];
        assert_eq!(
            listed["top_mean"][0]["image"], best.image,
            "channel {channel}"
        );
        let peak = examples.top_max.examples()[0];
        let (y, x) = (peak.y as usize, peak.x as usize);
        let (top, left) = ((y * 8).saturating_sub(16), (x * 8).saturating_sub(16));
        let crop = [
            top,
            left,
            (y * 8 + 51 - 16).min(224),
            (x * 8 + 51 - 16).min(224),
        ];
        assert_eq!(
            listed["top_max"][0]["crop"],
            serde_json::json!(crop),
            "channel {channel}"
        );
    }
    let means = lucid_checkpoint::ModelFile::open(&out.join("conv2.means.safetensors"))
        .expect("means file")
        .read_f32("means")
        .expect("means tensor");
    assert_eq!(means.shape, [stimuli.len(), here.channels.len()]);
    assert!(
        all_close(&means.data, &here.means),
        "the written means are the forward step's"
    );
}

#[test]
fn the_probe_command_refuses_an_empty_folder_before_loading_anything() {
    let mut run = ProbeRun::new();
    run.model = run.dir.path().join("missing.safetensors");
    let empty = run.dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    run.images = empty.clone();
    let out = run.out.clone();
    let (ok, _, stderr) = run.run("");
    assert!(!ok);
    assert!(
        stderr.contains(&format!("no probe images in {}", empty.display())),
        "{stderr}"
    );
    std::fs::write(empty.join("a.png"), "text").expect("write");
    let (ok, _, stderr) = run.run("");
    assert!(!ok);
    assert!(stderr.contains("none of the 1 files in"), "{stderr}");
    assert!(
        stderr.contains("probe image a.png: not a JPEG or PNG file"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn the_probe_command_refuses_a_side_too_small_for_a_layer() {
    let run = ProbeRun::new();
    let red = run.images.join("red.png");
    write_stimulus(&red, Stimulus::Field(RED), ImageFormat::Png);
    let (ok, _, stderr) = run.run("--side 64");
    let refusal = "--side 64 is too small for layer fc6: it needs at least";
    assert!(!ok && stderr.contains(refusal), "{stderr}");
}

/// The probe pass's one pass up the chain against the direct form, each layer's own forward: the
/// same operations stopped at different heights, so equal to the bit, in any order, with repeats.
#[test]
fn one_pass_up_the_chain_equals_each_layers_own_forward() {
    let file = ModelFile::open(&common::small_prefix("training_seed_01")).expect("fixture");
    let net = AlexNet::load(&file, Device::Cpu).expect("load");
    tch::manual_seed(11);
    let x = tch::Tensor::rand([2, 3, 224, 224], (tch::Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let targets = [7, 1, 4, 1, 0];
    let together = net.forward_centred_many(&x, &targets, tch::Kind::Float);
    assert_eq!(together.len(), targets.len());
    for (&target, value) in targets.iter().zip(&together) {
        let alone = net.forward_centred(&x, target, tch::Kind::Float);
        assert_eq!(value.size(), alone.size(), "layer {target}");
        assert!(
            value.equal(&alone),
            "layer {target} differs from its own forward"
        );
    }
}

#[test]
fn the_probe_benchmark_reports_decoding_and_forward_rates_and_a_consistent_estimate() {
    let model = common::fixtures().join("demo/training_seed_01");
    let model = model.display().to_string();
    let report = common::run_bench(
        &["--checkpoint", &model],
        "--probe --device cpu --size 224 --batch 4 --probe-batches 2 --seeds 10 --probe-total 50000",
    );
    assert_eq!(report["layers"], 8, "{report}");
    assert_eq!(
        (report["side"].as_u64(), report["batch"].as_u64()),
        (Some(224), Some(4))
    );
    let rate = |v: &serde_json::Value| v.as_f64().filter(|r| r.is_finite() && *r > 0.0);
    let decode = rate(&report["decode"]["images_per_second"]).expect("decode rate");
    rate(&report["decode"]["one_thread_images_per_second"]).expect("one-thread rate");
    let forward = rate(&report["forward"]["images_per_second"]).expect("forward rate");
    assert!(
        report["decode"]["mean_file_bytes"].as_f64() > Some(20_000.0),
        "photograph-sized files: {report}"
    );
    let e = &report["estimate"];
    let f = |key: &str| e[key].as_f64().expect(key);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.max(1.0);
    assert!(close(f("decode_seconds"), 50_000.0 / decode), "{e}");
    assert!(close(f("forward_seconds"), 500_000.0 / forward), "{e}");
    assert!(
        close(
            f("decode_once_seconds"),
            f("decode_seconds") + f("forward_seconds")
        ),
        "{e}"
    );
    assert!(
        close(
            f("decode_per_seed_seconds"),
            10.0 * f("decode_seconds") + f("forward_seconds")
        ),
        "{e}"
    );
    assert!((0.0..1.0).contains(&f("decode_share_per_seed")), "{e}");
}
