//! TensorFlow Saver V2 checkpoints: a `.index` LevelDB table plus `.data-NNNNN-of-NNNNN` shards.
//!
//! # Format
//! The `.index` file is an uncompressed LevelDB SSTable. Its last 48 bytes are a footer holding
//! the varint block handles (offset, size) of the metaindex and index blocks, zero padding and the
//! magic number `0xdb4775248b80fb57`. The index block maps the last key of each data block to that
//! block's handle. Every block is followed by a 5-byte trailer: a compression byte (0 = none) and
//! a masked CRC32C of the block plus that byte. Block entries are prefix-compressed
//! (`shared`, `non_shared`, `value_len` varints, then the key suffix and the value) and the block
//! ends with a restart array (`u32` offsets and their `u32` count).
//!
//! Keys are tensor names. The empty key holds a `BundleHeaderProto` (`num_shards` = 1,
//! `endianness` = 2, `version` = 3); every other key a `BundleEntryProto` (`dtype` = 1,
//! `shape` = 2, `shard_id` = 3, `offset` = 4, `size` = 5, `crc32c` = 6 as masked fixed32,
//! `slices` = 7). Both are decoded here by a small protobuf reader.
//!
//! A tensor's bytes are `offset..offset + size` of shard `shard_id`, little-endian, and their
//! masked CRC32C is checked on every read.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{DType, Error, Tensor, TensorInfo, element_count, f32_from_le};

/// Length of the table footer.
const FOOTER_LEN: usize = 48;
/// The LevelDB table magic number, stored little-endian in the last 8 bytes.
const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Length of the trailer after each block (compression byte + masked CRC32C).
const BLOCK_TRAILER_LEN: usize = 5;
/// Added by LevelDB's CRC masking.
const CRC_MASK_DELTA: u32 = 0xa282_ead8;
/// `BundleHeaderProto.Endianness.BIG`.
const ENDIANNESS_BIG: u64 = 1;

/// Undoes LevelDB/TF CRC masking: `masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8`.
pub fn unmask_crc(masked: u32) -> u32 {
    let rot = masked.wrapping_sub(CRC_MASK_DELTA);
    rot.rotate_left(15)
}

/// Applies LevelDB/TF CRC masking (see [`unmask_crc`]).
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(CRC_MASK_DELTA)
}

/// One tensor's record in the index (`BundleEntryProto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The element type.
    pub dtype: DType,
    /// The shape, outermost first.
    pub shape: Vec<usize>,
    /// Which data shard holds the bytes.
    pub shard_id: u32,
    /// Byte offset in the shard.
    pub offset: u64,
    /// Byte length in the shard.
    pub size: u64,
    /// The CRC32C of the bytes, unmasked.
    pub crc32c: u32,
    /// Whether the entry describes a partitioned variable stored as slices (not readable here).
    pub sliced: bool,
}

/// An opened Saver V2 checkpoint: the parsed index, with data shards opened on first read.
///
/// `Checkpoint` is `Send + Sync`; reads from several threads share the shard handles behind a
/// mutex.
#[derive(Debug)]
pub struct Checkpoint {
    prefix: PathBuf,
    index_path: PathBuf,
    num_shards: u32,
    entries: BTreeMap<String, Entry>,
    shards: Mutex<HashMap<u32, File>>,
}

/// `prefix` + `suffix`, without going through `Path::with_extension` (the prefix may contain
/// dots, as in `model.ckpt_epoch89`).
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The `.index` path for a checkpoint prefix.
pub fn index_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, ".index")
}

/// The data shard path `<prefix>.data-{shard:05}-of-{num_shards:05}`.
pub fn shard_path(prefix: &Path, shard: u32, num_shards: u32) -> PathBuf {
    with_suffix(prefix, &format!(".data-{shard:05}-of-{num_shards:05}"))
}

