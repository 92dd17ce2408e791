#include "nn/spectral_crop.h"

#include "ops/spectral_crop.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

namespace diffstride {
namespace detail {

namespace {

constexpr double kTwoPi = 6.28318530717958647692528676655900577;

// cos and sin of 2*pi*(a_i * b_j mod n)/n for every pair: the integer
// reduction keeps each angle exact, so large products lose no precision.
std::pair<at::Tensor, at::Tensor> unit_circle(const at::Tensor& a,
                                              const at::Tensor& b,
                                              int64_t n) {
  const auto turns = at::remainder(a.unsqueeze(1) * b.unsqueeze(0), n);
  const auto angle = turns.to(at::kDouble) * (kTwoPi / static_cast<double>(n));
  return {angle.cos(), angle.sin()};
}

// Row pipeline (complex, along H): A[j, n] = 1/H' sum_q m_q e^{2 pi i j q/H'}
// e^{-2 pi i k_q n/H}, as [A_r | A_i] (H' x 2H).
at::Tensor row_matrix(c10::ArrayRef<int64_t> kept_rows,
                      const at::Tensor& mask,
                      int64_t height) {
  const auto index = at::TensorOptions().dtype(at::kLong);
  const int64_t out_height = static_cast<int64_t>(kept_rows.size());
  const auto frequencies = at::tensor(kept_rows, index);
  const auto out_positions = at::arange(out_height, index);
  auto [cos_out, sin_out] =
      unit_circle(out_positions, out_positions, out_height);
  const auto [cos_in, sin_in] =
      unit_circle(frequencies, at::arange(height, index), height);
  if (mask.defined()) {
    cos_out = cos_out * mask.unsqueeze(0);
    sin_out = sin_out * mask.unsqueeze(0);
  }
  const double scale = 1.0 / static_cast<double>(out_height);
  const auto real = (cos_out.mm(cos_in) + sin_out.mm(sin_in)) * scale;
  const auto imag = (sin_out.mm(cos_in) - cos_out.mm(sin_in)) * scale;
  return at::cat({real, imag}, 1);
}

// Column pipeline (real to real, along W): rfft, mask, crop to the first K'
// bins, irfft to W' samples. A C2R transform counts bins 1..W'/2-1 twice
// (they stand for their conjugates too) and keeps only the real part of the
// DC and Nyquist bins, which the weights c_p below and the sine terms encode:
//   G_r[n, w] =  1/W' sum_p c_p m_p cos(2 pi p (w/W' - n/W))
//   G_i[n, w] = -1/W' sum_p c_p m_p sin(2 pi p (w/W' - n/W)),
// as [G_r | G_i] (W x 2W').
at::Tensor column_matrix(int64_t kept_columns,
                         const at::Tensor& mask,
                         int64_t width,
                         int64_t out_width) {
  const auto index = at::TensorOptions().dtype(at::kLong);
  const auto bins = at::arange(kept_columns, index);
  const auto [cos_in, sin_in] =
      unit_circle(bins, at::arange(width, index), width);
  auto [cos_out, sin_out] =
      unit_circle(bins, at::arange(out_width, index), out_width);
  auto weights = at::full({kept_columns}, 2.0, index.dtype(at::kDouble));
  weights[0] = 1.0;
  if (out_width % 2 == 0 && out_width / 2 < kept_columns) {
    weights[out_width / 2] = 1.0;
  }
  if (mask.defined()) {
    weights = weights * mask;
  }
  cos_out = cos_out * weights.unsqueeze(1);
  sin_out = sin_out * weights.unsqueeze(1);
  const double scale = 1.0 / static_cast<double>(out_width);
  const auto real = (cos_in.t().mm(cos_out) + sin_in.t().mm(sin_out)) * scale;
  const auto imag = (sin_in.t().mm(cos_out) - cos_in.t().mm(sin_out)) * scale;
  return at::cat({real, imag}, 1);
}

// The data-sized work of two axes is the op's (docs/layers.md): the small
// matrices, copied once each to the data's dtype and device (autograd
// carries the stride gradient back through both).
at::Tensor separable_spectral_crop(const at::Tensor& data,
                                   const AxisCrop& rows,
                                   const AxisCrop& columns,
                                   int64_t output_width) {
  const auto on_device = data.options();
  const auto matrices = separable_matrices(
      rows, columns, data.size(2), data.size(3), output_width);
  return ops::spectral_crop(data,
                            std::get<0>(matrices).to(on_device),
                            std::get<1>(matrices).to(on_device));
}

// The layers' inverse transform reads only the real part of the last axis'
// DC and Nyquist bins once the other axes are transformed back
// (docs/layers.md, "How it is computed"), which is what a C2R transform of a
// Hermitian spectrum does. A cropped and masked spectrum is not Hermitian on
// those edge planes, and C2R transforms differ on such input (cuFFT may read
// the parts it should ignore). Replacing each edge plane E by its Hermitian
// part (E + conj(E at -k)) / 2 leaves the layers' map unchanged and makes
// every backend compute it.
at::Tensor hermitian_edges(const at::Tensor& spectrum,
                           c10::ArrayRef<int64_t> two_sided_dims,
                           int64_t last_dim,
                           int64_t last_output_size) {
  const auto hermitian_part = [&](const at::Tensor& edge) {
    auto mirrored = edge.conj();
    if (!two_sided_dims.empty()) {
      // Index j -> (n - j) mod n on every two-sided axis: flip, then roll by 1.
      mirrored = mirrored.flip(two_sided_dims)
                     .roll(std::vector<int64_t>(two_sided_dims.size(), 1),
                           two_sided_dims);
    }
    return (edge + mirrored) * 0.5;
  };
  const int64_t kept = spectrum.size(last_dim);
  std::vector<at::Tensor> pieces = {
      hermitian_part(spectrum.narrow(last_dim, 0, 1))};
  if (last_output_size % 2 == 0) {
    pieces.push_back(spectrum.narrow(last_dim, 1, kept - 2));
    pieces.push_back(hermitian_part(spectrum.narrow(last_dim, kept - 1, 1)));
  } else {
    pieces.push_back(spectrum.narrow(last_dim, 1, kept - 1));
  }
  return at::cat(pieces, last_dim);
}

// The FFT formulation itself, for one or three axes: there the separable
// matrices would be dense L x L' blocks (16000 x 4000 for one second of
// audio at stride 4), far costlier than the transforms. The crop comes
// before the mask, so only kept bins are multiplied; the masks' outer product
// is formed on the host and copied once.
at::Tensor fft_spectral_crop(const at::Tensor& data,
                             c10::ArrayRef<AxisCrop> crops,
                             int64_t last_output_size) {
  const int64_t rank = static_cast<int64_t>(crops.size());
  const int64_t first = data.dim() - rank;
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < rank; ++i) {
    dims.push_back(first + i);
  }
  auto spectrum = at::fft_rfftn(data, at::OptionalIntArrayRef(), dims);
  std::vector<int64_t> output_sizes;
  at::Tensor mask;
  for (int64_t i = 0; i < rank; ++i) {
    const auto& crop = crops[i];
    const int64_t kept = static_cast<int64_t>(crop.bins.size());
    const int64_t dim = dims[i];
    if (i + 1 < rank) {
      if (kept != spectrum.size(dim)) {
        spectrum = spectrum.index_select(
            dim, at::tensor(crop.bins, at::kLong).to(data.device()));
      }
      output_sizes.push_back(kept);
    } else {
      spectrum = spectrum.narrow(dim, 0, kept);
      output_sizes.push_back(last_output_size);
    }
    if (crop.mask.defined()) {
      std::vector<int64_t> shape(rank, 1);
      shape[i] = kept;
      const auto axis_mask = crop.mask.view(shape);
      mask = mask.defined() ? mask * axis_mask : axis_mask;
    }
  }
  if (mask.defined()) {
    spectrum = spectrum * mask.to(data.options());
  }
  spectrum = hermitian_edges(spectrum,
                             c10::IntArrayRef(dims).slice(0, rank - 1),
                             dims.back(),
                             last_output_size);
  return at::fft_irfftn(spectrum, output_sizes, dims);
}

}  // namespace

// The map is linear and separable (docs/layers.md): y = Re(A) x G_r +
// Im(A) x G_i, with A (H' x H, complex) the row pipeline IDFT * crop *
// diag(mask) * DFT and G_r, G_i (W x W') the real-to-real column pipeline
// applied to unit rows and to i times their spectra; built on the host in
// float64.
std::tuple<at::Tensor, at::Tensor> separable_matrices(const AxisCrop& rows,
                                                      const AxisCrop& columns,
                                                      int64_t height,
                                                      int64_t width,
                                                      int64_t output_width) {
  return {row_matrix(rows.bins, rows.mask, height),
          column_matrix(static_cast<int64_t>(columns.bins.size()),
                        columns.mask,
                        width,
                        output_width)};
}

at::Tensor spectral_crop(const at::Tensor& input,
                         c10::ArrayRef<AxisCrop> crops,
                         int64_t last_output_size) {
  const int64_t rank = static_cast<int64_t>(crops.size());
  TORCH_INTERNAL_ASSERT(rank >= 1 && rank <= 3 && input.dim() == rank + 2);
  for (int64_t i = 0; i < rank; ++i) {
    const auto& crop = crops[i];
    TORCH_INTERNAL_ASSERT(!crop.bins.empty());
    TORCH_INTERNAL_ASSERT(
        !crop.mask.defined() ||
        (crop.mask.is_cpu() &&
         crop.mask.numel() == static_cast<int64_t>(crop.bins.size())));
  }
  const int64_t kept_last = static_cast<int64_t>(crops.back().bins.size());
  TORCH_INTERNAL_ASSERT(kept_last == last_output_size / 2 + 1 &&
                        kept_last <= input.size(-1) / 2 + 1);
  // float16 and bfloat16 data is computed in float32 (products accumulate in
  // float32; the result is rounded to the input's dtype once, at the end).
  const auto type = input.scalar_type();
  const bool reduced = ops::is_reduced_precision(type);
  const auto data = reduced ? input.to(at::kFloat) : input;
  const auto output =
      rank == 2
          ? separable_spectral_crop(data, crops[0], crops[1], last_output_size)
          : fft_spectral_crop(data, crops, last_output_size);
  return (reduced ? output.to(type) : output)
      .contiguous(input.suggest_memory_format());
}

}  // namespace detail
}  // namespace diffstride
