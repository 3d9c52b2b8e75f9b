//! Choosing the compute device, and making libtorch's CUDA backend available.

use std::str::FromStr;

use tch::Device;

/// Which device to render on, as given on the command line or in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when libtorch sees one, otherwise the CPU.
    #[default]
    Auto,
    /// The CPU, even when a GPU is present.
    Cpu,
    /// The given CUDA device; an error when it is not there.
    Cuda(usize),
}

/// A device string that is not `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The text could not be parsed.
    #[error("unknown device {0:?}: expected auto, cpu, cuda or cuda:N")]
    Unknown(String),
    /// CUDA was asked for but libtorch sees fewer devices.
    #[error("device cuda:{index} requested but libtorch sees {available} CUDA device(s)")]
    NotAvailable {
        /// The requested index.
        index: usize,
        /// How many CUDA devices libtorch reports.
        available: i64,
    },
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Unknown(other.to_string())),
        }
    }
}

impl DeviceChoice {
    /// Resolves the choice to a libtorch device, loading the CUDA backend first.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        load_cuda_backend();
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda(index) => {
                let available = tch::Cuda::device_count();
                if (index as i64) < available {
                    Ok(Device::Cuda(index))
                } else {
                    Err(DeviceError::NotAvailable { index, available })
                }
            }
        }
    }
}

/// Loads `libtorch_cuda.so` so that CUDA registers with libtorch.
///
/// rustc links with `--as-needed`, which drops `libtorch_cuda.so` from the binary because no symbol of it
/// is referenced directly; without it libtorch reports no CUDA device even on a GPU node. Loading it by
/// name searches `LD_LIBRARY_PATH` and the binary's run path. On a CPU-only install the library or its
/// CUDA dependencies are missing, the load fails, and that is harmless: the CPU backend is used.
pub fn load_cuda_backend() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: dlopen with a NUL-terminated constant name; the handle is deliberately never closed so
        // the backend stays registered for the life of the process.
        let handle = unsafe {
            libc::dlopen(
                c"libtorch_cuda.so".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL,
            )
        };
        if handle.is_null() {
            tracing::debug!("libtorch_cuda.so not loaded; CUDA unavailable, using the CPU backend");
        } else {
            tracing::debug!("libtorch_cuda.so loaded");
        }
    });
}

/// A short description of a device for logs and metadata (`cpu`, `cuda:0`).
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".to_string(),
        Device::Vulkan => "vulkan".to_string(),
    }
}

/// Free and total memory of the current CUDA device in bytes, from the CUDA runtime that libtorch
/// loaded (`cudaMemGetInfo`); `None` on a CPU-only install.
pub fn cuda_memory() -> Option<(u64, u64)> {
    load_cuda_backend();
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    // SAFETY: looks up a symbol by a constant NUL-terminated name in the already-loaded libraries.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"cudaMemGetInfo".as_ptr()) };
    if symbol.is_null() {
        return None;
    }
    // SAFETY: cudaMemGetInfo has this C signature in every CUDA runtime version.
    let get: MemGetInfo = unsafe { std::mem::transmute::<*mut libc::c_void, MemGetInfo>(symbol) };
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: both pointers are valid for writes for the duration of the call.
    let status = unsafe { get(&mut free, &mut total) };
    (status == 0).then_some((free as u64, total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_strings() {
        assert_eq!(
            "auto".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Auto)
        );
        assert_eq!("cpu".parse::<DeviceChoice>().ok(), Some(DeviceChoice::Cpu));
        assert_eq!(
            "cuda".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Cuda(0))
        );
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().ok(),
            Some(DeviceChoice::Cuda(3))
        );
        let err = "tpu".parse::<DeviceChoice>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown device \"tpu\": expected auto, cpu, cuda or cuda:N")
        );
    }
}
