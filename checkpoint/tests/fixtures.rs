//! Reading the committed `fixtures/alexnet_small` checkpoints (written by TensorFlow through
//! `tools/gen_fixtures.py`).

mod common;

use lucid_checkpoint::alexnet::{AlexNetSpec, LAYER_NAMES};
use lucid_checkpoint::{DType, DiscoveredModel, Error, ModelFile, discover};

const SEEDS: [&str; 2] = ["training_seed_01", "training_seed_02"];
const WIDTHS: [usize; 8] = [16, 24, 32, 32, 24, 64, 48, 10];

fn open_tf(seed: &str) -> ModelFile {
    ModelFile::open(&common::prefix(seed)).expect("fixture checkpoint opens")
}

fn open_st(seed: &str) -> ModelFile {
    ModelFile::open(&common::safetensors(seed)).expect("fixture safetensors opens")
}

#[test]
fn lists_model_variables_only() {
    for seed in SEEDS {
        let file = open_tf(seed);
        let names: Vec<String> = file.tensors().into_iter().map(|t| t.name).collect();
        let expected: Vec<String> = {
            let mut v: Vec<String> = LAYER_NAMES
                .iter()
                .flat_map(|l| {
                    [
                        format!("alexnet_v2/{l}/biases"),
                        format!("alexnet_v2/{l}/weights"),
                    ]
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(names, expected, "{seed}");
        // The file also holds global_step and one Momentum slot per variable.
        assert_eq!(file.all_tensors().len(), 16 + 16 + 1, "{seed}");
        let info = file
            .info("alexnet_v2/conv1/weights")
            .expect("conv1 weights");
        assert_eq!(info.dtype, DType::F32);
        assert_eq!(info.shape, vec![11, 11, 3, 16]);
    }
}

#[test]
fn sharded_seed_has_two_shards() {
    let ModelFile::Tf(ckpt) = open_tf("training_seed_02") else {
        panic!("a prefix opens as a TF checkpoint");
    };
    assert_eq!(ckpt.num_shards(), 2);
    let shards: Vec<u32> = ckpt.entries().map(|(_, e)| e.shard_id).collect();
    assert!(shards.contains(&0) && shards.contains(&1), "{shards:?}");
    let ModelFile::Tf(one) = open_tf("training_seed_01") else {
        panic!("a prefix opens as a TF checkpoint");
    };
    assert_eq!(one.num_shards(), 1);
}

#[test]
fn reads_every_float_tensor_of_both_seeds() {
    for seed in SEEDS {
        let file = open_tf(seed);
        for info in file.all_tensors() {
            if info.name == "global_step" {
                continue;
            }
            let t = file.read_f32(&info.name).expect("tensor reads");
            assert_eq!(t.shape, info.shape, "{seed} {}", info.name);
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
            assert!(t.data.iter().all(|v| v.is_finite()), "{seed} {}", info.name);
        }
        // Biases are non-zero on purpose, so a reader that drops them is caught.
        let b = file.read_f32("alexnet_v2/conv1/biases").expect("biases");
        assert!(b.data.iter().any(|&v| v != 0.0));
    }
}

#[test]
fn tf_and_safetensors_hold_identical_values() {
    for seed in SEEDS {
        let tf = open_tf(seed);
        let st = open_st(seed);
        assert_eq!(tf.tensors(), st.tensors(), "{seed}");
        for info in tf.tensors() {
            let a = tf.read_f32(&info.name).expect("tf tensor");
            let b = st.read_f32(&info.name).expect("safetensors tensor");
            assert_eq!(a.shape, b.shape, "{seed} {}", info.name);
            let same = a
                .data
                .iter()
                .zip(&b.data)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{seed} {} differs", info.name);
        }
    }
    // The seeds really differ.
    let a = open_tf(SEEDS[0])
        .read_f32("alexnet_v2/conv1/weights")
        .expect("seed 01");
    let b = open_tf(SEEDS[1])
        .read_f32("alexnet_v2/conv1/weights")
        .expect("seed 02");
    assert_ne!(a, b);
}

#[test]
fn alexnet_spec_reads_widths() {
    for seed in SEEDS {
        for file in [open_tf(seed), open_st(seed)] {
            let spec = AlexNetSpec::from_model(&file).expect("spec");
            let widths: Vec<usize> = spec.layers.iter().map(|l| l.out_channels).collect();
            assert_eq!(widths, WIDTHS);
            assert_eq!(spec.total_channels(), 250);
            let conv2 = spec.layer("conv2").expect("conv2");
            assert_eq!((conv2.in_channels, conv2.kernel), (16, 5));
            assert_eq!(conv2.weights, "alexnet_v2/conv2/weights");
            assert!(!spec.layer("fc8").expect("fc8").relu);
            let pools: Vec<&str> = spec
                .layers
                .iter()
                .filter(|l| l.pool_after)
                .map(|l| l.name.as_str())
                .collect();
            assert_eq!(pools, ["conv1", "conv2", "conv5"]);
        }
    }
}

#[test]
fn output_sides_at_224_and_240() {
    let spec = AlexNetSpec::from_model(&open_tf(SEEDS[0])).expect("spec");
    let at = |size| -> Vec<usize> {
        LAYER_NAMES
            .iter()
            .map(|l| spec.output_side(l, size).expect("fits"))
            .collect()
    };
    assert_eq!(at(224), [54, 26, 12, 12, 12, 1, 1, 1]);
    assert_eq!(at(240), [58, 28, 13, 13, 13, 2, 2, 2]);
    let err = spec.layer("conv6").expect_err("no conv6");
    assert!(matches!(err, Error::UnknownLayer { .. }));
    assert!(err.to_string().contains("fc8"), "{err}");
}

#[test]
fn discover_root_finds_both_seeds() {
    let seeds = discover(&common::small()).expect("discover");
    assert_eq!(
        seeds,
        vec![
            DiscoveredModel {
                id: "training_seed_01".into(),
                path: common::prefix("training_seed_01"),
            },
            DiscoveredModel {
                id: "training_seed_02".into(),
                path: common::prefix("training_seed_02"),
            },
        ]
    );
    for s in seeds {
        ModelFile::open(&s.path).expect("discovered path opens");
    }
}

#[test]
fn discover_single_models() {
    let prefix = common::prefix("training_seed_02");
    let seeds = discover(&prefix).expect("prefix");
    assert_eq!(seeds.len(), 1);
    assert_eq!(seeds[0].id, "training_seed_02");
    assert_eq!(seeds[0].path, prefix);

    let index = common::with_suffix(&prefix, ".index");
    let seeds = discover(&index).expect(".index file");
    assert_eq!(seeds[0].path, prefix);

    let seeds = discover(&common::small().join("training_seed_01")).expect("seed folder");
    assert_eq!(seeds[0].id, "training_seed_01");
    assert_eq!(seeds[0].path, common::prefix("training_seed_01"));

    let st = common::safetensors("training_seed_01");
    let seeds = discover(&st).expect("safetensors");
    assert_eq!(
        seeds,
        vec![DiscoveredModel {
            id: "training_seed_01".into(),
            path: st,
        }]
    );
}

#[test]
fn discover_prefix_outside_seed_folder_is_named_after_the_file() {
    let (dir, prefix) = common::copy_seed("training_seed_01");
    let seeds = discover(&prefix).expect("prefix");
    assert_eq!(seeds[0].id, "model.ckpt_epoch89");
    let seeds = discover(dir.path()).expect("folder with one checkpoint");
    let folder = dir.path().canonicalize().expect("canonical");
    assert_eq!(
        seeds[0].id,
        folder.file_name().expect("name").to_string_lossy()
    );
    assert_eq!(seeds[0].path, prefix);
}

#[test]
fn discover_prefers_epoch89_and_rejects_ambiguity() {
    let (dir, prefix) = common::copy_seed("training_seed_01");
    for suffix in [".index", ".data-00000-of-00001"] {
        std::fs::copy(
            common::with_suffix(&prefix, suffix),
            dir.path().join(format!("model.ckpt_epoch10{suffix}")),
        )
        .expect("copy");
    }
    let seeds = discover(dir.path()).expect("epoch 89 preferred");
    assert_eq!(seeds[0].path, prefix);

    std::fs::remove_file(common::with_suffix(&prefix, ".index")).expect("remove");
    std::fs::copy(
        common::safetensors("training_seed_01"),
        dir.path().join("model.safetensors"),
    )
    .expect("copy");
    let err = discover(dir.path()).expect_err("two candidates");
    assert!(matches!(err, Error::AmbiguousCheckpoint { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("model.ckpt_epoch10") && msg.contains("model.safetensors"));
}

#[test]
fn digests_are_stable_and_distinct() {
    let a = open_tf(SEEDS[0]).digest().expect("digest");
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a, open_tf(SEEDS[0]).digest().expect("digest"));
    let (_dir, prefix) = common::copy_seed(SEEDS[0]);
    let copy = ModelFile::open(&prefix).expect("copy opens");
    assert_eq!(a, copy.digest().expect("digest"), "names are not hashed");
    let b = open_tf(SEEDS[1]).digest().expect("digest");
    assert_ne!(a, b);
    let st = open_st(SEEDS[0]).digest().expect("digest");
    assert_ne!(a, st);
}

#[test]
fn rebuilt_index_reads_the_same() {
    // Cross-checks the test-side table writer (used by the fuzz and bad-input tests) against
    // TensorFlow's own index.
    for seed in SEEDS {
        let prefix = common::prefix(seed);
        let ModelFile::Tf(ckpt) = ModelFile::open(&prefix).expect("opens") else {
            panic!("a prefix opens as a TF checkpoint");
        };
        let table = common::build_table(&common::records(&ckpt), 5, 0);
        let rebuilt = lucid_checkpoint::tf::Checkpoint::from_index_bytes(&prefix, &table)
            .expect("rebuilt index parses");
        let a: Vec<_> = ckpt.entries().collect();
        let b: Vec<_> = rebuilt.entries().collect();
        assert_eq!(a, b);
        assert_eq!(
            ckpt.read_f32("alexnet_v2/fc6/weights").expect("original"),
            rebuilt.read_f32("alexnet_v2/fc6/weights").expect("rebuilt")
        );
    }
}