impl Checkpoint {
    /// Opens the checkpoint with this prefix (the files are `prefix.index` and
    /// `prefix.data-…`), reading and checking the whole index. Data shards are opened on first
    /// read.
    pub fn open(prefix: &Path) -> Result<Self, Error> {
        let index_path = index_path(prefix);
        let bytes = std::fs::read(&index_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingIndex {
                path: index_path.clone(),
            },
            _ => Error::io(&index_path, e),
        })?;
        Self::from_index_bytes(prefix, &bytes)
    }

    /// Parses `index` as the contents of `prefix.index` (useful for tests that mutate indexes in
    /// memory). Data shards are still read from disk, on first read.
    pub fn from_index_bytes(prefix: &Path, index: &[u8]) -> Result<Self, Error> {
        let index_path = index_path(prefix);
        let table = Table {
            path: &index_path,
            data: index,
        };
        let mut header: Option<Header> = None;
        let mut entries = BTreeMap::new();
        table.for_each_entry(|key, value| {
            if key.is_empty() {
                header = Some(parse_header(&index_path, value)?);
                return Ok(());
            }
            let name = std::str::from_utf8(key)
                .map_err(|_| Error::malformed(&index_path, "tensor name is not valid utf-8"))?
                .to_owned();
            let entry = parse_entry(&index_path, &name, value)?;
            entries.insert(name, entry);
            Ok(())
        })?;
        let header =
            header.ok_or_else(|| Error::malformed(&index_path, "no bundle header (empty key)"))?;
        if header.big_endian {
            return Err(Error::BigEndian { path: index_path });
        }
        let num_shards = u32::try_from(header.num_shards)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                Error::malformed(
                    &index_path,
                    format!("bundle header has {} shards", header.num_shards),
                )
            })?;
        for (name, entry) in &entries {
            if entry.shard_id >= num_shards {
                return Err(Error::malformed(
                    &index_path,
                    format!(
                        "tensor {name} is in shard {} but the header has {num_shards} shards",
                        entry.shard_id
                    ),
                ));
            }
        }
        Ok(Checkpoint {
            prefix: prefix.to_path_buf(),
            index_path,
            num_shards,
            entries,
            shards: Mutex::new(HashMap::new()),
        })
    }

    /// The prefix this checkpoint was opened with.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The `.index` file.
    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    /// The number of data shards, from the index header.
    pub fn num_shards(&self) -> u32 {
        self.num_shards
    }

    /// Every data shard's path, in shard order.
    pub fn shard_paths(&self) -> Vec<PathBuf> {
        (0..self.num_shards)
            .map(|s| shard_path(&self.prefix, s, self.num_shards))
            .collect()
    }

    /// Every tensor's index record, sorted by name (optimizer slots and `global_step`
    /// included).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// One tensor's index record.
    pub fn entry(&self, name: &str) -> Result<&Entry, Error> {
        self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.index_path.clone(),
            tensor: name.to_owned(),
        })
    }

    /// Every tensor's name, dtype and shape, sorted by name (optimizer slots and `global_step`
    /// included).
    pub fn tensor_infos(&self) -> Vec<TensorInfo> {
        self.entries
            .iter()
            .map(|(name, e)| TensorInfo::new(name, e.dtype, &e.shape))
            .collect()
    }

    /// One tensor's name, dtype and shape.
    pub fn info(&self, name: &str) -> Result<TensorInfo, Error> {
        let e = self.entry(name)?;
        Ok(TensorInfo::new(name, e.dtype, &e.shape))
    }

    /// Reads a float32 tensor, checking its size against its shape and its CRC32C.
    pub fn read_f32(&self, name: &str) -> Result<Tensor, Error> {
        let entry = self.entry(name)?;
        Error::expect_f32(&self.index_path, name, entry.dtype)?;
        let expected = element_count(&entry.shape)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| u64::try_from(n).ok());
        if expected != Some(entry.size) {
            return Err(Error::malformed(
                &self.index_path,
                format!(
                    "tensor {name} has shape {:?} but records {} bytes",
                    entry.shape, entry.size
                ),
            ));
        }
        let bytes = self.read_bytes(name)?;
        Ok(Tensor {
            shape: entry.shape.clone(),
            data: f32_from_le(&bytes),
        })
    }

    /// Reads a tensor's raw little-endian bytes, checking their CRC32C.
    pub fn read_bytes(&self, name: &str) -> Result<Vec<u8>, Error> {
        let entry = self.entry(name)?;
        if entry.sliced {
            return Err(Error::SlicedTensor {
                path: self.index_path.clone(),
                tensor: name.to_owned(),
            });
        }
        let path = shard_path(&self.prefix, entry.shard_id, self.num_shards);
        let mut shards = self
            .shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = match shards.entry(entry.shard_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let file = File::open(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Error::MissingShard {
                        shard: path.clone(),
                        index: self.index_path.clone(),
                    },
                    _ => Error::io(&path, e),
                })?;
                v.insert(file)
            }
        };
        let file_len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let end = entry.offset.checked_add(entry.size);
        let len = match (end, usize::try_from(entry.size)) {
            (Some(end), Ok(len)) if end <= file_len => len,
            _ => {
                return Err(Error::truncated(
                    &path,
                    format!(
                        "tensor {name} needs bytes {}..+{} but the file has {file_len}",
                        entry.offset, entry.size
                    ),
                ));
            }
        };
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(entry.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Error::truncated(
                    &path,
                    format!("tensor {name} ends past the end of the file"),
                ),
                _ => Error::io(&path, e),
            })?;
        drop(shards);
        let actual = crc32c::crc32c(&buf);
        if actual != entry.crc32c {
            return Err(Error::TensorCrc {
                path,
                tensor: name.to_owned(),
                expected: entry.crc32c,
                actual,
            });
        }
        Ok(buf)
    }
}

