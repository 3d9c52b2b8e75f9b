//! The views of a unit (issue 17) against known answers on the synthetic Gabor demo model, each
//! rendered through the settings a task of the view runs with (`pipeline::engine_settings`).

mod common;

use lucid_checkpoint::ModelFile;
use lucid_proto::View;
use lucid_proto::spec::{RenderSettings, Transforms};
use lucid_worker::model::AlexNet;
use lucid_worker::pipeline::engine_settings;
use lucid_worker::render::{RenderedImage, render_batch};
use lucid_worker::synthetic;
use tch::Device;

fn demo_model(dir: &tempfile::TempDir) -> AlexNet {
    let path = dir.path().join("gabor.safetensors");
    synthetic::write_model(&path, &synthetic::demo_filters(), 7).expect("write synthetic model");
    let file = ModelFile::open(&path).expect("open model");
    AlexNet::load(&file, Device::Cpu).expect("load model")
}

fn render_view(
    model: &AlexNet,
    layer: &str,
    channels: &[usize],
    view: View,
    settings: &RenderSettings,
) -> Vec<RenderedImage> {
    let engine = engine_settings(settings, view);
    render_batch(model, "synthetic", layer, channels, &engine)
        .expect("render")
        .images
}

/// Luminance of an 8-bit RGB image, in [0, 1].
fn luminance(rgb: &[u8]) -> Vec<f64> {
    rgb.chunks(3)
        .map(|p| p.iter().map(|&v| f64::from(v)).sum::<f64>() / 765.0)
        .collect()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let norm = |x: &[f64], m: f64| x.iter().map(|v| (v - m).powi(2)).sum::<f64>().sqrt();
    cov / (norm(a, ma) * norm(b, mb)).max(1e-12)
}

/// conv1 of the demo model is linear: its channel mean is `<image, the Gabor tiled at stride 4>`,
/// so the channel view is that tiled grating and the negative view, which minimises the same sum,
/// is the grating in opposite phase. Transformation robustness averages over shifts and so over
/// phase; the phase relation is measured without it (measured: correlations −0.80 to −0.98).
#[test]
fn the_negative_view_of_a_gabor_channel_is_its_grating_in_opposite_phase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = demo_model(&dir);
    let settings = RenderSettings {
        steps: 48,
        size: 64,
        transforms: Transforms::None,
        ..RenderSettings::default()
    };
    let gabors = [0, 1, 2, 3];
    let positive = render_view(&model, "conv1", &gabors, View::Channel, &settings);
    let negative = render_view(&model, "conv1", &gabors, View::NegativeChannel, &settings);
    for (p, n) in positive.iter().zip(&negative) {
        assert_eq!(p.channel, n.channel);
        let r = correlation(&luminance(&p.rgb), &luminance(&n.rgb));
        assert!(r < -0.5, "Gabor channel {}: correlation {r:.3}", p.channel);
        // each view moved its own objective: the negative view lowered the channel's mean
        assert!(p.objective_end > p.objective_start, "channel {}", p.channel);
        assert!(
            n.objective_end > n.objective_start,
            "negative {}",
            n.channel
        );
    }
}

/// The share of an image's high-frequency power (the squared 4-neighbour Laplacian of its
/// luminance) inside the square `[lo, hi)²`.
fn high_frequency_share(rgb: &[u8], size: usize, (lo, hi): (usize, usize)) -> f64 {
    let y = luminance(rgb);
    let at = |r: usize, c: usize| y[r * size + c];
    let (mut inside, mut total) = (0.0, 0.0);
    for r in 1..size - 1 {
        for c in 1..size - 1 {
            let lap = 4.0 * at(r, c) - at(r - 1, c) - at(r + 1, c) - at(r, c - 1) - at(r, c + 1);
            let power = lap * lap;
            total += power;
            if (lo..hi).contains(&r) && (lo..hi).contains(&c) {
                inside += power;
            }
        }
    }
    inside / total.max(1e-12)
}

