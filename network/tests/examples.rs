//! The example descriptions shipped in `examples/networks/`, resolved against the weight shapes of
//! the models they describe; known answers are torchvision's own output shapes.

use std::collections::BTreeMap;

use lucid_network::shape::Shape;
use lucid_network::{Axis, Description, Network, ReceptiveField};

fn example(name: &str) -> Description {
    let path = lucid_testkit::fixtures::workspace_root().join(format!("examples/networks/{name}"));
    let text = std::fs::read_to_string(&path).expect("example description");
    Description::parse_toml(&text, &path.display().to_string()).expect("parses")
}

/// `model.state_dict()` shapes of torchvision's resnet18 (weights, biases and batch-norm buffers).
fn resnet18_shapes() -> BTreeMap<String, Vec<usize>> {
    let mut shapes = BTreeMap::new();
    let bn = |shapes: &mut BTreeMap<String, Vec<usize>>, name: &str, c: usize| {
        for t in ["weight", "bias", "running_mean", "running_var"] {
            shapes.insert(format!("{name}.{t}"), vec![c]);
        }
    };
    shapes.insert("conv1.weight".into(), vec![64, 3, 7, 7]);
    bn(&mut shapes, "bn1", 64);
    let mut inputs = 64;
    for (layer, width) in [(1, 64), (2, 128), (3, 256), (4, 512)] {
        for block in 0..2 {
            let p = format!("layer{layer}.{block}");
            let cin = if block == 0 { inputs } else { width };
            shapes.insert(format!("{p}.conv1.weight"), vec![width, cin, 3, 3]);
            bn(&mut shapes, &format!("{p}.bn1"), width);
            shapes.insert(format!("{p}.conv2.weight"), vec![width, width, 3, 3]);
            bn(&mut shapes, &format!("{p}.bn2"), width);
            if layer > 1 && block == 0 {
                shapes.insert(format!("{p}.downsample.0.weight"), vec![width, cin, 1, 1]);
                bn(&mut shapes, &format!("{p}.downsample.1"), width);
            }
        }
        inputs = width;
    }
    shapes.insert("fc.weight".into(), vec![1000, 512]);
    shapes.insert("fc.bias".into(), vec![1000]);
    shapes
}

/// The output of `net`'s tap `name` for a 224 px input.
fn at_224(net: &Network, name: &str) -> Shape {
    net.tap_shape(net.tap(name).expect("tap"), 224)
        .expect("224 px")
}

#[test]
fn the_resnet18_example_has_torchvisions_shapes() {
    let net = Network::resolve(example("resnet18.toml"), &resnet18_shapes()).expect("fits");
    let shape = |tap: &str| at_224(&net, tap);
    assert_eq!(shape("conv1"), Shape::square(64, 112));
    assert_eq!(shape("relu"), Shape::square(64, 112));
    assert_eq!(shape("layer1"), Shape::square(64, 56));
    assert_eq!(shape("layer2"), Shape::square(128, 28));
    assert_eq!(shape("layer3"), Shape::square(256, 14));
    assert_eq!(shape("layer3.1.conv2"), Shape::square(256, 14));
    assert_eq!(shape("layer4"), Shape::square(512, 7));
    assert_eq!(shape("fc"), Shape::Flat(1000));
    let total: usize = net.layer_table().iter().map(|(_, w, _)| w).sum();
    assert_eq!(total, 64 * 2 + (64 + 128 + 256 + 512) * 2 + 1000);
    // every stride-2 layer pads, so even a 1 px input reaches the head
    assert_eq!(net.min_input_side(net.tap("fc").expect("fc")), Some(1));
}

#[test]
fn the_resnet18_example_names_a_missing_downsample() {
    let mut shapes = resnet18_shapes();
    shapes.remove("layer3.0.downsample.0.weight");
    let err = Network::resolve(example("resnet18.toml"), &shapes).expect_err("missing");
    assert!(
        err.to_string().starts_with(
            "network resnet18: node layer3.0.downsample.0 needs tensor layer3.0.downsample.0.weight"
        ),
        "{err}"
    );
}

/// Adds a torchvision `BasicConv2d` (conv without bias, batch norm) named `name`.
fn basic_conv(
    shapes: &mut BTreeMap<String, Vec<usize>>,
    name: &str,
    out: usize,
    cin: usize,
    k: usize,
) {
    shapes.insert(format!("{name}.conv.weight"), vec![out, cin, k, k]);
    for t in ["weight", "bias", "running_mean", "running_var"] {
        shapes.insert(format!("{name}.bn.{t}"), vec![out]);
    }
}