/// The parts of `BundleHeaderProto` this reader uses.
struct Header {
    num_shards: i64,
    big_endian: bool,
}

/// An index file's bytes, with its path for errors.
struct Table<'a> {
    path: &'a Path,
    data: &'a [u8],
}

/// A (offset, size) block handle.
#[derive(Clone, Copy)]
struct BlockHandle {
    offset: u64,
    size: u64,
}

impl Table<'_> {
    /// Calls `f(key, value)` for every entry of every data block, in key order, after checking
    /// the footer, every block's CRC and that keys increase.
    fn for_each_entry(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let len = self.data.len();
        if len < FOOTER_LEN {
            return Err(Error::truncated(
                self.path,
                format!("{len} bytes is shorter than the {FOOTER_LEN}-byte table footer"),
            ));
        }
        let footer = &self.data[len - FOOTER_LEN..];
        let mut magic_bytes = [0u8; 8];
        magic_bytes.copy_from_slice(&footer[FOOTER_LEN - 8..]);
        let magic = u64::from_le_bytes(magic_bytes);
        if magic != TABLE_MAGIC {
            return Err(Error::BadMagic {
                path: self.path.to_path_buf(),
                magic,
            });
        }
        let mut pos = 0;
        let handles = &footer[..FOOTER_LEN - 8];
        let metaindex = self.handle(handles, &mut pos, "metaindex handle in footer")?;
        let index = self.handle(handles, &mut pos, "index handle in footer")?;
        // The metaindex block is empty in TF's tables (no filters); it is only CRC-checked.
        self.block(metaindex)?;
        let index_block = self.block(index)?;
        let mut last_key: Option<Vec<u8>> = None;
        self.block_entries(index_block, index.offset, |_key, value| {
            let mut p = 0;
            let handle = self.handle(value, &mut p, "data block handle in index block")?;
            let block = self.block(handle)?;
            self.block_entries(block, handle.offset, |key, value| {
                if let Some(last) = &last_key
                    && key <= last.as_slice()
                {
                    return Err(Error::malformed(
                        self.path,
                        format!(
                            "keys out of order in block at offset {}: {:?} after {:?}",
                            handle.offset,
                            String::from_utf8_lossy(key),
                            String::from_utf8_lossy(last)
                        ),
                    ));
                }
                last_key = Some(key.to_vec());
                f(key, value)
            })
        })
    }

    /// Decodes a block handle (two varints) at `buf[*pos..]`.
    fn handle(&self, buf: &[u8], pos: &mut usize, what: &str) -> Result<BlockHandle, Error> {
        let bad = || Error::malformed(self.path, format!("bad varint in {what}"));
        let offset = read_varint(buf, pos).ok_or_else(bad)?;
        let size = read_varint(buf, pos).ok_or_else(bad)?;
        Ok(BlockHandle { offset, size })
    }

    /// The contents of the block at `handle`, after checking its trailer.
    fn block(&self, handle: BlockHandle) -> Result<&[u8], Error> {
        let table_end = self.data.len() - FOOTER_LEN;
        let range = usize::try_from(handle.offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(handle.size).ok()?)?;
            (end.checked_add(BLOCK_TRAILER_LEN)? <= table_end).then_some((start, end))
        });
        let Some((start, end)) = range else {
            return Err(Error::truncated(
                self.path,
                format!(
                    "block at offset {} of {} bytes (plus trailer) extends past the table's end at {table_end}",
                    handle.offset, handle.size
                ),
            ));
        };
        let block = &self.data[start..end];
        let kind = self.data[end];
        let mut crc_bytes = [0u8; 4];
        crc_bytes.copy_from_slice(&self.data[end + 1..end + BLOCK_TRAILER_LEN]);
        let expected = unmask_crc(u32::from_le_bytes(crc_bytes));
        let actual = crc32c::crc32c_append(crc32c::crc32c(block), &[kind]);
        if expected != actual {
            return Err(Error::BlockCrc {
                path: self.path.to_path_buf(),
                offset: handle.offset,
                expected,
                actual,
            });
        }
        if kind != 0 {
            return Err(Error::CompressedBlock {
                path: self.path.to_path_buf(),
                offset: handle.offset,
                kind,
            });
        }
        Ok(block)
    }

    /// Calls `f(key, value)` for each prefix-compressed entry of `block` (at `offset` in the
    /// file, for errors).
    fn block_entries(
        &self,
        block: &[u8],
        offset: u64,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let bad =
            |what: &str| Error::malformed(self.path, format!("{what} in block at offset {offset}"));
        if block.len() < 4 {
            return Err(bad("no restart count"));
        }
        let mut count = [0u8; 4];
        count.copy_from_slice(&block[block.len() - 4..]);
        let num_restarts = u32::from_le_bytes(count) as usize;
        let entries_end = num_restarts
            .checked_mul(4)
            .and_then(|n| n.checked_add(4))
            .and_then(|n| block.len().checked_sub(n))
            .ok_or_else(|| bad("restart array larger than the block"))?;
        let entries = &block[..entries_end];
        let mut key: Vec<u8> = Vec::new();
        let mut pos = 0;
        while pos < entries.len() {
            let mut field = |what: &str| {
                read_varint(entries, &mut pos)
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| bad(&format!("bad {what} varint")))
            };
            let shared = field("shared-length")?;
            let non_shared = field("key-length")?;
            let value_len = field("value-length")?;
            if shared > key.len() {
                return Err(bad("entry shares more key bytes than the previous key has"));
            }
            let key_end = pos
                .checked_add(non_shared)
                .filter(|&e| e <= entries.len())
                .ok_or_else(|| bad("key runs past the entries"))?;
            let value_end = key_end
                .checked_add(value_len)
                .filter(|&e| e <= entries.len())
                .ok_or_else(|| bad("value runs past the entries"))?;
            key.truncate(shared);
            key.extend_from_slice(&entries[pos..key_end]);
            f(&key, &entries[key_end..value_end])?;
            pos = value_end;
        }
        Ok(())
    }
}