/// The neuron view maximises conv1's centre unit only, whose receptive field is 11 px: at 96 px the
/// unit reads rows and columns 44..55, moved by at most 16 px by lucid's jitter, so nearly all of
/// the image's high-frequency power lies in `[28, 71)²` (20% of the image); the channel view
/// spreads it over the whole image (measured: 0.98 of the neuron view's power in the window, 0.09
/// of the channel view's).
#[test]
fn the_neuron_view_concentrates_its_energy_at_the_centre() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = demo_model(&dir);
    let settings = RenderSettings {
        steps: 48,
        size: 96,
        ..RenderSettings::default()
    };
    let window = (28, 71);
    let neuron = render_view(&model, "conv1", &[0, 2], View::Neuron, &settings);
    let channel = render_view(&model, "conv1", &[0, 2], View::Channel, &settings);
    for (n, c) in neuron.iter().zip(&channel) {
        let centred = high_frequency_share(&n.rgb, 96, window);
        let spread = high_frequency_share(&c.rgb, 96, window);
        assert!(
            centred > 0.6 && spread < 0.4,
            "channel {}: {centred:.3} of the neuron view's high-frequency power in the centre, {spread:.3} of the channel view's",
            n.channel
        );
    }
}

/// A diversity view's copies, pushed apart by lucid's λ = 100, are less alike at the layer (Gram
/// cosine, measured on the stored 8-bit images) than the same copies rendered independently (λ = 0),
/// and each still drives the unit well above the noise it started from (measured at 48 steps: Gram
/// cosine 0.94 independent, 0.01 with λ = 100; with λ = 100 the diversity term, up to 100 × 2 here,
/// outweighs the unit's objective of about 3, so the copies reach 0.01–1.1 against 2.2–3.8
/// independently, still 3–70× the noise's).
#[test]
fn diversity_copies_differ_more_than_independent_renders_and_each_activates_the_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = demo_model(&dir);
    let view = View::Diversity { copies: 3 };
    let mut similarity = Vec::new();
    for diversity_weight in [0.0, 100.0] {
        let settings = RenderSettings {
            steps: 48,
            size: 64,
            diversity_weight,
            ..RenderSettings::default()
        };
        let images = render_view(&model, synthetic::MIRROR_LAYER, &[0, 5], view, &settings);
        assert_eq!(images.len(), 6, "three copies of each of two units");
        for image in &images {
            assert!(
                image.objective_end > image.objective_start + 0.5 * image.objective_end.abs(),
                "λ {diversity_weight}, channel {} copy {}: {} from noise at {}",
                image.channel,
                image.copy,
                image.objective_end,
                image.objective_start
            );
        }
        let unit: Vec<Vec<u8>> = images
            .into_iter()
            .filter(|i| i.channel == 0)
            .map(|i| i.rgb)
            .collect();
        similarity.push(common::mean_gram_cosine(
            &model,
            synthetic::MIRROR_LAYER,
            &unit,
            64,
        ));
    }
    let (independent, diverse) = (similarity[0], similarity[1]);
    assert!(
        diverse < independent - 0.05,
        "Gram cosine of the copies: {independent:.4} independent, {diverse:.4} with λ = 100"
    );
}

/// `bench --view` measures each view's throughput: its report names the view, and a diversity
/// view's batch is whole units of copies, counted as images.
#[test]
fn bench_measures_each_views_throughput() {
    let checkpoint = common::small_prefix("training_seed_01")
        .display()
        .to_string();
    for (view, batch) in [("neuron", 6), ("diversity:4", 4), ("diversity:4", 6)] {
        let batch = batch.to_string();
        let report = common::run_bench(
            &[
                "--checkpoint",
                &checkpoint,
                "--view",
                view,
                "--batch",
                &batch,
            ],
            "--layer conv2 --size 64 --updates 2 --warmup 1 --device cpu",
        );
        assert_eq!(report["view"], view, "{report}");
        let layer = &report["layers"][0];
        // six images at four copies per unit: one unit of four
        let images = if view == "neuron" { 6 } else { 4 };
        assert_eq!(layer["batch"], images, "{view} at --batch {batch}: {layer}");
        assert!(layer["images_per_second"].as_f64().is_some_and(|r| r > 0.0));
    }
}
