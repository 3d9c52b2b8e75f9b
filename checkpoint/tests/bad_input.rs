//! Damaged and unexpected model files: each must give its own error variant, with a message
//! that names the file (and the tensor where there is one). All damage is done to copies in
//! temp dirs.

mod common;

use std::path::Path;

use lucid_checkpoint::alexnet::AlexNetSpec;
use lucid_checkpoint::tf::{Checkpoint, Entry};
use lucid_checkpoint::{DType, Error, ModelFile, discover};
use safetensors::{Dtype, tensor::TensorView};

/// Asserts that `err`'s message mentions `path` (and every one of `words`).
fn assert_names(err: &Error, path: &Path, words: &[&str]) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name {}: {msg}",
        path.display()
    );
    for w in words {
        assert!(msg.contains(w), "message does not name {w}: {msg}");
    }
    assert_eq!(msg, msg.trim_end_matches('.'), "trailing period: {msg}");
    assert!(
        !msg.starts_with(char::is_uppercase),
        "starts upper-case: {msg}"
    );
}

/// Asserts that reading failed because the variable is stored as `dtype`, and that the message names
/// the file, the variable and the type (`words`).
fn assert_unsupported_dtype(err: &Error, dtype: DType, path: &Path, words: &[&str]) {
    assert!(
        matches!(err, Error::UnsupportedDtype { dtype: found, .. } if *found == dtype),
        "{err:?}"
    );
    assert_names(err, path, words);
}

fn tf(file: ModelFile) -> Checkpoint {
    match file {
        ModelFile::Tf(c) => c,
        ModelFile::Safetensors(_) => panic!("expected a TF checkpoint"),
    }
}

#[test]
fn missing_index() {
    let (_dir, prefix) = common::copy_seed("training_seed_01");
    let index = common::with_suffix(&prefix, ".index");
    std::fs::remove_file(&index).expect("remove index");
    let err = ModelFile::open(&prefix).expect_err("no index");
    assert!(matches!(err, Error::MissingIndex { .. }), "{err:?}");
    assert_names(&err, &index, &[]);
}

#[test]
fn missing_data_shard() {
    let (_dir, prefix) = common::copy_seed("training_seed_02");
    let shard = common::with_suffix(&prefix, ".data-00001-of-00002");
    std::fs::remove_file(&shard).expect("remove shard");
    let file = ModelFile::open(&prefix).expect("index alone opens (shards are lazy)");
    // fc6 lives on /cpu:1, i.e. in shard 1.
    let err = file
        .read_f32("alexnet_v2/fc6/weights")
        .expect_err("shard missing");
    assert!(matches!(err, Error::MissingShard { .. }), "{err:?}");
    assert_names(&err, &shard, &[]);
    // Tensors in shard 0 still read.
    file.read_f32("alexnet_v2/conv1/weights")
        .expect("shard 0 reads");
    let err = file.digest().expect_err("digest needs every shard");
    assert!(matches!(err, Error::MissingShard { .. }), "{err:?}");
    assert_names(&err, &shard, &[]);
}

