// Autocast kernels (CPU and CUDA) of the public pooling ops and of the
// internal spectral crop. They follow PyTorch's policy for its FFT ops, which
// these replace: float16 and bfloat16 tensors are cast to float32, the op
// runs with autocast off, and the result stays float32 (float32 and float64
// pass through unchanged).

#include "ops/spectral_crop.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

namespace diffstride {
namespace ops {

namespace {

at::Tensor to_float32_if_reduced(const at::Tensor& t) {
  return is_reduced_precision(t.scalar_type()) ? t.to(at::kFloat) : t;
}

at::Tensor spectral_crop_autocast(const at::Tensor& input,
                                  const at::Tensor& row_matrix,
                                  const at::Tensor& column_matrix) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  return spectral_crop(to_float32_if_reduced(input),
                       to_float32_if_reduced(row_matrix),
                       to_float32_if_reduced(column_matrix));
}

at::Tensor diffstride_autocast(const at::Tensor& input,
                               const at::Tensor& strides,
                               double smoothness_factor,
                               bool cropping) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("diffstride::diffstride", "")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, double, bool)>();
  return op.call(
      to_float32_if_reduced(input), strides, smoothness_factor, cropping);
}

at::Tensor fixed_spectral_pooling_autocast(const at::Tensor& input,
                                           c10::ArrayRef<double> strides) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("diffstride::fixed_spectral_pooling", "")
          .typed<at::Tensor(const at::Tensor&, c10::ArrayRef<double>)>();
  return op.call(to_float32_if_reduced(input), strides);
}

void register_autocast_kernels(torch::Library& m) {
  m.impl("_spectral_crop", TORCH_FN(spectral_crop_autocast));
  m.impl("diffstride", TORCH_FN(diffstride_autocast));
  m.impl("fixed_spectral_pooling", TORCH_FN(fixed_spectral_pooling_autocast));
}

}  // namespace

}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_IMPL(diffstride, AutocastCPU, m) {
  diffstride::ops::register_autocast_kernels(m);
}

TORCH_LIBRARY_IMPL(diffstride, Autocast, m) {
  diffstride::ops::register_autocast_kernels(m);
}
