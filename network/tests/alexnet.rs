//! The built-in `alexnet_v2` description against the hand-written layer table it replaces
//! (`lucid_checkpoint::alexnet::AlexNetSpec`): same widths, same sides at every input size, same
//! smallest inputs, on the test fixtures and at the ecoset widths.

use std::collections::BTreeMap;

use lucid_checkpoint::ModelFile;
use lucid_checkpoint::alexnet::{AlexNetSpec, LAYER_NAMES};
use lucid_network::shape::Shape;
use lucid_network::{Axis, Network, ReceptiveField, builtin};

const ECOSET_WIDTHS: [usize; 8] = [64, 192, 384, 384, 256, 4096, 4096, 565];
const KERNELS: [usize; 8] = [11, 5, 3, 3, 3, 5, 1, 1];

/// The weight shapes of an `alexnet_v2` with `widths` (HWIO), as a checkpoint would hold them.
fn alexnet_weights(widths: [usize; 8]) -> BTreeMap<String, Vec<usize>> {
    let mut shapes = BTreeMap::new();
    let mut in_channels = 3;
    for ((name, kernel), out) in LAYER_NAMES.iter().zip(KERNELS).zip(widths) {
        shapes.insert(
            format!("alexnet_v2/{name}/weights"),
            vec![kernel, kernel, in_channels, out],
        );
        shapes.insert(format!("alexnet_v2/{name}/biases"), vec![out]);
        in_channels = out;
    }
    shapes
}

fn side(shape: Shape) -> usize {
    match shape {
        Shape::Spatial { h, w, .. } => {
            assert_eq!(h, w, "square input, square output");
            h
        }
        Shape::Flat(_) => panic!("alexnet_v2 has no flat layer"),
    }
}

/// Both forms agree on every layer's width, on its side for every input from 1 to 300 px (or both
/// refuse it), and on its smallest input.
fn assert_same_geometry(network: &Network, direct: &AlexNetSpec) {
    for layer in &direct.layers {
        let tap = network
            .tap(&layer.name)
            .expect("every alexnet layer is a tap");
        assert_eq!(network.width(tap), layer.out_channels, "{}", layer.name);
        for input in 1..=300 {
            let described = network.tap_shape(tap, input).ok().map(side);
            let hand = direct.output_side(&layer.name, input).ok();
            assert_eq!(described, hand, "{} at {input} px", layer.name);
        }
        assert_eq!(
            network.min_input_side(tap),
            Some(direct.min_input_side_for(&layer.name)),
            "{}",
            layer.name
        );
    }
    let names: Vec<&str> = network
        .description
        .taps
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, LAYER_NAMES);
}

#[test]
fn builtin_alexnet_matches_the_hand_written_table_on_the_fixtures() {
    for seed in ["training_seed_01", "training_seed_02"] {
        let file = ModelFile::open(&lucid_testkit::fixtures::small_prefix(seed)).expect("fixture");
        let direct = AlexNetSpec::from_model(&file).expect("alexnet_v2 fixture");
        let network = Network::resolve(builtin::alexnet_v2(), &file).expect("description fits");
        assert_same_geometry(&network, &direct);
        let table = network.layer_table();
        assert_eq!(table[0], ("conv1".to_owned(), 16, 11));
        assert_eq!(table.len(), 8);
    }
}

#[test]
fn builtin_alexnet_at_ecoset_widths_gives_the_reference_sides() {
    let network = Network::resolve(builtin::alexnet_v2(), &alexnet_weights(ECOSET_WIDTHS))
        .expect("ecoset widths fit");
    let sides: Vec<usize> = LAYER_NAMES
        .iter()
        .map(|l| {
            side(
                network
                    .tap_shape(network.tap(l).expect("tap"), 224)
                    .expect("224 fits"),
            )
        })
        .collect();
    // lucid-reference.md: 224 px → conv1 54, conv2 26, conv3-5 12, fc6-fc8 1
    assert_eq!(sides, [54, 26, 12, 12, 12, 1, 1, 1]);
    let fc6 = network.tap("fc6").expect("fc6");
    assert_eq!(side(network.tap_shape(fc6, 240).expect("240 fits")), 2);
    let widths: usize = network.layer_table().iter().map(|(_, w, _)| w).sum();
    assert_eq!(widths, 10_037, "the ecoset sweep's channels per seed");
}

