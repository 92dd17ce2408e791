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

// DiffStride over the last strides.numel() axes of x (1-D: N x C x L, 3-D:
// N x C x D x H x W; the 2-D case is diffstride above), strides used as given:
// rfftn over those axes; on each, the ramp mask with the layout of
// row_positions on every axis but the last and the frequencies on the last
// one, multiplied in over the whole spectrum; the crop (bins where that
// axis' mask is > 0); irfftn with its default output sizes.
inline torch::Tensor diffstride_nd(const torch::Tensor& x,
                                   const torch::Tensor& strides,
                                   double smoothness_factor,
                                   bool cropping) {
  const int64_t rank = strides.numel();
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < rank; ++i) {
    dims.push_back(x.dim() - rank + i);
  }
  const auto s = strides.to(torch::kCPU, torch::kDouble);
  const auto real = torch::TensorOptions(torch::kDouble);
  auto spectrum = torch::fft::rfftn(x, at::OptionalIntArrayRef(), dims);
  std::vector<torch::Tensor> masks;
  for (int64_t i = 0; i < rank; ++i) {
    const int64_t size = x.size(dims[i]);
    const auto target = torch::clamp_min(size / s[i], 2.0);
    const bool last = i == rank - 1;
    auto mask =
        last ? ramp(target / 2.0 + 1.0,
                    torch::arange(size / 2 + 1, real),
                    smoothness_factor)
             : ramp(target / 2.0, row_positions(size), smoothness_factor);
    std::vector<int64_t> shape(rank, 1);
    shape[i] = mask.numel();
    spectrum = spectrum * mask.view(shape).to(x.device(), x.scalar_type());
    masks.push_back(mask);
  }
  if (cropping) {
    for (int64_t i = 0; i < rank; ++i) {
      const auto kept =
          torch::nonzero(masks[i].detach() > 0).flatten().to(x.device());
      spectrum = spectrum.index_select(dims[i], kept);
    }
  }
  return torch::fft::irfftn(spectrum, at::OptionalIntArrayRef(), dims);
}

// FixedSpectralPooling over the last strides.size() axes: on every axis but
// the last, keep the t/2 lowest and t/2 highest bins of the full spectrum
// (t = floor(size/s) made even, at least 2); on the last, the first t/2 + 1
// bins of the half spectrum (t = max(floor(W/s), 2)); irfftn to those t.
inline torch::Tensor fixed_spectral_pooling_nd(const torch::Tensor& x,
                                               std::vector<double> strides) {
  const int64_t rank = static_cast<int64_t>(strides.size());
  std::vector<int64_t> dims, out;
  auto spectrum = torch::Tensor();
  for (int64_t i = 0; i < rank; ++i) {
    dims.push_back(x.dim() - rank + i);
  }
  spectrum = torch::fft::rfftn(x, at::OptionalIntArrayRef(), dims);
  for (int64_t i = 0; i < rank; ++i) {
    const int64_t size = x.size(dims[i]);
    int64_t t = static_cast<int64_t>(std::floor(size / strides[i]));
    if (i + 1 < rank) {
      t = std::max<int64_t>(t - t % 2, 2);
      spectrum = torch::cat({spectrum.slice(dims[i], 0, t / 2),
                             spectrum.slice(dims[i], size - t / 2, size)},
                            dims[i]);
    } else {
      t = std::max<int64_t>(t, 2);
      spectrum = spectrum.slice(dims[i], 0, t / 2 + 1);
    }
    out.push_back(t);
  }
  return torch::fft::irfftn(spectrum, out, dims);
}

}  // namespace diffstride_reference
