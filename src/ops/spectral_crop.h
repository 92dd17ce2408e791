#pragma once

// The internal operator behind the spectral pooling layers (docs/layers.md,
// "How it is computed"): for every H x W plane x of the input,
//
//   y = A_r x G_r + A_i x G_i
//
// with the small matrices passed in the layout the kernels read:
//   row_matrix    (H' x 2H) = [A_r | A_i]
//   column_matrix (W x 2W') = [G_r | G_i]
// both on the input's device, in its compute dtype: float32 or float64 data
// with matrices of the same dtype, or float16 or bfloat16 data with float32
// matrices, computed in float32 and rounded once to the data's dtype (the
// matrices' gradients stay float32). The output and the input's gradient
// are in the input's suggested memory format (NCHW or channels_last) on
// every kernel, the Meta kernel included. Schemas:
//
//   diffstride::_spectral_crop(Tensor input, Tensor row_matrix,
//                              Tensor column_matrix) -> Tensor
//   diffstride::_spectral_crop_backward(Tensor grad_output, Tensor input,
//       Tensor row_matrix, Tensor column_matrix, bool[3] output_mask)
//       -> (Tensor, Tensor, Tensor)
//
// Kernels, one file per dispatch key: cpu/ (the fused CPU loops), generic/
// (two matrix products over all planes, for every other device) and
// autograd/ (forward through the dispatcher, backward by the backward op).

#include <ATen/core/Tensor.h>

#include <array>
#include <tuple>

namespace diffstride {
namespace ops {

/// y (N x C x H' x W') from input (N x C x H x W), through the dispatcher.
at::Tensor spectral_crop(const at::Tensor& input,
                         const at::Tensor& row_matrix,
                         const at::Tensor& column_matrix);

/// The gradients of spectral_crop's three inputs given that of its output;
/// those whose output_mask entry is false come back undefined.
std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask);

/// float16 and bfloat16: the dtypes whose data the spectral crop computes in
/// float32.
inline bool is_reduced_precision(at::ScalarType type) {
  return type == at::kHalf || type == at::kBFloat16;
}

/// The input's dtype (float16, bfloat16, float32 or float64), the matrices'
/// (its compute dtype) and their one device. `op` names the caller in the
/// message.
void check_spectral_crop_types(const at::Tensor& input,
                               const at::Tensor& row_matrix,
                               const at::Tensor& column_matrix,
                               const char* op);

/// What every kernel checks of its arguments: sizes that agree with each
/// other, one dtype (float32 or float64) and one device. `op` names the
/// caller in the message.
void check_spectral_crop_arguments(const at::Tensor& input,
                                   const at::Tensor& row_matrix,
                                   const at::Tensor& column_matrix,
                                   const char* op);

using SpectralCropKernel = at::Tensor (*)(const at::Tensor&,
                                          const at::Tensor&,
                                          const at::Tensor&);
using SpectralCropBackwardKernel =
    std::tuple<at::Tensor, at::Tensor, at::Tensor> (*)(const at::Tensor&,
                                                       const at::Tensor&,
                                                       const at::Tensor&,
                                                       const at::Tensor&,
                                                       std::array<bool, 3>);

/// For kernels that compute in float32 and float64 only: float16 or
/// bfloat16 data (and its output gradient) converted to float32 for
/// `kernel`, the output and the input's gradient rounded once back.
at::Tensor spectral_crop_in_float32(SpectralCropKernel kernel,
                                    const at::Tensor& input,
                                    const at::Tensor& row_matrix,
                                    const at::Tensor& column_matrix);
std::tuple<at::Tensor, at::Tensor, at::Tensor>
spectral_crop_backward_in_float32(SpectralCropBackwardKernel kernel,
                                  const at::Tensor& grad_output,
                                  const at::Tensor& input,
                                  const at::Tensor& row_matrix,
                                  const at::Tensor& column_matrix,
                                  std::array<bool, 3> output_mask);

/// The same for the backward, and that grad_output has the output's shape.
void check_spectral_crop_backward_arguments(const at::Tensor& grad_output,
                                            const at::Tensor& input,
                                            const at::Tensor& row_matrix,
                                            const at::Tensor& column_matrix);

}  // namespace ops
}  // namespace diffstride