#[test]
fn a_wrong_kernel_in_the_file_is_refused_naming_node_and_tensor() {
    let mut weights = alexnet_weights(ECOSET_WIDTHS);
    weights.insert("alexnet_v2/conv2/weights".into(), vec![3, 3, 64, 192]);
    let err = Network::resolve(builtin::alexnet_v2(), &weights).expect_err("conv2 is 5x5");
    assert_eq!(
        err.to_string(),
        "network alexnet_v2: node conv2: alexnet_v2/conv2/weights has shape [3, 3, 64, 192], \
         expected [5, 5, 64, out] (HWIO)"
    );
}

#[test]
fn an_unknown_layer_lists_the_valid_ones_closest_first() {
    let network =
        Network::resolve(builtin::alexnet_v2(), &alexnet_weights(ECOSET_WIDTHS)).expect("fits");
    let err = network.tap("conv9").expect_err("no conv9");
    let text = err.to_string();
    assert!(
        text.starts_with("network alexnet_v2 has no layer \"conv9\"; its layers are conv1, conv2"),
        "{text}"
    );
    let err = network.tap("fc_7").expect_err("no fc_7");
    assert!(err.to_string().contains("its layers are fc7, "), "{err}");
}

#[test]
fn float64_weights_are_refused_naming_node_and_tensor() {
    let prefix = lucid_testkit::fixtures::fixtures_dir().join("bad/float64/model.ckpt");
    let file = ModelFile::open(&prefix).expect("float64 fixture opens");
    let err = Network::resolve(builtin::alexnet_v2(), &file).expect_err("float64");
    assert_eq!(
        err.to_string(),
        "network alexnet_v2: node conv1: tensor alexnet_v2/conv1/weights is float64; only float32 \
         weights are supported"
    );
}

fn local(size: usize, jump: usize, offset: usize) -> ReceptiveField {
    let axis = Axis { size, jump, offset };
    ReceptiveField::Local {
        rows: axis,
        cols: axis,
    }
}

/// Known answers: alexnet_v2's receptive fields at 224 px (Araujo et al., Distill 2019, Table 1:
/// conv5 163 px, pool5 195 px, strides 16 and 32); the offsets are the SAME paddings of conv2 (2 px at
/// stride 8) and conv3-5 (1 px each at stride 16).
#[test]
fn builtin_alexnet_has_the_published_receptive_fields() {
    let network =
        Network::resolve(builtin::alexnet_v2(), &alexnet_weights(ECOSET_WIDTHS)).expect("fits");
    let field = |layer: &str| {
        network
            .receptive_field(network.tap(layer).expect("tap"), 224)
            .expect("224 fits")
    };
    assert_eq!(field("conv1"), local(11, 4, 0));
    assert_eq!(field("conv2"), local(51, 8, 16));
    assert_eq!(field("conv3"), local(99, 16, 32));
    assert_eq!(field("conv5"), local(163, 16, 64));
    // fc6 is a 5x5 VALID convolution over pool5 (195 px at stride 32)
    assert_eq!(field("fc6"), local(195 + 4 * 32, 32, 64));
    // conv5's centre unit (6, 6) of 12 reads [32, 195) of the image
    assert_eq!(field("conv5").crop(6, 6, 224), (32, 32, 195, 195));
    let err = network
        .receptive_field(network.tap("conv1").expect("tap"), 8)
        .expect_err("8 px is smaller than conv1's kernel");
    assert!(err.to_string().contains("conv1"), "{err}");
}
