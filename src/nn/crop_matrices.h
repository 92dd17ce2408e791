#pragma once

// The small matrices of a crop over two spatial axes, [A_r | A_i] and
// [G_r | G_i], in which the spectral crop op (ops/spectral_crop.h) takes the
// mask and crop of the spectral pooling layers (docs/layers.md, "How it is
// computed"). Internal to the library.

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace diffstride {
namespace detail {

/// What the crop keeps of one spatial axis' spectrum.
struct AxisCrop {
  /// The kept bins in FFT order, in the order they take in the cropped
  /// spectrum. On the last (real-FFT) axis they are always 0 .. K'-1.
  std::vector<int64_t> bins;
  /// One weight per kept bin (float64, on the host), or undefined for all
  /// ones. The result is differentiable in it.
  at::Tensor mask;
};

/// The small matrices [A_r | A_i] (H' x 2H) and [G_r | G_i] (W x 2W') of a
/// crop that keeps the rows `kept_rows` of an H-point spectrum weighted by
/// `row_weights` and the first `kept_columns` bins of a W-point real
/// spectrum weighted by `column_weights`, back to H' x W' samples (null
/// weights: ones), each matrix multiplied by its scale. Built in float64 on
/// the host (linear in the weights), returned in `options`' dtype on its
/// device: one conversion, one transfer (from pinned memory, without
/// blocking, to a GPU). The matrix of bins of weight 1 is cached per thread,
/// so weights of 0 and 1 only cost a copy.
std::tuple<at::Tensor, at::Tensor> weighted_separable_matrices(
    c10::ArrayRef<int64_t> kept_rows,
    const double* row_weights,
    int64_t height,
    int64_t kept_columns,
    const double* column_weights,
    int64_t width,
    int64_t output_width,
    const at::TensorOptions& options,
    double row_scale = 1.0,
    double column_scale = 1.0);

/// The small matrices of two axes, [A_r | A_i] (H' x 2H) and [G_r | G_i]
/// (W x 2W'), in `options`' dtype on its device: every H x W plane x maps to
/// y = A_r x G_r + A_i x G_i (docs/layers.md). The masks are constants.
std::tuple<at::Tensor, at::Tensor> separable_matrices(
    const AxisCrop& rows,
    const AxisCrop& columns,
    int64_t height,
    int64_t width,
    int64_t output_width,
    const at::TensorOptions& options);

}  // namespace detail
}  // namespace diffstride
