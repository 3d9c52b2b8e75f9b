//! Forward parity with TensorFlow: every layer's pre-bias output on the fixture checkpoints matches the
//! outputs TensorFlow computed when the fixtures were made, within 1e-4 relative.

mod common;

use lucid_checkpoint::ModelFile;
use lucid_worker::model::AlexNet;
use tch::{Device, Tensor};

fn reference(seed: &str, size: usize) -> Vec<(String, Tensor)> {
    let path = common::small_root().join(format!("reference/{seed}_{size}.npz"));
    Tensor::read_npz(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .map(|(name, t)| (name.trim_end_matches(".npy").to_string(), t))
        .collect()
}

fn check(model_path: &std::path::Path, seed: &str, size: usize) {
    let file = ModelFile::open(model_path).expect("open model");
    let model = AlexNet::load(&file, Device::Cpu).expect("load model");
    let refs = reference(seed, size);
    let input = refs
        .iter()
        .find(|(n, _)| n == "input")
        .map(|(_, t)| t.permute([0, 3, 1, 2]).contiguous())
        .expect("input in reference file");
    let _guard = tch::no_grad_guard();
    let mut checked = 0;
    for (i, spec) in model.spec().layers.iter().enumerate() {
        let expected = refs
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map(|(_, t)| t.permute([0, 3, 1, 2]))
            .unwrap_or_else(|| panic!("{} missing from reference", spec.name));
        let got = model.forward_to(&input, i);
        assert_eq!(
            got.size(),
            expected.size(),
            "{seed} {size} {} shape",
            spec.name
        );
        let scale = expected.abs().max().double_value(&[]).max(1e-12);
        let err = (&got - &expected).abs().max().double_value(&[]);
        assert!(
            err / scale <= 1e-4,
            "{seed} {size} {}: max error {err} relative {}",
            spec.name,
            err / scale
        );
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn tf_checkpoints_match_tensorflow_at_224_and_240() {
    for seed in ["training_seed_01", "training_seed_02"] {
        for size in [224, 240] {
            check(&common::small_prefix(seed), seed, size);
        }
    }
}

#[test]
fn safetensors_exports_match_tensorflow() {
    for seed in ["training_seed_01", "training_seed_02"] {
        let path = common::small_root().join(format!("safetensors/{seed}.safetensors"));
        check(&path, seed, 224);
    }
}

#[test]
fn fc6_is_2x2_at_240_px() {
    let file = ModelFile::open(&common::small_prefix("training_seed_01")).expect("open");
    let model = AlexNet::load(&file, Device::Cpu).expect("load");
    let _guard = tch::no_grad_guard();
    let x = Tensor::rand([1, 3, 240, 240], (tch::Kind::Float, Device::Cpu));
    let fc6 = model.layer_index("fc6").expect("fc6");
    assert_eq!(model.forward_to(&x, fc6).size()[2..], [2, 2]);
    assert_eq!(model.min_input_side(fc6), 195);
}

#[test]
fn inspect_reports_layer_table_and_totals() {
    let root = common::small_root();
    let (ok, stdout, stderr) =
        common::run_worker(&["inspect", root.to_str().expect("utf-8 path"), "--json"]);
    assert!(ok, "inspect failed: {stderr}");
    let report: lucid_worker::inspect::InspectReport = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not an inspect report ({e}):\n{stdout}"));
    assert_eq!(
        report.schema_version,
        lucid_worker::inspect::INSPECT_SCHEMA_VERSION
    );
    let seeds: Vec<&str> = report.models.iter().map(|s| s.model_id.as_str()).collect();
    assert_eq!(seeds, ["training_seed_01", "training_seed_02"]);
    let widths = [
        ("conv1", 16),
        ("conv2", 24),
        ("conv3", 32),
        ("conv4", 32),
        ("conv5", 24),
        ("fc6", 64),
        ("fc7", 48),
        ("fc8", 10),
    ];
    for model in &report.models {
        let found: Vec<(&str, usize)> = model
            .layers
            .iter()
            .map(|l| (l.layer.as_str(), l.out_channels))
            .collect();
        assert_eq!(found, widths, "{}", model.model_id);
        let conv1 = &model.layers[0];
        assert_eq!(
            (
                conv1.kernel,
                conv1.stride,
                conv1.padding.as_deref(),
                conv1.in_channels
            ),
            (Some([11, 11]), Some([4, 4]), Some("VALID"), Some(3))
        );
        let mins: Vec<Option<usize>> = model.layers.iter().map(|l| l.min_input_side).collect();
        assert_eq!(mins[0], Some(11), "conv1 needs its 11 px kernel");
        assert!(mins.windows(2).all(|w| w[0] <= w[1]), "{mins:?}");
        assert_eq!(model.total_channels, 250);
    }
    assert_eq!(report.total_channels, 500);
}

#[test]
fn inspect_of_missing_path_fails_clearly() {
    let (ok, _, stderr) = common::run_worker(&["inspect", "/nonexistent/lucid/models"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/lucid/models"), "{stderr}");
}
