// The ATen calls lucid-aten makes for Rust. Each function returns NULL on success or a message
// (allocated with malloc; the caller frees it with lucid_aten_free) when libtorch throws, so that no
// C++ exception crosses into Rust.
#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adam.h>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace {

template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

}  // namespace

extern "C" {

// One fused Adam pass over one tensor: reads param, grad and both moments once, writes param and the
// moments once. `step` is a one-element float tensor on the param's device.
char* lucid_aten_fused_adam(at::Tensor* param, at::Tensor* grad, at::Tensor* exp_avg,
                            at::Tensor* exp_avg_sq, at::Tensor* step, double lr, double beta1,
                            double beta2, double eps) {
  return guarded([&] {
    at::_fused_adam_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {*step}, lr, beta1, beta2,
                     /*weight_decay=*/0.0, eps, /*amsgrad=*/false, /*maximize=*/false);
  });
}

// Drops param's gradient, so that the next backward writes a fresh one instead of adding into it.
char* lucid_aten_release_grad(at::Tensor* param) {
  return guarded([&] { param->mutable_grad().reset(); });
}

void lucid_aten_free(char* message) { free(message); }

}  // extern "C"
