#pragma once

// The spectral pooling layers' crop applied to data: over two spatial axes
// through the spectral crop op (ops/spectral_crop.h) with the small matrices
// of nn/crop_matrices.h or nn/diffstride_matrices.h, over one or three
// through ATen's FFTs. float16 and bfloat16 data is computed in float32
// (products accumulate in float32) and rounded to the input's dtype once,
// at the end; the output keeps the input's memory format. Internal to the
// library.

#include "nn/crop_matrices.h"

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

namespace diffstride {
namespace detail {

/// The dtype and device the small matrices must have for `input`: its own,
/// float32 for float16 and bfloat16 data.
at::TensorOptions compute_options(const at::Tensor& input);

/// y = A_r x G_r + A_i x G_i for every H x W plane x of the N x C x H x W
/// `input`, with row_matrix = [A_r | A_i] (H' x 2H) and column_matrix =
/// [G_r | G_i] (W x 2W') in compute_options(input).
at::Tensor crop_with_matrices(const at::Tensor& input,
                              const at::Tensor& row_matrix,
                              const at::Tensor& column_matrix);

/// Over the last `crops.size()` (1 or 3; 2 works too) axes of `input`,
///   y = irfftn(crop(rfftn(x)) * mask)
/// with the mask the outer product of the axes' masks and the crop keeping
/// `crops[i].bins` on axis i. irfftn produces `bins.size()` samples on every
/// axis but the last, and `last_output_size` there (K' = last_output_size/2
/// + 1 bins).
at::Tensor crop_with_ffts(const at::Tensor& input,
                          c10::ArrayRef<AxisCrop> crops,
                          int64_t last_output_size);

}  // namespace detail
}  // namespace diffstride
