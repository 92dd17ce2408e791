#pragma once

// Masks and crop of the spectral pooling layers turned into the small
// matrices of the spectral crop op (ops/spectral_crop.h). Internal to the
// library.

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

namespace diffstride {
namespace detail {

/// Computes, for every H x W plane of `input`,
///   y = irfft2(crop(rfft2(x) * row_mask[row] * column_mask[col]))
/// where the crop keeps rows `kept_rows` of the spectrum (indices in FFT
/// order, in that order) and columns [0, kept_columns), and irfft2 produces
/// H' = kept_rows.size() rows and `output_width` columns. An undefined mask
/// means all ones; a defined one is float64, on the host, one weight per kept
/// bin, and the result is differentiable in it.
///
/// The map is linear and separable (docs/layers.md): y = Re(A) x G_r +
/// Im(A) x G_i, with A (H' x H, complex) the row pipeline IDFT * crop *
/// diag(mask) * DFT and G_r, G_i (W x W') the real-to-real column pipeline
/// applied to unit rows and to i times their spectra. The small matrices are
/// built on the host in float64, in the layout the op takes; the data-sized
/// work is the op's, on the input's device, in the input's precision
/// (float32 for float16 and bfloat16 inputs, rounded back at the end).
at::Tensor separable_spectral_crop(const at::Tensor& input,
                                   c10::ArrayRef<int64_t> kept_rows,
                                   const at::Tensor& row_mask,
                                   int64_t kept_columns,
                                   const at::Tensor& column_mask,
                                   int64_t output_width);

}  // namespace detail
}  // namespace diffstride
