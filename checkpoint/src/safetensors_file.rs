//! `.safetensors` model files holding the same variables as the TF checkpoints (same names,
//! HWIO weights).
//!
//! Only the header is read at open (parsed by the `safetensors` crate); tensor bytes are read on
//! demand, so listing shapes of a large file stays cheap.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use safetensors::Dtype;
use safetensors::tensor::Metadata;

use crate::{DType, Error, Tensor, TensorInfo, element_count, f32_from_le};

/// Largest header accepted (the `safetensors` crate's own limit).
const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor's record in the header.
#[derive(Debug, Clone)]
struct Record {
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    len: u64,
}

/// An opened `.safetensors` file: the parsed header, with tensor bytes read on demand.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    records: BTreeMap<String, Record>,
    file: Mutex<File>,
}

/// The dtype for a safetensors dtype; types without a [`DType`] variant map to their
/// TensorFlow `DataType` number where there is one, else to `Other(-1)`.
fn dtype_of(dtype: Dtype) -> DType {
    match dtype {
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::U8 => DType::Other(4),
        Dtype::I16 => DType::Other(5),
        Dtype::I8 => DType::Other(6),
        Dtype::BOOL => DType::Other(10),
        Dtype::U16 => DType::Other(17),
        Dtype::U32 => DType::Other(22),
        Dtype::U64 => DType::Other(23),
        _ => DType::Other(-1),
    }
}

impl SafetensorsFile {
    /// Opens `path` and parses its header, checking every tensor's byte range against its
    /// shape and the file size.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut len_bytes = [0u8; 8];
        if file_len < 8 {
            return Err(Error::truncated(path, "no 8-byte header length"));
        }
        file.read_exact(&mut len_bytes)
            .map_err(|e| Error::io(path, e))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_LEN {
            return Err(Error::malformed(
                path,
                format!("header length {header_len} is too large"),
            ));
        }
        let data_start = 8 + header_len;
        if data_start > file_len {
            return Err(Error::truncated(
                path,
                format!("header of {header_len} bytes but the file has {file_len}"),
            ));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)
            .map_err(|e| Error::io(path, e))?;
        let metadata: Metadata = serde_json::from_slice(&header)
            .map_err(|e| Error::malformed(path, format!("bad safetensors header: {e}")))?;
        let data_len = file_len - data_start;
        let mut records = BTreeMap::new();
        for (name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            let (start, end) = (start as u64, end as u64);
            let dtype = dtype_of(info.dtype);
            let expected = element_count(&info.shape)
                .and_then(|n| n.checked_mul(info.dtype.bitsize()))
                .map(|bits| bits.div_ceil(8) as u64);
            if end < start || expected != Some(end - start) {
                return Err(Error::malformed(
                    path,
                    format!(
                        "tensor {name}: byte range {start}..{end} does not fit shape {:?} of {dtype}",
                        info.shape
                    ),
                ));
            }
            if end > data_len {
                return Err(Error::truncated(
                    path,
                    format!("tensor {name} ends at data byte {end} but there are {data_len}"),
                ));
            }
            records.insert(
                name,
                Record {
                    dtype,
                    shape: info.shape.clone(),
                    start: data_start + start,
                    len: end - start,
                },
            );
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            records,
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor's name, dtype and shape, sorted by name.
    pub fn tensor_infos(&self) -> Vec<TensorInfo> {
        self.records
            .iter()
            .map(|(name, r)| TensorInfo::new(name, r.dtype, &r.shape))
            .collect()
    }

    fn record(&self, name: &str) -> Result<&Record, Error> {
        self.records.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
        })
    }

    /// One tensor's name, dtype and shape.
    pub fn info(&self, name: &str) -> Result<TensorInfo, Error> {
        let r = self.record(name)?;
        Ok(TensorInfo::new(name, r.dtype, &r.shape))
    }

    /// Reads a float32 tensor; other dtypes are [`Error::UnsupportedDtype`].
    pub fn read_f32(&self, name: &str) -> Result<Tensor, Error> {
        let r = self.record(name)?;
        Error::expect_f32(&self.path, name, r.dtype)?;
        // `open` checked that the range lies inside the file, so this length is bounded.
        let len = usize::try_from(r.len)
            .map_err(|_| Error::malformed(&self.path, format!("tensor {name} is too large")))?;
        let mut buf = vec![0u8; len];
        {
            let mut file = self
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            file.seek(SeekFrom::Start(r.start))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => Error::truncated(
                        &self.path,
                        format!("tensor {name} ends past the end of the file"),
                    ),
                    _ => Error::io(&self.path, e),
                })?;
        }
        Ok(Tensor {
            shape: r.shape.clone(),
            data: f32_from_le(&buf),
        })
    }
}