/// Reads a base-128 varint (at most 10 bytes, no overflow) at `buf[*pos..]`, advancing `pos`.
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// One protobuf field's value.
enum Field<'a> {
    Varint(u64),
    /// A fixed64 value (skipped: no field read here has this type).
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates the fields of a protobuf message, calling `f(field_number, value)`.
fn for_each_field<'a>(
    msg: &'a [u8],
    mut f: impl FnMut(u64, Field<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut pos = 0;
    while pos < msg.len() {
        let tag = read_varint(msg, &mut pos).ok_or("bad field tag")?;
        let number = tag >> 3;
        let value = match tag & 7 {
            0 => Field::Varint(read_varint(msg, &mut pos).ok_or("bad varint field")?),
            1 => {
                msg.get(pos..pos + 8).ok_or("truncated fixed64 field")?;
                pos += 8;
                Field::Fixed64
            }
            2 => {
                let len = read_varint(msg, &mut pos)
                    .and_then(|l| usize::try_from(l).ok())
                    .ok_or("bad length varint")?;
                let end = pos
                    .checked_add(len)
                    .filter(|&e| e <= msg.len())
                    .ok_or("length-delimited field runs past the message")?;
                let bytes = &msg[pos..end];
                pos = end;
                Field::Bytes(bytes)
            }
            5 => {
                let bytes = msg.get(pos..pos + 4).ok_or("truncated fixed32 field")?;
                pos += 4;
                let mut b = [0u8; 4];
                b.copy_from_slice(bytes);
                Field::Fixed32(u32::from_le_bytes(b))
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        if number == 0 {
            return Err("field number 0".to_owned());
        }
        f(number, value)?;
    }
    Ok(())
}

/// Parses `BundleHeaderProto`.
fn parse_header(path: &Path, value: &[u8]) -> Result<Header, Error> {
    let mut header = Header {
        num_shards: 0,
        big_endian: false,
    };
    for_each_field(value, |number, field| {
        match (number, field) {
            // int32 num_shards = 1; negative values arrive sign-extended to 64 bits.
            (1, Field::Varint(v)) => header.num_shards = v as i64,
            (2, Field::Varint(v)) => header.big_endian = v == ENDIANNESS_BIG,
            (1 | 2, _) => return Err(format!("field {number} has the wrong wire type")),
            _ => {}
        }
        Ok(())
    })
    .map_err(|e| Error::malformed(path, format!("bundle header: {e}")))?;
    Ok(header)
}

/// Parses `BundleEntryProto` for tensor `name`.
fn parse_entry(path: &Path, name: &str, value: &[u8]) -> Result<Entry, Error> {
    let mut entry = Entry {
        dtype: DType::Other(0),
        shape: Vec::new(),
        shard_id: 0,
        offset: 0,
        size: 0,
        crc32c: 0,
        sliced: false,
    };
    let mut masked_crc = 0u32;
    for_each_field(value, |number, field| {
        match (number, field) {
            (1, Field::Varint(v)) => entry.dtype = DType::from_tf(v as i32),
            (2, Field::Bytes(shape)) => entry.shape = parse_shape(shape)?,
            (3, Field::Varint(v)) => {
                entry.shard_id =
                    u32::try_from(v).map_err(|_| format!("shard id {} is invalid", v as i64))?;
            }
            (4, Field::Varint(v)) => {
                entry.offset =
                    u64::try_from(v as i64).map_err(|_| format!("negative offset {}", v as i64))?;
            }
            (5, Field::Varint(v)) => {
                entry.size =
                    u64::try_from(v as i64).map_err(|_| format!("negative size {}", v as i64))?;
            }
            (6, Field::Fixed32(v)) => masked_crc = v,
            (7, Field::Bytes(_)) => entry.sliced = true,
            (1..=7, _) => return Err(format!("field {number} has the wrong wire type")),
            _ => {}
        }
        Ok(())
    })
    .map_err(|e| Error::malformed(path, format!("index entry of tensor {name}: {e}")))?;
    entry.crc32c = unmask_crc(masked_crc);
    Ok(entry)
}

/// Parses `TensorShapeProto` (`dim` = 2 with `size` = 1; `unknown_rank` = 3).
fn parse_shape(msg: &[u8]) -> Result<Vec<usize>, String> {
    let mut shape = Vec::new();
    for_each_field(msg, |number, field| {
        match (number, field) {
            (2, Field::Bytes(dim)) => {
                let mut size = 0i64;
                for_each_field(dim, |n, f| {
                    match (n, f) {
                        (1, Field::Varint(v)) => size = v as i64,
                        (1, _) => return Err("dimension size has the wrong wire type".to_owned()),
                        _ => {}
                    }
                    Ok(())
                })?;
                shape.push(usize::try_from(size).map_err(|_| format!("dimension of size {size}"))?);
            }
            (3, Field::Varint(v)) if v != 0 => return Err("shape of unknown rank".to_owned()),
            (2 | 3, Field::Fixed32(_) | Field::Fixed64) => {
                return Err(format!("shape field {number} has the wrong wire type"));
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::manual_rotate)] // spelled out on purpose: LevelDB's formula, as documented
    fn crc_mask_round_trips() {
        for crc in [0u32, 1, 0xdead_beef, u32::MAX] {
            assert_eq!(unmask_crc(mask_crc(crc)), crc);
        }
        // LevelDB's own formula.
        let crc = 0x1234_5678u32;
        assert_eq!(
            mask_crc(crc),
            ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn varints_decode_and_reject_overflow() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0xac, 0x02], &mut pos), Some(300));
        assert_eq!(pos, 2);
        let mut pos = 0;
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_varint(&max, &mut pos), Some(u64::MAX));
        let mut pos = 0;
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(read_varint(&over, &mut pos), None);
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), None);
    }

    #[test]
    fn entry_proto_decodes() {
        // dtype=1, shape {dim {size 2} dim {size 3}}, shard_id=1, offset=8, size=24,
        // crc32c=masked, slices present.
        let mut msg = vec![
            0x08, 0x01, 0x12, 0x08, 0x12, 0x02, 0x08, 0x02, 0x12, 0x02, 0x08, 0x03,
        ];
        msg.extend_from_slice(&[0x18, 0x01, 0x20, 0x08, 0x28, 0x18, 0x35]);
        msg.extend_from_slice(&mask_crc(0xabcd_ef01).to_le_bytes());
        let e = parse_entry(Path::new("x.index"), "t", &msg).expect("valid entry");
        assert_eq!(e.dtype, DType::F32);
        assert_eq!(e.shape, vec![2, 3]);
        assert_eq!((e.shard_id, e.offset, e.size), (1, 8, 24));
        assert_eq!(e.crc32c, 0xabcd_ef01);
        assert!(!e.sliced);
        msg.extend_from_slice(&[0x3a, 0x00]);
        assert!(
            parse_entry(Path::new("x.index"), "t", &msg)
                .expect("valid")
                .sliced
        );
    }

    #[test]
    fn negative_dimension_is_malformed() {
        // dim { size: -1 }
        let mut dim = vec![0x08];
        dim.extend_from_slice(&[0xff; 9]);
        dim.push(0x01);
        let mut shape = vec![0x12, dim.len() as u8];
        shape.extend_from_slice(&dim);
        let mut msg = vec![0x08, 0x01, 0x12, shape.len() as u8];
        msg.extend_from_slice(&shape);
        let err = parse_entry(Path::new("x.index"), "t", &msg).expect_err("negative dim");
        assert!(err.to_string().contains("dimension of size -1"), "{err}");
    }
}
