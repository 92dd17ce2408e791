// Crops applied to data (nn/cropping.h).

#include "nn/cropping.h"

#include "nn/host_constants.h"

#include "ops/spectral_crop.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace diffstride {
namespace detail {

namespace {

// float16 and bfloat16 data is computed in float32 (products accumulate in
// float32; the result is rounded to the input's dtype once, at the end), and
// the output keeps the input's memory format.
template <typename Compute>
at::Tensor in_compute_precision(const at::Tensor& input,
                                const Compute& compute) {
  const auto type = input.scalar_type();
  const bool reduced = ops::is_reduced_precision(type);
  const auto output = compute(reduced ? input.to(at::kFloat) : input);
  return (reduced ? output.to(type) : output)
      .contiguous(input.suggest_memory_format());
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
at::Tensor fft_crop(const at::Tensor& data,
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
        const auto bins =
            host_constant([&] { return at::tensor(crop.bins, at::kLong); });
        spectrum = spectrum.index_select(dim, bins.to(data.device()));
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

at::TensorOptions compute_options(const at::Tensor& input) {
  return input.options().dtype(ops::is_reduced_precision(input.scalar_type())
                                   ? at::kFloat
                                   : input.scalar_type());
}

at::Tensor crop_with_matrices(const at::Tensor& input,
                              const at::Tensor& row_matrix,
                              const at::Tensor& column_matrix) {
  TORCH_INTERNAL_ASSERT(input.dim() == 4);
  // The op takes float16 and bfloat16 data itself (ops/spectral_crop.h),
  // so that a device kernel can read it as it is, and returns the input's
  // memory format.
  return ops::spectral_crop(input, row_matrix, column_matrix);
}

at::Tensor crop_with_ffts(const at::Tensor& input,
                          c10::ArrayRef<AxisCrop> crops,
                          int64_t last_output_size) {
  const int64_t rank = static_cast<int64_t>(crops.size());
  TORCH_INTERNAL_ASSERT(rank >= 1 && rank <= 3 && input.dim() == rank + 2);
  for (const auto& crop : crops) {
    TORCH_INTERNAL_ASSERT(!crop.bins.empty());
    TORCH_INTERNAL_ASSERT(
        !crop.mask.defined() ||
        (crop.mask.is_cpu() &&
         crop.mask.numel() == static_cast<int64_t>(crop.bins.size())));
  }
  const int64_t kept_last = static_cast<int64_t>(crops.back().bins.size());
  TORCH_INTERNAL_ASSERT(kept_last == last_output_size / 2 + 1 &&
                        kept_last <= input.size(-1) / 2 + 1);
  return in_compute_precision(input, [&](const at::Tensor& data) {
    return fft_crop(data, crops, last_output_size);
  });
}

}  // namespace detail
}  // namespace diffstride
