//! The example descriptions shipped in `examples/networks/`, resolved against the weight shapes of
//! the models they describe; known answers are torchvision's own output shapes.

use std::collections::BTreeMap;

use lucid_network::shape::Shape;
use lucid_network::{Description, Network};

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

#[test]
fn the_resnet18_example_has_torchvisions_shapes() {
    let net = Network::resolve(example("resnet18.toml"), &resnet18_shapes()).expect("fits");
    let shape = |tap: &str| {
        net.tap_shape(net.tap(tap).expect("tap"), 224)
            .expect("224 px")
    };
    let map = |channels, side| Shape::Spatial {
        channels,
        h: side,
        w: side,
    };
    assert_eq!(shape("conv1"), map(64, 112));
    assert_eq!(shape("relu"), map(64, 112));
    assert_eq!(shape("layer1"), map(64, 56));
    assert_eq!(shape("layer2"), map(128, 28));
    assert_eq!(shape("layer3"), map(256, 14));
    assert_eq!(shape("layer3.1.conv2"), map(256, 14));
    assert_eq!(shape("layer4"), map(512, 7));
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