#[test]
fn truncated_index() {
    let (_dir, prefix) = common::copy_seed("training_seed_01");
    let index = common::with_suffix(&prefix, ".index");
    let bytes = std::fs::read(&index).expect("read index");

    std::fs::write(&index, &bytes[..30]).expect("truncate");
    let err = ModelFile::open(&prefix).expect_err("shorter than a footer");
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert_names(&err, &index, &["truncated"]);

    // Cut in the middle: the footer is gone, so the magic is wrong.
    std::fs::write(&index, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = ModelFile::open(&prefix).expect_err("half an index");
    assert!(matches!(err, Error::BadMagic { .. }), "{err:?}");
    assert_names(&err, &index, &["truncated"]);

    // Blocks cut out but the footer kept: the handles point past the end.
    let mut cut = bytes[..bytes.len() / 2].to_vec();
    cut.extend_from_slice(&bytes[bytes.len() - 48..]);
    std::fs::write(&index, &cut).expect("truncate");
    let err = ModelFile::open(&prefix).expect_err("blocks missing");
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert_names(&err, &index, &[]);
}

#[test]
fn not_a_table() {
    let (_dir, prefix) = common::copy_seed("training_seed_01");
    let index = common::with_suffix(&prefix, ".index");
    std::fs::write(&index, vec![7u8; 200]).expect("write junk");
    let err = ModelFile::open(&prefix).expect_err("junk");
    assert!(matches!(err, Error::BadMagic { .. }), "{err:?}");
    assert_names(&err, &index, &["magic"]);
}

#[test]
fn truncated_data() {
    let (_dir, prefix) = common::copy_seed("training_seed_01");
    let data = common::with_suffix(&prefix, ".data-00000-of-00001");
    let len = std::fs::metadata(&data).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .expect("open data");
    f.set_len(len / 2).expect("truncate data");
    let file = ModelFile::open(&prefix).expect("index opens");
    let ckpt = tf(file);
    let (name, _) = ckpt
        .entries()
        .filter(|(_, e)| e.dtype == DType::F32 && e.offset + e.size > len / 2)
        .max_by_key(|(_, e)| e.offset)
        .expect("a tensor in the lost half");
    let name = name.to_owned();
    let err = ckpt.read_f32(&name).expect_err("tensor cut off");
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert_names(&err, &data, &[&name, "truncated"]);
}

#[test]
fn corrupted_block_crc() {
    let (_dir, prefix) = common::copy_seed("training_seed_01");
    let index = common::with_suffix(&prefix, ".index");
    let mut bytes = std::fs::read(&index).expect("read index");
    // Byte 20 lies inside the first data block (which starts at 0).
    bytes[20] ^= 0x01;
    std::fs::write(&index, &bytes).expect("write");
    let err = ModelFile::open(&prefix).expect_err("bad block");
    assert!(matches!(err, Error::BlockCrc { offset: 0, .. }), "{err:?}");
    assert_names(&err, &index, &["crc", "offset 0"]);
}

#[test]
fn corrupted_tensor_data() {
    let (_dir, prefix) = common::copy_seed("training_seed_02");
    let name = "alexnet_v2/fc7/weights";
    let entry = tf(ModelFile::open(&prefix).expect("opens"))
        .entry(name)
        .expect("fc7 weights")
        .clone();
    let shard = common::with_suffix(&prefix, &format!(".data-{:05}-of-00002", entry.shard_id));
    let mut bytes = std::fs::read(&shard).expect("read shard");
    bytes[entry.offset as usize + 17] ^= 0x40;
    std::fs::write(&shard, &bytes).expect("write");
    let file = ModelFile::open(&prefix).expect("index is intact");
    let err = file.read_f32(name).expect_err("data crc");
    assert!(matches!(err, Error::TensorCrc { .. }), "{err:?}");
    assert_names(&err, &shard, &[name, "crc"]);
    // Other tensors are unaffected.
    file.read_f32("alexnet_v2/fc7/biases").expect("fc7 biases");
}

#[test]
fn unexpected_dtype_in_checkpoint() {
    let prefix = common::fixtures().join("bad/float64/model.ckpt");
    let file = ModelFile::open(&prefix).expect("float64 fixture opens");
    let name = "alexnet_v2/conv1/weights";
    assert_eq!(file.info(name).expect("info").dtype, DType::F64);
    let err = file.read_f32(name).expect_err("float64");
    assert_unsupported_dtype(&err, DType::F64, &prefix, &[name, "float64"]);
    let err = AlexNetSpec::from_model(&file).expect_err("spec needs float32");
    assert!(matches!(err, Error::UnsupportedDtype { .. }), "{err:?}");
    assert_names(&err, &prefix, &[name]);
    // The float32 variable beside it reads.
    let b = file.read_f32("alexnet_v2/conv1/biases").expect("biases");
    assert_eq!(b.data, vec![0.5, -0.5]);

    // global_step is int64 in every ecoset checkpoint.
    let prefix = common::prefix("training_seed_01");
    let err = ModelFile::open(&prefix)
        .expect("opens")
        .read_f32("global_step")
        .expect_err("int64");
    assert_unsupported_dtype(&err, DType::I64, &prefix, &["global_step", "int64"]);
}

/// Writes every model variable of seed 01 to a safetensors file, with `edit` applied to the
/// list of (name, dtype, shape, bytes) first.
fn write_safetensors(
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) {
    let src = ModelFile::open(&common::safetensors("training_seed_01")).expect("fixture");
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = src
        .tensors()
        .into_iter()
        .map(|info| {
            let t = src.read_f32(&info.name).expect("read");
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (info.name, Dtype::F32, t.shape, bytes)
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).expect("view");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}

#[test]
fn unexpected_dtype_in_safetensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("f64.safetensors");
    let name = "alexnet_v2/fc8/biases";
    write_safetensors(&path, |tensors| {
        let t = tensors
            .iter_mut()
            .find(|t| t.0 == name)
            .expect("fc8 biases");
        t.1 = Dtype::F64;
        t.3 = vec![0u8; t.2[0] * 8];
    });
    let file = ModelFile::open(&path).expect("opens");
    let err = file.read_f32(name).expect_err("f64");
    assert_unsupported_dtype(&err, DType::F64, &path, &[name, "float64"]);
}

#[test]
fn missing_variable() {
    let prefix = common::prefix("training_seed_01");
    let file = ModelFile::open(&prefix).expect("opens");
    let name = "alexnet_v2/conv9/weights";
    let err = file.read_f32(name).expect_err("no such tensor");
    assert!(matches!(err, Error::MissingTensor { .. }), "{err:?}");
    assert_names(&err, &prefix, &[name]);
    let err = file.info(name).expect_err("no such tensor");
    assert!(matches!(err, Error::MissingTensor { .. }), "{err:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no_fc7.safetensors");
    write_safetensors(&path, |tensors| {
        tensors.retain(|t| t.0 != "alexnet_v2/fc7/weights");
    });
    let file = ModelFile::open(&path).expect("opens");
    let err = AlexNetSpec::from_model(&file).expect_err("fc7 missing");
    assert!(matches!(err, Error::MissingTensor { .. }), "{err:?}");
    assert_names(&err, &path, &["alexnet_v2/fc7/weights"]);
}

#[test]
fn misshaped_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad_fc6.safetensors");
    let name = "alexnet_v2/fc6/weights";
    write_safetensors(&path, |tensors| {
        let t = tensors.iter_mut().find(|t| t.0 == name).expect("fc6");
        // 5x5x24x64 → 4x4x24x64: same layout, wrong kernel.
        t.2 = vec![4, 4, 24, 64];
        t.3.truncate(4 * 4 * 24 * 64 * 4);
    });
    let file = ModelFile::open(&path).expect("opens");
    let err = AlexNetSpec::from_model(&file).expect_err("wrong fc6 kernel");
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
    assert_names(&err, &path, &[name, "[5, 5, 24, *]", "[4, 4, 24, 64]"]);

    let path = dir.path().join("bad_bias.safetensors");
    let name = "alexnet_v2/conv3/biases";
    write_safetensors(&path, |tensors| {
        let t = tensors.iter_mut().find(|t| t.0 == name).expect("conv3 b");
        t.2 = vec![2, 16];
    });
    let file = ModelFile::open(&path).expect("opens");
    let err = AlexNetSpec::from_model(&file).expect_err("wrong bias shape");
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
    assert_names(&err, &path, &[name, "[32]"]);
}

