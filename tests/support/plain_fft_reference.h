#pragma once

// The plain FFT formulation of the spectral layers (docs/layers.md),
// written independently of the library: full rfft2, masks built the way the
// TensorFlow reference builds them (centred positions, then ifftshift), index
// selection, irfft2. Tests compare the library against it; benchmarks use it
// as the baseline every port of the reference runs.

#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace diffstride_reference {

// The ramp mask clip((R + a - p) / R, 0, 1) at positions p.
inline torch::Tensor ramp(const torch::Tensor& a,
                          const torch::Tensor& positions,
                          double smoothness_factor) {
  return torch::clamp(
      (smoothness_factor + a - positions) / smoothness_factor, 0.0, 1.0);
}

// Mask positions of the rows of an FFT-ordered spectrum: the reference lays
// them out centred, [.., 1, 0, 0, 1, ..] for even sizes and [.., 1, 0, 1, ..]
// for odd ones, then moves the centre to index 0 (the documented symmetric odd
// layout uses ifftshift).
inline torch::Tensor row_positions(int64_t height) {
  const auto half = torch::arange(height / 2 + height % 2,
                                  torch::TensorOptions(torch::kDouble));
  const auto centred = torch::cat({half.slice(0, height % 2).flip({0}), half});
  return torch::fft::ifftshift(centred);
}

// DiffStride with the strides used as given (no floor, no clamp): `strides`
// is (2,) [height, width], differentiable. Computes in x's precision (masks
// built in float64, then cast), as a straightforward port of the reference
// does.
inline torch::Tensor diffstride(const torch::Tensor& x,
                                const torch::Tensor& strides,
                                double smoothness_factor,
                                bool cropping) {
  const int64_t height = x.size(2);
  const int64_t width = x.size(3);
  // Masks on the CPU in float64, then moved to x's device and precision.
  const auto s = strides.to(torch::kCPU, torch::kDouble);
  const auto target_height = torch::clamp_min(height / s[0], 2.0);
  const auto target_width = torch::clamp_min(width / s[1], 2.0);
  const auto vertical =
      ramp(target_height / 2.0, row_positions(height), smoothness_factor);
  const auto horizontal =
      ramp(target_width / 2.0 + 1.0,
           torch::arange(width / 2 + 1, torch::TensorOptions(torch::kDouble)),
           smoothness_factor);
  auto spectrum = torch::fft::rfft2(x);
  spectrum = spectrum * vertical.to(x.device(), x.scalar_type()).unsqueeze(1) *
             horizontal.to(x.device(), x.scalar_type()).unsqueeze(0);
  if (cropping) {
    const auto rows =
        torch::nonzero(vertical.detach() > 0).flatten().to(x.device());
    const auto columns =
        torch::nonzero(horizontal.detach() > 0).flatten().to(x.device());
    spectrum = spectrum.index_select(2, rows).index_select(3, columns);
  }
  return torch::fft::irfft2(spectrum);
}

// Same with plain numbers for strides.
inline torch::Tensor diffstride(const torch::Tensor& x,
                                double stride_height,
                                double stride_width,
                                double smoothness_factor,
                                bool cropping) {
  return diffstride(
      x,
      torch::tensor({stride_height, stride_width}, torch::kDouble),
      smoothness_factor,
      cropping);
}

// The floor of DiffStride step 1 (docs/layers.md) raises strides to: size /
// (size - R).
inline double stride_floor(int64_t size, double smoothness_factor) {
  return static_cast<double>(size) /
         (static_cast<double>(size) - smoothness_factor);
}

// FixedSpectralPooling (docs/layers.md), in x's precision.
inline torch::Tensor fixed_spectral_pooling(const torch::Tensor& x,
                                            double stride_height,
                                            double stride_width) {
  const int64_t height = x.size(2);
  const int64_t width = x.size(3);
  int64_t out_height = static_cast<int64_t>(std::floor(height / stride_height));
  out_height -= out_height % 2;
  out_height = std::max<int64_t>(out_height, 2);
  const int64_t out_width = std::max<int64_t>(
      static_cast<int64_t>(std::floor(width / stride_width)), 2);
  const auto spectrum = torch::fft::rfft2(x);
  const auto rows =
      torch::cat({spectrum.slice(2, 0, out_height / 2),
                  spectrum.slice(2, height - out_height / 2, height)},
                 2);
  const auto kept = rows.slice(3, 0, out_width / 2 + 1);
  return torch::fft::irfft2(kept, std::vector<int64_t>{out_height, out_width});
}

}  // namespace diffstride_reference
