//! PyTorch models exported by `lucid-export` (`exporter/`), rendered through tch's `CModule`: the
//! fixture alexnet_v2 exported from PyTorch reaches the native network's objectives; torchvision's
//! resnet18 (random weights) is swept by `local`, every channel of three layers; and exports that
//! lie are refused naming the thing. The exports are written by `scripts/exports.sh` before
//! `cargo test` (`make test` sets `LUCID_EXPORTS_DIR`).

mod common;

use std::path::{Path, PathBuf};

use common::run_worker;
use lucid_checkpoint::ModelFile;
use lucid_proto::{NetworkRef, ResultSidecar};
use lucid_testkit::fixtures::exports_dir as exports;
use lucid_worker::model::AlexNet;
use lucid_worker::render::net::RenderNet;
use lucid_worker::render::{Settings, render_batch};
use lucid_worker::scripted::ScriptedNet;
use tch::{Device, Kind, Tensor};

/// Runs `local` on a spec of the exports `models` (every layer, all channels, 2 steps at 32 px) with
/// results in `dir/out`; returns that folder, the spec's path and the run's JSON summary.
fn local_export_sweep(
    exports: &Path,
    run: &str,
    models: &[&str],
    dir: &Path,
) -> (PathBuf, String, serde_json::Value) {
    let out = dir.join("out");
    let entries: String = models
        .iter()
        .map(|name| {
            format!(
                "{name} = {{ path = {:?}, network = \"torchscript\" }}\n",
                exports.join(name).display().to_string()
            )
        })
        .collect();
    let spec = format!(
        "run_id = {run:?}\n\n[models]\n{entries}\n[render]\nsteps = 2\nsize = 32\n\n[storage]\n\
         kind = \"local\"\nlocal_dir = {:?}\n",
        out.display().to_string()
    );
    let spec_path = dir.join(format!("{run}.toml"));
    std::fs::write(&spec_path, spec).expect("write spec");
    let spec_path = spec_path.display().to_string();
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec_path, "--json"]);
    assert!(ok, "local failed: {stderr}");
    let summary = serde_json::from_str(&stdout).expect("summary JSON");
    (out, spec_path, summary)
}

/// Copies the export folder `name` into `dir` so that a test may damage it.
fn copy_export(exports: &Path, name: &str, dir: &Path) -> PathBuf {
    let target = dir.join(name);
    std::fs::create_dir_all(&target).expect("create export copy");
    for entry in std::fs::read_dir(exports.join(name)).expect("read export") {
        let from = entry.expect("entry").path();
        std::fs::copy(&from, target.join(from.file_name().expect("name"))).expect("copy");
    }
    target
}

#[test]
fn an_exported_alexnet_reaches_the_native_objectives_channel_by_channel() {
    let Some(exports) = exports() else {
        return;
    };
    let file = ModelFile::open(&lucid_testkit::fixtures::small_prefix("training_seed_01"))
        .expect("fixture");
    let native = AlexNet::load(&file, Device::Cpu).expect("native");
    let scripted = ScriptedNet::load(&exports.join("alexnet_small"), Device::Cpu).expect("export");
    tch::manual_seed(5);
    let x = Tensor::rand([2, 3, 224, 224], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    for layer in ["conv1", "conv3", "fc6", "fc8"] {
        let i = RenderNet::layer_index(&native, layer).expect("native layer");
        let j = scripted.layer_index(layer).expect("exported layer");
        let want = native.forward_centred(&x, i, Kind::Float);
        let got = scripted.forward_centred(&x, j, Kind::Float);
        let scale = want.abs().max().double_value(&[]);
        let err = (&got - &want).abs().max().double_value(&[]);
        assert!(err <= 1e-4 * scale, "{layer}: max error {err} of {scale}");
    }
    // the ReLUs of a scripted graph are out of the redirect's reach: compare without it
    let settings = Settings {
        steps: 16,
        size: 96,
        relu_redirect: false,
        ..Settings::lucid()
    };
    let channels: Vec<usize> = (0..8).collect();
    let a = render_batch(&native, "s1", "conv2", &channels, &settings).expect("native render");
    let b = render_batch(&scripted, "s1", "conv2", &channels, &settings).expect("export render");
    let argmax = |images: &[lucid_worker::render::RenderedImage]| {
        images
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.objective_end.total_cmp(&y.1.objective_end))
            .map(|(i, _)| i)
    };
    for (x, y) in a.images.iter().zip(&b.images) {
        let tolerance = 0.01 * x.objective_end.abs().max(1e-3);
        assert!(
            (x.objective_end - y.objective_end).abs() <= tolerance,
            "channel {}: native {} export {}",
            x.channel,
            x.objective_end,
            y.objective_end
        );
    }
    assert_eq!(
        argmax(&a.images),
        argmax(&b.images),
        "the same channel responds most"
    );
}