#[test]
fn truncated_safetensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cut.safetensors");
    let bytes = std::fs::read(common::safetensors("training_seed_01")).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 100]).expect("write");
    let err = ModelFile::open(&path).expect_err("cut");
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert_names(&err, &path, &[]);
    std::fs::write(&path, &bytes[..5]).expect("write");
    let err = ModelFile::open(&path).expect_err("cut");
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    std::fs::write(&path, &bytes[..200]).expect("write");
    let err = ModelFile::open(&path).expect_err("cut header");
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
}

#[test]
fn folder_without_checkpoints() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("notes.txt"), "nothing here").expect("write");
    let err = discover(dir.path()).expect_err("empty");
    assert!(matches!(err, Error::NoCheckpoints { .. }), "{err:?}");
    assert_names(&err, dir.path(), &[]);

    // A seed folder without a checkpoint is named.
    let (_src, prefix) = common::copy_seed("training_seed_01");
    let seed1 = dir.path().join("training_seed_01");
    std::fs::create_dir(&seed1).expect("mkdir");
    for suffix in [".index", ".data-00000-of-00001"] {
        std::fs::copy(
            common::with_suffix(&prefix, suffix),
            common::with_suffix(&seed1.join("model.ckpt_epoch89"), suffix),
        )
        .expect("copy");
    }
    let seed2 = dir.path().join("training_seed_02");
    std::fs::create_dir(&seed2).expect("mkdir");
    let err = discover(dir.path()).expect_err("seed 02 empty");
    assert!(matches!(err, Error::NoCheckpoints { .. }), "{err:?}");
    assert_names(&err, &seed2, &[]);
}

