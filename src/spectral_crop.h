#pragma once

// The computation shared by the spectral pooling layers, in separable form.
// Internal to the library.

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>

namespace diffstride {
namespace detail {

/// Checks what every pooling layer needs of its input: a 4-D NCHW tensor of
/// float32 or float64. `layer` names the caller in the error message.
void check_pooling_input(const at::Tensor& input, const char* layer);

/// Computes, for every H x W plane of `input`,
///   y = irfft2(crop(rfft2(x) * row_mask[row] * column_mask[col]))
/// where the crop keeps rows `kept_rows` of the spectrum (indices in FFT
/// order, in that order) and columns [0, kept_columns), and irfft2 produces
/// H' = kept_rows.size() rows and `output_width` columns. An undefined mask
/// means all ones; a defined one is float64, one weight per kept bin, and the
/// result is differentiable in it.
///
/// The map is linear and separable: y = Re(A) x G_r + Im(A) x G_i, with A
/// (H' x H, complex) the row pipeline IDFT * crop * diag(mask) * DFT and G_r,
/// G_i (W x W') the real-to-real column pipeline applied to unit rows and to
/// i times their spectra. The small matrices are built in float64; the
/// data-sized work is the CPU kernel of ops/cpu/ on CPU, two matrix products
/// over all planes on other devices.
at::Tensor separable_spectral_crop(const at::Tensor& input,
                                   c10::ArrayRef<int64_t> kept_rows,
                                   const at::Tensor& row_mask,
                                   int64_t kept_columns,
                                   const at::Tensor& column_mask,
                                   int64_t output_width);

/// Whether CPU tensors take the fused CPU kernel (default) or the generic
/// batched-matmul path every other device takes. For tests, which check both
/// paths on CPU; returns the previous setting. Not thread-safe.
bool use_fused_cpu_kernel(bool enabled);

}  // namespace detail
}  // namespace diffstride