/// An export in bf16 runs on bfloat16 copies of its modules and channels-last feeds its
/// convolutions NHWC: values stay within bfloat16's precision of fp32's (channels-last within
/// fp32's), and the layout reports that space-to-depth cannot reach inside a module.
#[test]
fn an_export_in_bf16_or_channels_last_follows_its_fp32_form() {
    use lucid_worker::layout::Layout;
    let Some(exports) = exports() else {
        return;
    };
    let mut net = ScriptedNet::load(&exports.join("resnet18"), Device::Cpu).expect("export");
    tch::manual_seed(6);
    let x = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let relative = |a: &Tensor, b: &Tensor| {
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-9)
    };
    for index in 0..net.layer_count() {
        let layer = net.layer_name(index).to_owned();
        let want = net.forward_centred(&x, index, Kind::Float);
        let low = net.forward_centred(&x, index, Kind::BFloat16);
        assert_eq!(low.kind(), Kind::Float, "{layer}: returned in fp32");
        let err = relative(&low, &want);
        assert!(
            err > 0.0 && err < 0.05,
            "{layer}: bf16 relative error {err}"
        );
        net.set_layout(Layout {
            channels_last: true,
            space_to_depth: true,
        });
        let laid = net.forward_centred(&x, index, Kind::Float);
        assert!(relative(&laid, &want) < 1e-4, "{layer}: channels-last");
        assert_eq!(
            net.layout(),
            Layout {
                channels_last: true,
                space_to_depth: false
            }
        );
        net.set_layout(Layout::default());
    }
}

#[test]
fn local_sweeps_every_channel_of_three_layers_of_an_exported_resnet18() {
    let Some(exports) = exports() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, spec_path, summary) = local_export_sweep(&exports, "r18", &["resnet18"], dir.path());
    // conv1 64 + layer1 64 + layer2.0.conv1 128
    assert_eq!(
        (summary["expected"].as_u64(), summary["rendered"].as_u64()),
        (Some(256), Some(256))
    );
    for (layer, width) in [("conv1", 64), ("layer1", 64), ("layer2.0.conv1", 128)] {
        for channel in [0, width - 1] {
            let stem = out.join(format!("r18/resnet18/{layer}/{channel:04}"));
            let bytes = std::fs::read(stem.with_extension("json")).expect("sidecar");
            let sidecar = ResultSidecar::decode(&bytes).expect("sidecar");
            assert_eq!(sidecar.network, NetworkRef::TorchScript);
            assert!(stem.with_extension("png").is_file());
        }
    }
    let (ok, _, stderr) = run_worker(&[
        "local",
        "--spec",
        &spec_path,
        "--no-gallery",
        "--set",
        "layers=layer9",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown layer layer9 for model resnet18; the network has layer1"),
        "{stderr}"
    );
}

#[test]
fn an_export_that_lies_is_refused_naming_the_layer_or_the_file() {
    let Some(exports) = exports() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let export = copy_export(&exports, "resnet18", dir.path());
    let descriptor = export.join("descriptor.json");
    let text = std::fs::read_to_string(&descriptor).expect("descriptor");
    std::fs::write(
        &descriptor,
        text.replacen("\"channels\": 64", "\"channels\": 32", 1),
    )
    .expect("edit descriptor");
    let err = ScriptedNet::load(&export, Device::Cpu).expect_err("wrong width");
    assert!(
        err.to_string()
            .contains("node conv1: the descriptor says 32 channels, but module conv1.pt gives 64"),
        "{err}"
    );
    std::fs::write(&descriptor, &text).expect("restore descriptor");
    std::fs::write(export.join("layer1.pt"), b"not a TorchScript archive").expect("damage");
    let err = ScriptedNet::load(&export, Device::Cpu).expect_err("not TorchScript");
    assert!(err.to_string().contains("layer1.pt"), "{err}");
    std::fs::remove_file(&descriptor).expect("remove descriptor");
    let err = ScriptedNet::load(&export, Device::Cpu).expect_err("no descriptor");
    assert!(err.to_string().contains("descriptor.json"), "{err}");
}

#[test]
fn render_takes_an_export_folder() {
    let Some(exports) = exports() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out").display().to_string();
    let export = exports.join("resnet18").display().to_string();
    let (ok, _, stderr) = run_worker(&[
        "render",
        "--checkpoint",
        &export,
        "--network",
        "torchscript",
        "--layer",
        "layer1",
        "--channels",
        "0-3",
        "--steps",
        "2",
        "--size",
        "32",
        "--out",
        &out,
    ]);
    assert!(ok, "render failed: {stderr}");
    for channel in 0..4 {
        let png = dir
            .path()
            .join(format!("out/render/resnet18/layer1/{channel:04}.png"));
        assert!(png.is_file(), "{png:?}");
    }
}

