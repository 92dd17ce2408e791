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
  TORCH_CHECK(strides.size() == 1 || strides.size() == 2,
              "spatial_pooling: expected 1 or 2 strides, got ",
              strides.size());
  return functional::spatial_pooling(
      input,
      strides.size() == 1 ? IntStridePair(strides[0]) : IntStridePair(strides));
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
}

TORCH_LIBRARY_IMPL(diffstride, CompositeImplicitAutograd, m) {
  m.impl("diffstride", TORCH_FN(diffstride::diffstride_op));
  m.impl("diffstride_matrices", TORCH_FN(diffstride::diffstride_matrices_op));
  m.impl("fixed_spectral_pooling",
         TORCH_FN(diffstride::fixed_spectral_pooling_op));
  m.impl("spatial_pooling", TORCH_FN(diffstride::spatial_pooling_op));
}
