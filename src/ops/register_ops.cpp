// The layers as PyTorch operators in namespace `diffstride`, for Python
// (torch.ops.load_library) and TorchScript. `diffstride` and
// `fixed_spectral_pooling` take inputs of every spatial rank (N x C x L,
// N x C x H x W, N x C x D x H x W) with one stride per spatial axis or one
// for all; `spatial_pooling` is 2-D. Their kernels are the functional
// forms, registered as CompositeImplicitAutograd: the data-sized work inside
// them is the internal _spectral_crop op (ops/spectral_crop.h), whose kernels
// are registered per dispatch key, so these work on every device and
// autograd derives their backward.

#include <diffstride/nn/diff_stride.h>
#include <diffstride/nn/fixed_spectral_pooling.h>
#include <diffstride/nn/spatial_pooling.h>

#include "nn/module_checks.h"

#include <torch/library.h>

namespace diffstride {
namespace {

at::Tensor diffstride_op(const at::Tensor& input,
                         const at::Tensor& strides,
                         double smoothness_factor,
                         bool cropping) {
  return functional::diffstride(input,
                                strides,
                                functional::DiffStrideFuncOptions()
                                    .smoothness_factor(smoothness_factor)
                                    .cropping(cropping));
}

std::tuple<at::Tensor, at::Tensor> diffstride_matrices_op(
    c10::ArrayRef<int64_t> size,
    const at::Tensor& strides,
    double smoothness_factor,
    bool cropping) {
  return functional::diffstride_matrices(
      size,
      strides,
      functional::DiffStrideFuncOptions()
          .smoothness_factor(smoothness_factor)
          .cropping(cropping));
}

at::Tensor fixed_spectral_pooling_op(const at::Tensor& input,
                                     c10::ArrayRef<double> strides) {
  return functional::fixed_spectral_pooling(input, strides.vec());
}

// Accepts one stride (both axes) or two (height, width), like Python's
// pooling ops.
at::Tensor spatial_pooling_op(const at::Tensor& input,
                              c10::ArrayRef<int64_t> strides) {
  return functional::spatial_pooling(
      input, IntStridePair(detail::spatial_pooling_strides(strides)));
}

// The Python modules' checks are the C++ modules' (nn/module_checks.h),
// raised as ValueError: the errors of bad arguments to a module.
template <typename Check>
auto as_value_error(const Check& check) {
  try {
    return check();
  } catch (const c10::Error& error) {
    TORCH_CHECK_VALUE(false, error.what_without_backtrace());
  }
}

std::vector<double> diffstride_initial_strides_op(
    int64_t spatial_rank,
    c10::ArrayRef<double> strides,
    double smoothness_factor,
    double lower_limit_stride,
    c10::optional<double> upper_limit_stride,
    bool shared_stride) {
  return as_value_error([&] {
    return detail::diffstride_initial_strides(spatial_rank,
                                              strides,
                                              smoothness_factor,
                                              lower_limit_stride,
                                              upper_limit_stride,
                                              shared_stride);
  });
}

void constrain_strides_op(const at::Tensor& strides,
                          c10::ArrayRef<int64_t> last_input_size,
                          double smoothness_factor,
                          double lower_limit_stride,
                          c10::optional<double> upper_limit_stride) {
  const int64_t spatial_rank =
      last_input_size.empty() ? strides.numel()
                              : static_cast<int64_t>(last_input_size.size());
  detail::constrain_strides(strides,
                            spatial_rank,
                            last_input_size,
                            smoothness_factor,
                            lower_limit_stride,
                            upper_limit_stride);
}

void check_layer_input_op(const at::Tensor& input,
                          c10::string_view layer,
                          int64_t spatial_rank,
                          double smoothness_factor) {
  as_value_error([&] {
    detail::check_layer_input(
        input, std::string(layer), spatial_rank, smoothness_factor);
  });
}

std::vector<double> fixed_spectral_pooling_strides_op(
    int64_t spatial_rank, c10::ArrayRef<double> strides) {
  return as_value_error([&] {
    return detail::fixed_spectral_pooling_strides(spatial_rank, strides);
  });
}

std::vector<int64_t> spatial_pooling_strides_op(
    c10::ArrayRef<int64_t> strides) {
  return as_value_error(
      [&] { return detail::spatial_pooling_strides(strides); });
}

}  // namespace
}  // namespace diffstride

// The library's namespace; ops/spectral_crop.cpp adds the internal op to it.
TORCH_LIBRARY(diffstride, m) {
  m.def(
      "diffstride(Tensor input, Tensor strides, float smoothness_factor=4.0, "
      "bool cropping=True) -> Tensor");
  m.def(
      "diffstride_matrices(int[] size, Tensor strides, float "
      "smoothness_factor=4.0, bool cropping=True) -> (Tensor, Tensor)");
  m.def("fixed_spectral_pooling(Tensor input, float[] strides) -> Tensor");
  m.def("spatial_pooling(Tensor input, int[] strides) -> Tensor");
  // The modules' checks and constraint (nn/module_checks.h), for the
  // Python modules.
  m.def(
      "diffstride_initial_strides(int spatial_rank, float[] strides, float "
      "smoothness_factor, float lower_limit_stride, float? "
      "upper_limit_stride, bool shared_stride) -> float[]");
  m.def(
      "constrain_strides_(Tensor(a!) strides, int[] last_input_size, float "
      "smoothness_factor, float lower_limit_stride, float? "
      "upper_limit_stride) -> ()");
  m.def(
      "check_layer_input(Tensor input, str layer, int spatial_rank, float "
      "smoothness_factor=0.0) -> ()");
  m.def(
      "fixed_spectral_pooling_strides(int spatial_rank, float[] strides) -> "
      "float[]");
  m.def("spatial_pooling_strides(int[] strides) -> int[]");
}

TORCH_LIBRARY_IMPL(diffstride, CompositeImplicitAutograd, m) {
  m.impl("diffstride", TORCH_FN(diffstride::diffstride_op));
  m.impl("diffstride_matrices", TORCH_FN(diffstride::diffstride_matrices_op));
  m.impl("fixed_spectral_pooling",
         TORCH_FN(diffstride::fixed_spectral_pooling_op));
  m.impl("spatial_pooling", TORCH_FN(diffstride::spatial_pooling_op));
  m.impl("diffstride_initial_strides",
         TORCH_FN(diffstride::diffstride_initial_strides_op));
  m.impl("constrain_strides_", TORCH_FN(diffstride::constrain_strides_op));
  m.impl("check_layer_input", TORCH_FN(diffstride::check_layer_input_op));
  m.impl("fixed_spectral_pooling_strides",
         TORCH_FN(diffstride::fixed_spectral_pooling_strides_op));
  m.impl("spatial_pooling_strides",
         TORCH_FN(diffstride::spatial_pooling_strides_op));
}