/// `model.state_dict()` shapes of torchvision's googlenet (aux_logits=False).
fn googlenet_shapes() -> BTreeMap<String, Vec<usize>> {
    let mut s = BTreeMap::new();
    basic_conv(&mut s, "conv1", 64, 3, 7);
    basic_conv(&mut s, "conv2", 64, 64, 1);
    basic_conv(&mut s, "conv3", 192, 64, 3);
    // (block, in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj), torchvision's table
    let blocks = [
        ("3a", 192, 64, 96, 128, 16, 32, 32),
        ("3b", 256, 128, 128, 192, 32, 96, 64),
        ("4a", 480, 192, 96, 208, 16, 48, 64),
        ("4b", 512, 160, 112, 224, 24, 64, 64),
        ("4c", 512, 128, 128, 256, 24, 64, 64),
        ("4d", 512, 112, 144, 288, 32, 64, 64),
        ("4e", 528, 256, 160, 320, 32, 128, 128),
        ("5a", 832, 256, 160, 320, 32, 128, 128),
        ("5b", 832, 384, 192, 384, 48, 128, 128),
    ];
    for (b, cin, c1, r3, c3, r5, c5, pp) in blocks {
        let p = format!("inception{b}");
        basic_conv(&mut s, &format!("{p}.branch1"), c1, cin, 1);
        basic_conv(&mut s, &format!("{p}.branch2.0"), r3, cin, 1);
        basic_conv(&mut s, &format!("{p}.branch2.1"), c3, r3, 3);
        basic_conv(&mut s, &format!("{p}.branch3.0"), r5, cin, 1);
        basic_conv(&mut s, &format!("{p}.branch3.1"), c5, r5, 3);
        basic_conv(&mut s, &format!("{p}.branch4.1"), pp, cin, 1);
    }
    s.insert("fc.weight".into(), vec![1000, 1024]);
    s.insert("fc.bias".into(), vec![1000]);
    s
}

/// Known answers: torchvision resnet18's receptive fields, 43, 99, 211 and 435 px after layer1 to
/// layer4 (the figures published for it, e.g. Araujo et al., Distill 2019), each downsampling
/// shortcut (a 1x1 stride-2 convolution) lying inside its block's main path; the classifier reads it all.
#[test]
fn the_resnet18_example_has_the_published_receptive_fields() {
    let net = Network::resolve(example("resnet18.toml"), &resnet18_shapes()).expect("fits");
    let expected = [
        ("conv1", (7, 2, 3)),
        ("layer1", (43, 4, 21)),
        ("layer2", (99, 8, 49)),
        ("layer3", (211, 16, 105)),
        ("layer4", (435, 32, 217)),
    ];
    for (tap, (size, jump, offset)) in expected {
        let axis = Axis { size, jump, offset };
        let want = ReceptiveField::Local {
            rows: axis,
            cols: axis,
        };
        let got = net.receptive_field(net.tap(tap).expect("tap"), 224);
        assert_eq!(got.expect("224 px"), want, "{tap}");
    }
    let head = net.receptive_field(net.tap("fc").expect("fc"), 224);
    assert_eq!(
        head.expect("224 px"),
        ReceptiveField::Whole,
        "the head reads it all"
    );
}

#[test]
fn the_googlenet_example_has_torchvisions_shapes() {
    let net = Network::resolve(example("googlenet.toml"), &googlenet_shapes()).expect("fits");
    let at = |tap: &str| at_224(&net, tap);
    // torchvision: 3a 256x28x28, 3b 480, 4a 512x14x14, 4d 528, 4e 832, 5b 1024x7x7
    assert_eq!(at("inception3a"), Shape::square(256, 28));
    assert_eq!(at("inception3b"), Shape::square(480, 28));
    assert_eq!(at("inception4a"), Shape::square(512, 14));
    assert_eq!(at("inception4d"), Shape::square(528, 14));
    assert_eq!(at("inception4e"), Shape::square(832, 14));
    assert_eq!(at("inception5b"), Shape::square(1024, 7));
    assert_eq!(at("fc"), Shape::Flat(1000));
}

/// `model.state_dict()` shapes of torchvision's vgg11_bn.
fn vgg11_bn_shapes() -> BTreeMap<String, Vec<usize>> {
    let mut s = BTreeMap::new();
    let (mut index, mut cin) = (0, 3);
    for v in [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0] {
        if v == 0 {
            index += 1;
            continue;
        }
        s.insert(format!("features.{index}.weight"), vec![v, cin, 3, 3]);
        s.insert(format!("features.{index}.bias"), vec![v]);
        for t in ["weight", "bias", "running_mean", "running_var"] {
            s.insert(format!("features.{}.{t}", index + 1), vec![v]);
        }
        (index, cin) = (index + 3, v);
    }
    for (i, out, inputs) in [(0, 4096, 512 * 7 * 7), (3, 4096, 4096), (6, 1000, 4096)] {
        s.insert(format!("classifier.{i}.weight"), vec![out, inputs]);
        s.insert(format!("classifier.{i}.bias"), vec![out]);
    }
    s
}

#[test]
fn the_vgg11_bn_example_has_torchvisions_shapes() {
    let net = Network::resolve(example("vgg11_bn.toml"), &vgg11_bn_shapes()).expect("fits");
    let tap = |name: &str| net.tap(name).expect("tap");
    assert_eq!(at_224(&net, "features.27"), Shape::square(512, 14));
    assert_eq!(at_224(&net, "classifier.6"), Shape::Flat(1000));
    assert_eq!(net.width(tap("classifier.4")), 4096);
    // five 2x2 pools: 32 px is the smallest input that leaves the last one a pixel
    assert_eq!(net.min_input_side(tap("classifier.6")), Some(32));
    let convs = net.layer_table().len();
    assert_eq!(convs, 8 + 3, "eight conv ReLUs and three classifier layers");
}
