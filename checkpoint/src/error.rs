//! The crate's error type: every variant names the file it is about and, where there is one,
//! the tensor.

use std::path::{Path, PathBuf};

use crate::DType;

/// Everything that can go wrong reading a model file, discovering seeds or sizing layers.
///
/// Messages are lowercase without a trailing period and name the file (and tensor) involved, so a
/// caller can show them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error other than "not found" while reading `path`.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A path given to [`crate::discover`] or [`crate::ModelFile::open`] does not exist.
    #[error("{} does not exist", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },

    /// The `.index` file of a TF checkpoint prefix does not exist.
    #[error("checkpoint index {} does not exist", path.display())]
    MissingIndex {
        /// The expected `.index` path.
        path: PathBuf,
    },

    /// A data shard named by the index does not exist.
    #[error("data shard {} of checkpoint {} does not exist", shard.display(), index.display())]
    MissingShard {
        /// The expected `.data-NNNNN-of-NNNNN` path.
        shard: PathBuf,
        /// The `.index` file that refers to it.
        index: PathBuf,
    },

    /// A file ends before a structure it must hold.
    #[error("{} is truncated: {detail}", path.display())]
    Truncated {
        /// The truncated file.
        path: PathBuf,
        /// What was being read.
        detail: String,
    },

    /// The CRC32C of a table block in a `.index` file does not match its trailer.
    #[error(
        "block crc mismatch in {} at offset {offset}: stored {expected:#010x}, computed {actual:#010x}",
        path.display()
    )]
    BlockCrc {
        /// The `.index` file.
        path: PathBuf,
        /// Byte offset of the block in the file.
        offset: u64,
        /// The unmasked CRC stored in the trailer.
        expected: u32,
        /// The CRC computed over the block.
        actual: u32,
    },

    /// The CRC32C of a tensor's bytes does not match the one recorded in the index.
    #[error(
        "tensor {tensor} in {}: data crc mismatch, stored {expected:#010x}, computed {actual:#010x}",
        path.display()
    )]
    TensorCrc {
        /// The data shard holding the tensor.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The unmasked CRC recorded in the index.
        expected: u32,
        /// The CRC computed over the bytes read.
        actual: u32,
    },

    /// A tensor has a dtype this reader cannot return (only float32 is read).
    #[error("tensor {tensor} in {} has dtype {dtype}, expected float32", path.display())]
    UnsupportedDtype {
        /// The model file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The dtype found.
        dtype: DType,
    },

    /// A tensor is stored as slices of a partitioned variable, which this reader does not join.
    #[error("tensor {tensor} in {} is stored as slices, which is not supported", path.display())]
    SlicedTensor {
        /// The `.index` file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
    },

    /// A tensor asked for is not in the file.
    #[error("tensor {tensor} not found in {}", path.display())]
    MissingTensor {
        /// The model file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
    },

    /// A tensor's shape is not the one expected (by the layer table, or by its own byte size).
    #[error("tensor {tensor} in {} has shape {actual:?}, expected {expected}", path.display())]
    ShapeMismatch {
        /// The model file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The expected shape, written like `[11, 11, 3, *]` (`*` = any size).
        expected: String,
        /// The shape found.
        actual: Vec<usize>,
    },

    /// A `.index` file does not end with the LevelDB table magic number.
    #[error(
        "{} is not a checkpoint index or is truncated: bad table magic {magic:#018x}",
        path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The 8 bytes found where the magic belongs, as a little-endian number.
        magic: u64,
    },

    /// A table block is compressed (TF writes them uncompressed; snappy is not supported).
    #[error(
        "{}: table block at offset {offset} is compressed (type {kind}), which is not supported",
        path.display()
    )]
    CompressedBlock {
        /// The `.index` file.
        path: PathBuf,
        /// Byte offset of the block.
        offset: u64,
        /// The compression type byte.
        kind: u8,
    },

    /// The checkpoint was written big-endian.
    #[error("{}: big-endian checkpoints are not supported", path.display())]
    BigEndian {
        /// The `.index` file.
        path: PathBuf,
    },

    /// A structure in a model file is malformed (bad varint, bad protobuf, inconsistent sizes…).
    #[error("malformed {}: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor where there is one.
        detail: String,
    },

    /// A folder given to [`crate::discover`] holds no checkpoint.
    #[error("no checkpoints found in {}", path.display())]
    NoCheckpoints {
        /// The folder searched.
        path: PathBuf,
    },

    /// A folder holds several candidate checkpoints and none is preferred.
    #[error("several checkpoints in {}: {}", path.display(), candidates.join(", "))]
    AmbiguousCheckpoint {
        /// The folder searched.
        path: PathBuf,
        /// The candidate file names.
        candidates: Vec<String>,
    },

    /// A path that is neither a checkpoint prefix, a `.index` file nor a `.safetensors` file.
    #[error(
        "{} is not a model file: expected a checkpoint prefix or a .safetensors file",
        path.display()
    )]
    UnsupportedFile {
        /// The path given.
        path: PathBuf,
    },

    /// A layer name that is not one of [`crate::alexnet::LAYER_NAMES`].
    #[error("unknown layer {name:?}, valid layers are {}", crate::alexnet::LAYER_NAMES.join(", "))]
    UnknownLayer {
        /// The name asked for.
        name: String,
    },

    /// An input image too small for a layer to have any output.
    #[error("an input of {input} px is too small for layer {layer}")]
    InputTooSmall {
        /// The layer whose output (or preceding pool) would be empty.
        layer: String,
        /// The input side asked for.
        input: usize,
    },
}

impl Error {
    /// `Ok` for a float32 tensor, else an [`Error::UnsupportedDtype`] naming `tensor` of `path`: the
    /// one check every format's `read_f32` makes before reading.
    pub(crate) fn expect_f32(path: &Path, tensor: &str, dtype: DType) -> Result<(), Error> {
        if dtype == DType::F32 {
            return Ok(());
        }
        Err(Error::UnsupportedDtype {
            path: path.to_path_buf(),
            tensor: tensor.to_owned(),
            dtype,
        })
    }

    /// An [`Error::Io`], or [`Error::NotFound`] when the error is "not found".
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound { path }
        } else {
            Error::Io { path, source }
        }
    }

    /// An [`Error::Malformed`].
    pub(crate) fn malformed(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Malformed {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// An [`Error::Truncated`].
    pub(crate) fn truncated(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Truncated {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
