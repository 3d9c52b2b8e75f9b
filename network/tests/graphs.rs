//! Descriptions of other networks: residual and Inception-style joins, batch norm, PyTorch padding
//! and `ceil_mode`, flatten + linear, and every kind of bad description, each refused naming the node.
//! Known answers are torchvision's own output sizes (resnet18: 224 → conv1 112 → maxpool 56;
//! googlenet: conv1 112 → maxpool1 with ceil_mode 56).

use std::collections::BTreeMap;

use lucid_network::shape::Shape;
use lucid_network::{Description, Network, NetworkError};

type Weights = BTreeMap<String, Vec<usize>>;

fn weights(entries: &[(&str, &[usize])]) -> Weights {
    entries
        .iter()
        .map(|(n, s)| ((*n).to_owned(), s.to_vec()))
        .collect()
}

fn parse(text: &str) -> Description {
    Description::parse_toml(text, "test.toml").expect("valid description")
}

/// The stem and first residual block of a torchvision resnet18 (64 channels), in OIHW with batch
/// norms, a ReLU tapped after conv1, and a head of average pool, flatten and linear.
const RESNET_STEM: &str = include_str!("../../fixtures/networks/tests/resnet_stem.toml");

fn resnet_weights() -> Weights {
    weights(&[
        ("conv1.weight", &[64, 3, 7, 7]),
        ("bn1.weight", &[64]),
        ("bn1.bias", &[64]),
        ("bn1.running_mean", &[64]),
        ("bn1.running_var", &[64]),
        ("layer1.0.conv1.weight", &[64, 64, 3, 3]),
        ("fc.weight", &[10, 64]),
        ("fc.bias", &[10]),
    ])
}

#[test]
fn a_residual_stem_has_torchvisions_sides_and_widths() {
    let net = Network::resolve(parse(RESNET_STEM), &resnet_weights()).expect("fits");
    let relu = net.tap("relu").expect("tap");
    assert_eq!(
        net.tap_shape(relu, 224).expect("224"),
        Shape::square(64, 112)
    );
    let block = net.tap("layer1.0").expect("tap");
    assert_eq!(
        net.tap_shape(block, 224).expect("224"),
        Shape::square(64, 56)
    );
    let fc = net.tap("fc").expect("tap");
    assert_eq!(net.width(fc), 10);
    assert_eq!(net.tap_shape(fc, 224).expect("224"), Shape::Flat(10));
    // conv1 (7, stride 2, pad 3) needs 1 px; the max-pool (3, pad 1) then has 1 px too
    assert_eq!(net.min_input_side(fc), Some(1));
}

#[test]
fn ceil_mode_pools_round_up_like_pytorch() {
    let text = include_str!("../../fixtures/networks/tests/graphs_pools.toml");
    let net = Network::resolve(parse(text), &Weights::new()).expect("no weights needed");
    let side = |tap: &str, input| match net.tap_shape(net.tap(tap).expect("tap"), input) {
        Ok(Shape::Spatial { h, .. }) => h,
        other => panic!("{other:?}"),
    };
    // googlenet's maxpool1 after a 112 px conv1: floor 55, ceil 56
    assert_eq!(side("floor", 112), 55);
    assert_eq!(side("ceil", 112), 56);
    // PyTorch drops a last window that would start in the padding: 5 px, k 3, s 2 → 2 either way
    assert_eq!(side("ceil", 5), 2);
    assert_eq!(side("same", 112), 56);
    assert_eq!(side("same", 113), 57);
}

#[test]
fn inception_branches_concatenate_their_channels() {
    let text = include_str!("../../fixtures/networks/tests/graphs_inception.toml");
    let w = weights(&[("b1", &[8, 1, 1, 1]), ("b2", &[16, 1, 3, 3])]);
    let net = Network::resolve(parse(text), &w).expect("fits");
    let tap = net.tap("mixed").expect("tap");
    assert_eq!(net.width(tap), 24);
    assert_eq!(net.tap_shape(tap, 9).expect("9 px"), Shape::square(24, 9));
}

