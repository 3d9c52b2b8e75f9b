//! Arithmetic precision of a render: libtorch's TF32 switches and the dtype the network runs in.
//!
//! | `render.precision` | convolutions and matmuls                      | activations |
//! |--------------------|-----------------------------------------------|-------------|
//! | `fp32`             | full fp32 (TF32 off for cuDNN and cuBLAS)     | fp32        |
//! | `tf32` (default)   | TF32 tensor cores on CUDA (Ampere and later)  | fp32        |
//! | `bf16`             | bfloat16 weights and activations              | bf16        |
//!
//! On the CPU, `fp32` and `tf32` are the same. In `bf16` the image parameterisation, the transforms,
//! the objective and Adam stay in fp32; only the network between the transformed image and the
//! target layer runs in bfloat16 (the same as the network's output being cast back to fp32 for the
//! objective).
//!
//! tch 0.24 does not expose libtorch's TF32 switches, so they are called directly: `at::Context`'s
//! `setAllowTF32CuDNN`, `setAllowTF32CuBLAS` and their getters, exported by `libtorch_cpu.so`
//! (Itanium C++ ABI: a non-virtual member function takes `this` as its first argument). The test
//! below sets each switch and reads it back, so a libtorch whose symbols changed fails at link time
//! or in that test, not silently.

use std::ffi::c_void;

use lucid_proto::spec::Precision;
use tch::Kind;

mod ffi {
    use std::ffi::c_void;

    unsafe extern "C" {
        /// `at::Context& at::globalContext()`.
        #[link_name = "_ZN2at13globalContextEv"]
        pub fn global_context() -> *mut c_void;
        /// `void at::Context::setAllowTF32CuDNN(bool)`.
        #[link_name = "_ZN2at7Context17setAllowTF32CuDNNEb"]
        pub fn set_allow_tf32_cudnn(context: *mut c_void, allow: bool);
        /// `void at::Context::setAllowTF32CuBLAS(bool)`.
        #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
        pub fn set_allow_tf32_cublas(context: *mut c_void, allow: bool);
        /// `bool at::Context::allowTF32CuDNN(std::optional<Float32Op>) const`; the optional is
        /// passed as 8 bytes whose engaged flag is byte 4, so 0 is `std::nullopt`.
        #[link_name = "_ZNK2at7Context14allowTF32CuDNNESt8optionalINS_9Float32OpEE"]
        pub fn allow_tf32_cudnn(context: *mut c_void, op: u64) -> bool;
        /// `bool at::Context::allowTF32CuBLAS() const`.
        #[link_name = "_ZNK2at7Context15allowTF32CuBLASEv"]
        pub fn allow_tf32_cublas(context: *mut c_void) -> bool;
    }
}

fn context() -> *mut c_void {
    // SAFETY: `at::globalContext()` returns a reference to a process-wide static that lives as long
    // as the process; it takes no arguments.
    unsafe { ffi::global_context() }
}

/// Turns TF32 on or off for cuDNN convolutions and cuBLAS matmuls (process-wide).
pub fn set_tf32(allow: bool) {
    let ctx = context();
    // SAFETY: `ctx` is the live global context; the setters take `this` and a bool and only store
    // the flag.
    unsafe {
        ffi::set_allow_tf32_cudnn(ctx, allow);
        ffi::set_allow_tf32_cublas(ctx, allow);
    }
}

/// Whether TF32 is allowed for (cuDNN convolutions, cuBLAS matmuls).
pub fn tf32() -> (bool, bool) {
    let ctx = context();
    // SAFETY: as in `set_tf32`; the getters only read the flags.
    unsafe { (ffi::allow_tf32_cudnn(ctx, 0), ffi::allow_tf32_cublas(ctx)) }
}

/// Applies `precision`'s TF32 switches; returns the dtype the network runs in.
pub fn apply(precision: Precision) -> Kind {
    set_tf32(precision != Precision::Fp32);
    network_kind(precision)
}

/// The dtype the network runs in under `precision`.
pub fn network_kind(precision: Precision) -> Kind {
    match precision {
        Precision::Fp32 | Precision::Tf32 => Kind::Float,
        Precision::Bf16 => Kind::BFloat16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_switches_are_set_and_read_back() {
        set_tf32(false);
        assert_eq!(tf32(), (false, false));
        set_tf32(true);
        assert_eq!(tf32(), (true, true));
        assert_eq!(apply(Precision::Fp32), Kind::Float);
        assert_eq!(tf32(), (false, false));
        assert_eq!(apply(Precision::Bf16), Kind::BFloat16);
        assert_eq!(tf32(), (true, true));
    }
}
