//! Helpers shared by the integration tests: fixture paths, copies in temp dirs, and a minimal
//! SSTable / BundleEntryProto writer for crafting indexes TF would not write.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lucid_checkpoint::tf::{Entry, mask_crc};

// each test binary uses its own part of this module (as with `dead_code` above)
#[allow(unused_imports)]
pub use lucid_testkit::fixtures::{
    fixtures_dir as fixtures, small_prefix as prefix, small_root as small,
};

/// The safetensors export of a fixture seed.
pub fn safetensors(seed: &str) -> PathBuf {
    small()
        .join("safetensors")
        .join(format!("{seed}.safetensors"))
}

/// Copies every file of the seed folder into a fresh temp dir; returns the dir and the prefix
/// inside it.
pub fn copy_seed(seed: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = small().join(seed);
    for entry in std::fs::read_dir(&src).expect("fixture seed folder") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
    }
    let prefix = dir.path().join("model.ckpt_epoch89");
    (dir, prefix)
}

/// `prefix` + `suffix`.
pub fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Appends a base-128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a protobuf varint field.
fn put_varint_field(out: &mut Vec<u8>, number: u64, v: u64) {
    put_varint(out, number << 3);
    put_varint(out, v);
}

/// Appends a protobuf length-delimited field.
fn put_bytes_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes a `BundleHeaderProto`.
pub fn encode_header(num_shards: i64, big_endian: bool) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint_field(&mut out, 1, num_shards as u64);
    if big_endian {
        put_varint_field(&mut out, 2, 1);
    }
    let mut version = Vec::new();
    put_varint_field(&mut version, 1, 1);
    put_bytes_field(&mut out, 3, &version);
    out
}

/// Encodes a `BundleEntryProto` (with one empty slice if `entry.sliced`).
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint_field(&mut out, 1, entry.dtype.tf_enum() as i64 as u64);
    let mut shape = Vec::new();
    for &d in &entry.shape {
        let mut dim = Vec::new();
        put_varint_field(&mut dim, 1, d as u64);
        put_bytes_field(&mut shape, 2, &dim);
    }
    put_bytes_field(&mut out, 2, &shape);
    if entry.shard_id != 0 {
        put_varint_field(&mut out, 3, u64::from(entry.shard_id));
    }
    if entry.offset != 0 {
        put_varint_field(&mut out, 4, entry.offset);
    }
    put_varint_field(&mut out, 5, entry.size);
    put_varint(&mut out, (6 << 3) | 5);
    out.extend_from_slice(&mask_crc(entry.crc32c).to_le_bytes());
    if entry.sliced {
        put_bytes_field(&mut out, 7, &[]);
    }
    out
}

/// Builds one block (prefix-compressed entries, restart every 2 entries) with its trailer.
fn block(entries: &[(Vec<u8>, Vec<u8>)], compression: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut restarts = Vec::new();
    let mut last: &[u8] = &[];
    for (i, (key, value)) in entries.iter().enumerate() {
        let shared = if i % 2 == 0 {
            restarts.push(out.len() as u32);
            0
        } else {
            last.iter().zip(key).take_while(|(a, b)| a == b).count()
        };
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, (key.len() - shared) as u64);
        put_varint(&mut out, value.len() as u64);
        out.extend_from_slice(&key[shared..]);
        out.extend_from_slice(value);
        last = key;
    }
    if restarts.is_empty() {
        restarts.push(0);
    }
    for r in &restarts {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &[compression]);
    out.push(compression);
    out.extend_from_slice(&mask_crc(crc).to_le_bytes());
    out
}

/// Builds an uncompressed SSTable (`compression` is written into every data block's trailer)
/// with `per_block` entries per data block. `entries` must be sorted by key.
pub fn build_table(entries: &[(Vec<u8>, Vec<u8>)], per_block: usize, compression: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut index_entries = Vec::new();
    for chunk in entries.chunks(per_block.max(1)) {
        let offset = out.len() as u64;
        let b = block(chunk, compression);
        let mut handle = Vec::new();
        put_varint(&mut handle, offset);
        put_varint(&mut handle, (b.len() - 5) as u64);
        out.extend_from_slice(&b);
        let last_key = chunk.last().map(|(k, _)| k.clone()).unwrap_or_default();
        index_entries.push((last_key, handle));
    }
    let meta_offset = out.len() as u64;
    let meta = block(&[], 0);
    out.extend_from_slice(&meta);
    let index_offset = out.len() as u64;
    let index = block(&index_entries, 0);
    out.extend_from_slice(&index);
    let mut footer = Vec::new();
    put_varint(&mut footer, meta_offset);
    put_varint(&mut footer, (meta.len() - 5) as u64);
    put_varint(&mut footer, index_offset);
    put_varint(&mut footer, (index.len() - 5) as u64);
    footer.resize(40, 0);
    footer.extend_from_slice(&0xdb47_7524_8b80_fb57u64.to_le_bytes());
    out.extend_from_slice(&footer);
    out
}

/// The (key, value) records of a checkpoint's index, re-encoded: header first, then entries.
pub fn records(ckpt: &lucid_checkpoint::tf::Checkpoint) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = vec![(
        Vec::new(),
        encode_header(i64::from(ckpt.num_shards()), false),
    )];
    for (name, entry) in ckpt.entries() {
        out.push((name.as_bytes().to_vec(), encode_entry(entry)));
    }
    out
}