#[test]
fn a_fixed_size_classifier_names_the_linear_layer_at_other_sizes() {
    let text = include_str!("../../fixtures/networks/tests/graphs_fixed.toml");
    // conv 3x3/2 VALID on 9 px gives 4x4x2 = 32 features
    let w = weights(&[("conv.weight", &[2, 3, 3, 3]), ("fc.weight", &[5, 32])]);
    let net = Network::resolve(parse(text), &w).expect("fits");
    let fc = net.tap("fc").expect("tap");
    assert_eq!(net.tap_shape(fc, 9).expect("9 px"), Shape::Flat(5));
    assert_eq!(net.min_input_side(fc), Some(9));
    let err = net
        .tap_shape(fc, 11)
        .expect_err("11 px gives 4·4·2? no: 5·5·2");
    assert_eq!(
        err.to_string(),
        "network fixed: node fc takes 32 features, but an input of 11 px gives it 50"
    );
}

/// A chain `a → b → c` whose first node reads the last.
const CYCLE: &str = include_str!("../../fixtures/networks/tests/graphs_loop.toml");

#[test]
fn a_cycle_is_refused_naming_its_nodes() {
    let err = Network::resolve(parse(CYCLE), &Weights::new()).expect_err("cycle");
    assert_eq!(
        err,
        NetworkError::Cycle {
            network: "loop".into(),
            nodes: vec!["a".into(), "b".into(), "c".into()]
        }
    );
    assert_eq!(
        err.to_string(),
        "network loop: nodes a → b → c form a cycle"
    );
}

#[test]
fn a_missing_weight_names_the_node_and_the_nearest_tensors() {
    let mut w = resnet_weights();
    w.remove("bn1.running_var");
    let err = Network::resolve(parse(RESNET_STEM), &w).expect_err("missing");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "network resnet_stem: node bn1 needs tensor bn1.running_var, which the given weights \
             does not hold; did you mean bn1.running_mean"
        ),
        "{text}"
    );
}

#[test]
fn shape_mismatches_name_the_node() {
    // a batch norm of the wrong width
    let mut w = resnet_weights();
    w.insert("bn1.running_mean".into(), vec![32]);
    let err = Network::resolve(parse(RESNET_STEM), &w).expect_err("width");
    assert_eq!(
        err.to_string(),
        "network resnet_stem: node bn1: bn1.running_mean has shape [32], expected [64]"
    );
    // a residual add of unequal widths
    let mut w = resnet_weights();
    w.insert("layer1.0.conv1.weight".into(), vec![32, 64, 3, 3]);
    let err = Network::resolve(parse(RESNET_STEM), &w).expect_err("add");
    assert_eq!(
        err.to_string(),
        "network resnet_stem: node layer1.0.add: input from maxpool has shape [64], expected 32 \
         channels, as its first input"
    );
    // a linear layer fed by a map
    let text = RESNET_STEM.replace("input = \"flatten\"", "input = \"avgpool\"");
    let err = Network::resolve(parse(&text), &resnet_weights()).expect_err("no flatten");
    assert!(
        err.to_string()
            .starts_with("network resnet_stem: node fc: input from avgpool has shape [64]"),
        "{err}"
    );
}

#[test]
fn bad_names_are_refused_naming_the_node() {
    let text = RESNET_STEM.replace("input = \"bn1\"", "input = \"bn_1\"");
    let err = Network::resolve(parse(&text), &resnet_weights()).expect_err("unknown input");
    assert_eq!(
        err.to_string(),
        "network resnet_stem: node relu reads \"bn_1\", which is not a node; did you mean bn1, conv1, \
         fc?"
    );
    let text = RESNET_STEM.replace("name = \"maxpool\"", "name = \"relu\"");
    let err = Network::resolve(parse(&text), &resnet_weights()).expect_err("duplicate");
    assert_eq!(
        err.to_string(),
        "network resnet_stem: node \"relu\" is defined twice"
    );
    let text = RESNET_STEM.replace("node = \"relu\"\n", "node = \"relu\"\nat = \"pre_bias\"\n");
    let err = Network::resolve(parse(&text), &resnet_weights()).expect_err("no bias");
    assert_eq!(
        err.to_string(),
        "network resnet_stem: node relu: tap relu reads it before its bias, but it has none"
    );
    let err = Description::parse_toml(
        "name = \"x\"\n[input]\nchannels = 3\n[[node]]\nop = \"warp\"\nname = \"w\"\n",
        "bad.toml",
    )
    .expect_err("unknown op");
    assert!(
        err.to_string()
            .starts_with("network description bad.toml: "),
        "{err}"
    );
}