#[test]
fn a_gabor_resnet18_export_recovers_each_filters_orientation() {
    use lucid_worker::synthetic::{dominant_orientation, orientation_difference};
    let Some(exports) = exports() else {
        return;
    };
    let net = ScriptedNet::load(&exports.join("resnet18_gabor"), Device::Cpu).expect("export");
    let size = 64;
    let settings = Settings {
        steps: 96,
        size,
        ..Settings::lucid()
    };
    let out = render_batch(&net, "gabor", "relu", &[0, 1, 2, 3], &settings).expect("render");
    // lucid_export.gabor: wave vectors at 0°, 45°, 90° and 135°
    for (image, degrees) in out.images.iter().zip([0.0, 45.0, 90.0, 135.0]) {
        assert!(
            image.objective_end > image.objective_start,
            "channel {} did not improve",
            image.channel
        );
        let got = dominant_orientation(&image.rgb, size);
        let diff = orientation_difference(got, degrees);
        assert!(
            diff <= 15.0,
            "Gabor at {degrees}°: image orientation {got:.1}° ({diff:.1}° off)"
        );
    }
}

#[test]
fn local_sweeps_every_channel_of_three_layers_of_vgg11_bn_and_googlenet() {
    let Some(exports) = exports() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _, summary) =
        local_export_sweep(&exports, "tv", &["vgg11_bn", "googlenet"], dir.path());
    // vgg11_bn 64 + 128 + 256, googlenet 64 + 64 + 256
    assert_eq!(
        (summary["expected"].as_u64(), summary["rendered"].as_u64()),
        (Some(832), Some(832))
    );
    for (model, layer, width) in [
        ("vgg11_bn", "features.10", 256),
        ("googlenet", "conv2", 64),
        ("googlenet", "inception3a", 256),
    ] {
        let last = out.join(format!("tv/{model}/{layer}/{:04}.png", width - 1));
        assert!(last.is_file(), "{last:?}");
    }
    assert!(out.join("tv/gallery/index.html").is_file());
}

#[test]
fn bench_of_an_export_writes_rates_the_plan_estimate_reads() {
    let Some(exports) = exports() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rates = dir.path().join("rates.json").display().to_string();
    let export = exports.join("resnet18").display().to_string();
    let report = common::run_bench(
        &["--checkpoint", &export, "--rates-out", &rates],
        "--network torchscript --all-layers --size 32 --batch 2 --updates 1 --warmup 1 --seeds 1 \
         --precision fp32",
    );
    assert_eq!(
        report["layers"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    let table =
        lucid_coordinator::estimate::RateTable::load(Path::new(&rates)).expect("rates file");
    let settings = lucid_proto::spec::RenderSection::default().settings();
    for layer in ["conv1", "layer1", "layer2.0.conv1"] {
        let (per_second, measured) = table.images_per_second(layer, &settings);
        assert!(
            measured && per_second > 0.0,
            "{layer}: {per_second} measured {measured}"
        );
    }
}

#[test]
fn the_redirect_setting_changes_nothing_for_an_export() {
    let Some(exports) = exports() else {
        return;
    };
    let net = ScriptedNet::load(&exports.join("resnet18"), Device::Cpu).expect("export");
    let render = |relu_redirect| {
        let settings = Settings {
            steps: 8,
            size: 32,
            relu_redirect,
            ..Settings::lucid()
        };
        render_batch(&net, "r", "layer1", &[0, 1], &settings).expect("render")
    };
    let (on, off) = (render(true), render(false));
    for (a, b) in on.images.iter().zip(&off.images) {
        assert_eq!(
            a.rgb, b.rgb,
            "the ReLUs of a scripted graph are out of the redirect's reach"
        );
        assert_eq!(a.objective_end, b.objective_end);
    }
}

#[test]
fn inspect_lists_an_exports_layers() {
    let Some(exports) = exports() else {
        return;
    };
    let export = exports.join("googlenet").display().to_string();
    let (ok, stdout, stderr) =
        run_worker(&["inspect", &export, "--network", "torchscript", "--json"]);
    assert!(ok, "inspect failed: {stderr}");
    let report: lucid_worker::inspect::InspectReport =
        serde_json::from_str(&stdout).expect("inspect JSON");
    let layers: Vec<(&str, usize)> = report.models[0]
        .layers
        .iter()
        .map(|l| (l.layer.as_str(), l.out_channels))
        .collect();
    assert_eq!(layers, [("conv1", 64), ("conv2", 64), ("inception3a", 256)]);
    assert_eq!(report.network, "googlenet");
}
