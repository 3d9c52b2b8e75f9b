//! ATen operators that tch 0.24 does not bind, called through a small C++ shim (`src/shim.cpp`).
//!
//! Why: the render engine's Adam update is a handful of elementwise passes over the largest tensor of
//! an optimisation (the spectrum of every image of the batch), and libtorch has one kernel doing it in
//! a single pass (`_fused_adam_`, on the CPU and on CUDA) that tch's generated bindings leave out.
//! Releasing a gradient (rather than zeroing it) saves two more passes an update: the next backward
//! writes a fresh gradient instead of adding into a zeroed one.
//!
//! The shim is compiled by `build.rs` against the headers of the libtorch torch-sys links; a C++
//! exception comes back as [`AtenError`], never across the language boundary.

use std::ffi::{CStr, c_char};

use tch::Tensor;
use torch_sys::C_tensor;

unsafe extern "C" {
    fn lucid_aten_fused_adam(
        param: *const C_tensor,
        grad: *const C_tensor,
        exp_avg: *const C_tensor,
        exp_avg_sq: *const C_tensor,
        step: *const C_tensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    ) -> *mut c_char;
    fn lucid_aten_release_grad(param: *const C_tensor) -> *mut c_char;
    fn lucid_aten_free(message: *mut c_char);
}

/// libtorch refused or failed an operator.
#[derive(Debug, thiserror::Error)]
#[error("libtorch {op}: {message}")]
pub struct AtenError {
    /// The operator called.
    pub op: &'static str,
    /// What libtorch said.
    pub message: String,
}

/// Turns the shim's answer (NULL, or a message it allocated) into a result, freeing the message.
fn answer(op: &'static str, message: *mut c_char) -> Result<(), AtenError> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null answer is a NUL-terminated string the shim allocated with malloc and
    // hands over to us; it is read once and freed once, by the shim's own free.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    unsafe { lucid_aten_free(message) };
    Err(AtenError { op, message: text })
}

/// Adam's hyper-parameters for one fused update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    /// Step size.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
}

/// libtorch's `_fused_adam_` on one tensor: `m ← lerp(m, g, 1−β1)`, `v ← β2·v + (1−β2)·g²`,
/// `param ← param − lr/(1−β1^s) · m / (√v/√(1−β2^s) + ε)`, where `s` is the value of the one-element
/// float tensor `step` (on `param`'s device; the kernel reads it there and does not change it).
///
/// All five tensors must share a device and `param`, `grad` and the moments a shape and a dtype.
pub fn fused_adam_(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    step: &Tensor,
    hyper: AdamHyper,
) -> Result<(), AtenError> {
    // SAFETY: each pointer is a live tch tensor (a heap `at::Tensor`) borrowed for the call; the shim
    // neither keeps nor frees them.
    let message = unsafe {
        lucid_aten_fused_adam(
            param.as_ptr(),
            grad.as_ptr(),
            exp_avg.as_ptr(),
            exp_avg_sq.as_ptr(),
            step.as_ptr(),
            hyper.lr,
            hyper.beta1,
            hyper.beta2,
            hyper.eps,
        )
    };
    answer("_fused_adam_", message)
}

/// Drops `param`'s accumulated gradient (`param.grad()` becomes undefined), so the next backward
/// stores its gradient as it is instead of adding it to zeros.
pub fn release_grad(param: &Tensor) -> Result<(), AtenError> {
    // SAFETY: as in `fused_adam_`, a live tensor borrowed for the call.
    let message = unsafe { lucid_aten_release_grad(param.as_ptr()) };
    answer("release_grad", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    const HYPER: AdamHyper = AdamHyper {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::try_from(t.detach().flatten(0, -1)).unwrap_or_default()
    }

    #[test]
    fn fused_adam_first_step_moves_each_element_by_lr_times_its_sign() {
        // s = 1: m = 0.1 g, v = 0.001 g², update = lr/0.1 · 0.1 g / (|g|·√0.001/√0.001 + ε) ≈ lr·sign(g)
        let param = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let grad = Tensor::from_slice(&[2.0f32, -0.5, 1e-3]);
        let (m, v) = (param.zeros_like(), param.zeros_like());
        let step = Tensor::from_slice(&[1.0f32]);
        fused_adam_(&param, &grad, &m, &v, &step, HYPER).expect("fused adam");
        for (got, want) in values(&param).iter().zip([-0.05f32, 0.05, -0.05]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        let m = values(&m);
        assert!(
            (m[0] - 0.2).abs() < 1e-7 && (m[1] + 0.05).abs() < 1e-7,
            "{m:?}"
        );
        assert_eq!(
            values(&step),
            vec![1.0],
            "the kernel leaves the step count alone"
        );
    }

    #[test]
    fn a_libtorch_exception_comes_back_as_an_error_naming_the_operator() {
        let param = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let (m, v) = (param.zeros_like(), param.zeros_like());
        let no_step = Tensor::zeros([0], (Kind::Float, Device::Cpu));
        let err = fused_adam_(&param, &param.ones_like(), &m, &v, &no_step, HYPER)
            .expect_err("an empty step tensor is refused");
        assert_eq!(err.op, "_fused_adam_");
        assert!(!err.message.is_empty(), "{err}");
    }

    #[test]
    fn a_released_gradient_is_replaced_not_added_to_by_the_next_backward() {
        let param = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&param * 3.0).sum(Kind::Float).backward();
        release_grad(&param).expect("release");
        assert!(!param.grad().defined(), "the gradient is gone");
        (&param * 5.0).sum(Kind::Float).backward();
        assert_eq!(values(&param.grad()), vec![5.0, 5.0]);
    }
}
