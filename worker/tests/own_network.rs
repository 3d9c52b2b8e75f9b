//! A network that is not alexnet_v2, described in a TOML file beside its `.safetensors` weights, swept
//! end to end by `local` (spec table form) and `render --network`: every tap, every channel, one
//! sidecar naming the network per image, the gallery built, a resume that renders nothing; and its
//! mistakes refused naming the thing.

mod common;

use std::path::{Path, PathBuf};

use common::run_worker;
use lucid_proto::{NetworkRef, ResultSidecar, RunManifest};

/// The fixture network (`fixtures/networks/`): a residual stem in PyTorch's layout, conv (stride 2) →
/// batch norm → ReLU → max-pool, a 3x3 conv → ReLU added back onto the pool, and a 1x1 head with a
/// bias, tapped as relu (8 channels), layer1 (8) and head (6, before its bias).
fn fixture(name: &str) -> PathBuf {
    lucid_testkit::fixtures::fixtures_dir()
        .join("networks")
        .join(name)
}

/// Copies the fixture's weights and description into `dir` (so a test may edit them); returns
/// (model file, description file, the description's text).
fn write_network(dir: &Path) -> (PathBuf, PathBuf, String) {
    let model = dir.join("weights/tiny_resnet.safetensors");
    std::fs::create_dir_all(dir.join("weights")).expect("weights folder");
    std::fs::copy(fixture("tiny_resnet/model.safetensors"), &model).expect("copy weights");
    let text = std::fs::read_to_string(fixture("tiny_resnet.toml")).expect("description");
    let description = dir.join("tiny_resnet.toml");
    std::fs::write(&description, &text).expect("write description");
    (model, description, text)
}

fn write_spec(dir: &Path, model: &Path, description: &Path, out: &Path, layers: &str) -> String {
    let spec = format!(
        "run_id = \"own\"\nlayers = {layers}\n\n[models]\ntiny = {{ path = {:?}, network = {:?} }}\n\n\
         [render]\nsteps = 4\nsize = 48\n\n[storage]\nkind = \"local\"\nlocal_dir = {:?}\n",
        model.display().to_string(),
        description.display().to_string(),
        out.display().to_string()
    );
    let path = dir.join("own.toml");
    std::fs::write(&path, spec).expect("write spec");
    path.display().to_string()
}

#[test]
fn local_sweeps_every_channel_of_a_described_network_and_resumes_to_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, description, text) = write_network(dir.path());
    let out = dir.path().join("out");
    let spec = write_spec(dir.path(), &model, &description, &out, "\"all\"");
    let (ok, stdout, stderr) = run_worker(&["local", "--spec", &spec, "--json"]);
    assert!(ok, "local failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("summary JSON");
    // relu 8 + layer1 8 + head 6 channels
    assert_eq!(
        (summary["expected"].as_u64(), summary["rendered"].as_u64()),
        (Some(22), Some(22))
    );

    let run = out.join("own");
    let network = NetworkRef::Description(lucid_proto::ModelLocation::Local(description.clone()));
    for (layer, width) in [("relu", 8), ("layer1", 8), ("head", 6)] {
        for channel in 0..width {
            let stem = run.join(format!("tiny/{layer}/{channel:04}"));
            assert!(stem.with_extension("png").is_file(), "{stem:?}.png");
            let bytes = std::fs::read(stem.with_extension("json")).expect("sidecar");
            let sidecar = ResultSidecar::decode(&bytes).expect("a proto sidecar");
            assert_eq!(sidecar.network, network, "the sidecar names the network");
            assert!(sidecar.objective_end.is_finite(), "{sidecar:?}");
        }
    }
    let manifest = RunManifest::decode(&std::fs::read(run.join("run.json")).expect("run.json"))
        .expect("manifest");
    let checkpoint = manifest.checkpoints.values().next().expect("one model");
    assert!(
        checkpoint.network_digest.starts_with("sha256:"),
        "{checkpoint:?}"
    );
    assert!(run.join("gallery/index.html").is_file());

    common::assert_rerun_renders_nothing(&spec, 22);

    // a changed description under the same run id is refused by the manifest check
    std::fs::write(
        &description,
        text.replace(
            "kernel = 3\nstride = 2\npadding = 1",
            "kernel = 2\nstride = 2",
        ),
    )
    .expect("edit description");
    let (ok, _, stderr) = run_worker(&["local", "--spec", &spec, "--json", "--no-gallery"]);
    assert!(!ok, "a changed network must not resume the run");
    assert!(
        stderr.contains("network description of model tiny differs"),
        "{stderr}"
    );
}

#[test]
fn render_takes_a_description_and_refuses_what_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, description, text) = write_network(dir.path());
    let out = dir.path().join("out");
    let (model, description) = (
        model.display().to_string(),
        description.display().to_string(),
    );
    let common_args = [
        "--checkpoint",
        &model,
        "--network",
        &description,
        "--steps",
        "4",
    ];
    let mut args = vec![
        "render",
        "--layer",
        "layer1",
        "--channels",
        "all",
        "--size",
        "48",
    ];
    args.extend(common_args);
    let out_arg = out.display().to_string();
    args.extend(["--out", &out_arg, "--json"]);
    let (ok, _, stderr) = run_worker(&args);
    assert!(ok, "render failed: {stderr}");
    for channel in 0..8 {
        let png = out.join(format!("render/tiny_resnet/layer1/{channel:04}.png"));
        assert!(png.is_file(), "{png:?}");
    }

    // a layer the network does not have: the valid ones, closest first
    let mut args = vec!["render", "--layer", "layer_1", "--out", &out_arg];
    args.extend(common_args);
    let (ok, _, stderr) = run_worker(&args);
    assert!(!ok);
    assert!(
        stderr.contains(
            "unknown layer layer_1 for model tiny_resnet; the network has layer1, relu, head"
        ),
        "{stderr}"
    );

    // weights that do not fit the description: the node and tensor are named
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("head.weight", "head.weights")).expect("write");
    let bad = bad.display().to_string();
    let args = [
        "render",
        "--layer",
        "head",
        "--checkpoint",
        &model,
        "--network",
        &bad,
        "--out",
        &out_arg,
    ];
    let (ok, _, stderr) = run_worker(&args);
    assert!(!ok);
    assert!(
        stderr.contains("node head needs tensor head.weights")
            && stderr.contains("did you mean head.weight"),
        "{stderr}"
    );
}

#[test]
fn bench_measures_every_layer_of_a_described_network() {
    let model = fixture("tiny_resnet/model.safetensors")
        .display()
        .to_string();
    let description = fixture("tiny_resnet.toml").display().to_string();
    let report = common::run_bench(
        &["--checkpoint", &model, "--network", &description],
        "--all-layers --size 48 --batch 4 --updates 2 --warmup 1 --seeds 1",
    );
    let layers: Vec<(&str, u64)> = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            assert!(
                l["images_per_second"].as_f64().is_some_and(|r| r > 0.0),
                "{l}"
            );
            (
                l["layer"].as_str().unwrap_or(""),
                l["channels"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(layers, [("relu", 8), ("layer1", 8), ("head", 6)]);
}
