//! Pure-Rust model files: TensorFlow Saver V2 checkpoints, safetensors, model discovery and the
//! `alexnet_v2` layer table read from them.
//!
//! This crate does file I/O but links no libtorch, so the coordinator (which only needs layer shapes)
//! and the worker (which needs the weights) share it.
//!
//! # Layout
//! - [`tf`]: the Saver V2 reader (`.index` SSTable + `.data-NNNNN-of-NNNNN` shards).
//! - [`safetensors_file`]: the same tensors from a `.safetensors` export.
//! - [`source`]: a model file of either kind behind one [`ModelFile`] interface, and model discovery.
//! - [`alexnet`]: the `alexnet_v2` architecture, with every width read from a model file.
//!
//! # Robustness
//! Model files come from users' disks, so every reader checks every offset, length and CRC it
//! meets and returns an [`Error`] naming the file (and tensor) instead of panicking. No buffer is
//! allocated from a length field before that length has been checked against the file's size.

#![warn(missing_docs)]

use std::fmt;

pub mod alexnet;
mod error;
pub mod safetensors_file;
pub mod source;
pub mod tf;

pub use error::Error;
pub use source::{DiscoveredModel, ModelFile, discover};

/// A tensor element type, numbered as TensorFlow's `DataType` enum.
///
/// Only [`DType::F32`] can be read as values; the others are reported so that errors can say
/// what was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// `DT_FLOAT` (1).
    F32,
    /// `DT_DOUBLE` (2).
    F64,
    /// `DT_HALF` (19).
    F16,
    /// `DT_BFLOAT16` (14).
    BF16,
    /// `DT_INT32` (3).
    I32,
    /// `DT_INT64` (9).
    I64,
    /// Any other `DataType` number (e.g. 4 = uint8, 7 = string, 10 = bool).
    Other(i32),
}

impl DType {
    /// The dtype for a TensorFlow `DataType` enum number.
    pub fn from_tf(value: i32) -> Self {
        match value {
            1 => DType::F32,
            2 => DType::F64,
            3 => DType::I32,
            9 => DType::I64,
            14 => DType::BF16,
            19 => DType::F16,
            other => DType::Other(other),
        }
    }

    /// The TensorFlow `DataType` enum number.
    pub fn tf_enum(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::F64 => 2,
            DType::I32 => 3,
            DType::I64 => 9,
            DType::BF16 => 14,
            DType::F16 => 19,
            DType::Other(other) => other,
        }
    }

    /// Bytes per element, where the type has a fixed size.
    pub fn size_in_bytes(self) -> Option<usize> {
        match self {
            DType::F64 | DType::I64 => Some(8),
            DType::F32 | DType::I32 => Some(4),
            DType::F16 | DType::BF16 => Some(2),
            DType::Other(_) => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::Other(4) => "uint8",
            DType::Other(5) => "int16",
            DType::Other(6) => "int8",
            DType::Other(7) => "string",
            DType::Other(8) => "complex64",
            DType::Other(10) => "bool",
            DType::Other(17) => "uint16",
            DType::Other(18) => "complex128",
            DType::Other(20) => "resource",
            DType::Other(21) => "variant",
            DType::Other(22) => "uint32",
            DType::Other(23) => "uint64",
            DType::Other(n) => return write!(f, "dtype {n}"),
        };
        f.write_str(name)
    }
}

/// A tensor's name, element type and shape, as recorded in a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The variable name, e.g. `alexnet_v2/conv1/weights`.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// The shape, outermost first (TF convolution weights are HWIO).
    pub shape: Vec<usize>,
}

impl TensorInfo {
    pub(crate) fn new(name: &str, dtype: DType, shape: &[usize]) -> Self {
        TensorInfo {
            name: name.to_owned(),
            dtype,
            shape: shape.to_vec(),
        }
    }
}

/// A float32 tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The shape, outermost first (TF convolution weights are HWIO).
    pub shape: Vec<usize>,
    /// The values, row-major as stored.
    pub data: Vec<f32>,
}

/// The number of elements of `shape`, or `None` on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Decodes little-endian float32 bytes (`bytes.len()` must be a multiple of 4).
pub(crate) fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