#[test]
fn missing_paths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gone = dir.path().join("nowhere");
    let err = discover(&gone).expect_err("missing");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_names(&err, &gone, &[]);
    let err = ModelFile::open(&gone.join("x.safetensors")).expect_err("missing");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let other = dir.path().join("weights.bin");
    std::fs::write(&other, b"x").expect("write");
    let err = discover(&other).expect_err("not a model");
    assert!(matches!(err, Error::UnsupportedFile { .. }), "{err:?}");
    assert_names(&err, &other, &[]);
}

/// Writes an index built from `records` beside the real shards of seed 01 and opens it.
fn open_crafted(
    records: &[(Vec<u8>, Vec<u8>)],
    compression: u8,
) -> (tempfile::TempDir, Result<ModelFile, Error>) {
    let (dir, prefix) = common::copy_seed("training_seed_01");
    let table = common::build_table(records, 4, compression);
    std::fs::write(common::with_suffix(&prefix, ".index"), table).expect("write index");
    let result = ModelFile::open(&prefix);
    (dir, result)
}

fn seed01_records() -> Vec<(Vec<u8>, Vec<u8>)> {
    let ckpt = tf(ModelFile::open(&common::prefix("training_seed_01")).expect("opens"));
    common::records(&ckpt)
}

#[test]
fn big_endian_header() {
    let mut records = seed01_records();
    records[0].1 = common::encode_header(1, true);
    let (dir, result) = open_crafted(&records, 0);
    let err = result.expect_err("big-endian");
    assert!(matches!(err, Error::BigEndian { .. }), "{err:?}");
    assert_names(&err, dir.path(), &["big-endian"]);
}

#[test]
fn compressed_block() {
    let (dir, result) = open_crafted(&seed01_records(), 1);
    let err = result.expect_err("snappy");
    assert!(
        matches!(err, Error::CompressedBlock { kind: 1, .. }),
        "{err:?}"
    );
    assert_names(&err, dir.path(), &["compressed"]);
}

#[test]
fn sliced_tensor() {
    let name = "alexnet_v2/conv2/weights";
    let ckpt = tf(ModelFile::open(&common::prefix("training_seed_01")).expect("opens"));
    let mut entry: Entry = ckpt.entry(name).expect("conv2").clone();
    entry.sliced = true;
    let mut records = common::records(&ckpt);
    let r = records
        .iter_mut()
        .find(|r| r.0 == name.as_bytes())
        .expect("record");
    r.1 = common::encode_entry(&entry);
    let (dir, result) = open_crafted(&records, 0);
    let err = result
        .expect("index opens")
        .read_f32(name)
        .expect_err("sliced");
    assert!(matches!(err, Error::SlicedTensor { .. }), "{err:?}");
    assert_names(&err, dir.path(), &[name]);
}

#[test]
fn inconsistent_entries() {
    let name = "alexnet_v2/conv2/biases";
    let ckpt = tf(ModelFile::open(&common::prefix("training_seed_01")).expect("opens"));
    let original: Entry = ckpt.entry(name).expect("conv2 b").clone();

    // Size that disagrees with the shape.
    let mut entry = original.clone();
    entry.size += 4;
    let mut records = common::records(&ckpt);
    let pos = records
        .iter()
        .position(|r| r.0 == name.as_bytes())
        .expect("record");
    records[pos].1 = common::encode_entry(&entry);
    let (dir, result) = open_crafted(&records, 0);
    let err = result.expect("opens").read_f32(name).expect_err("size");
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert_names(&err, dir.path(), &[name]);

    // A huge size and shape must be an error, not a huge allocation.
    let mut entry = original.clone();
    entry.shape = vec![1 << 40];
    entry.size = 4 << 40;
    records[pos].1 = common::encode_entry(&entry);
    let (dir, result) = open_crafted(&records, 0);
    let err = result.expect("opens").read_f32(name).expect_err("huge");
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert_names(&err, dir.path(), &[name]);

    // A shard beyond the header's count.
    let mut entry = original;
    entry.shard_id = 3;
    records[pos].1 = common::encode_entry(&entry);
    let (dir, result) = open_crafted(&records, 0);
    let err = result.expect_err("bad shard id");
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert_names(&err, dir.path(), &[name]);

    // No header.
    let mut records = common::records(&ckpt);
    records.remove(0);
    let (dir, result) = open_crafted(&records, 0);
    let err = result.expect_err("no header");
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert_names(&err, dir.path(), &["header"]);
}
