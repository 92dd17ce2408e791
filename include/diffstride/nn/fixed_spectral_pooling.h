#pragma once

// Spectral pooling with fixed (possibly fractional) strides: keep the lowest
// frequencies of the 2-D DFT. Semantics: docs/layers.md.

#include <diffstride/nn/stride_pair.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>

#include <ostream>

namespace diffstride {

/// Options for the `FixedSpectralPooling` module.
///
/// Example:
/// ```
/// FixedSpectralPooling pool(FixedSpectralPoolingOptions({2.0, 4.0}));
/// ```
struct FixedSpectralPoolingOptions {
  /* implicit */ FixedSpectralPoolingOptions(StridePair strides = 2.0)
      : strides_(strides) {}

  /// Strides (height, width), each >= 1. A single number sets both.
  TORCH_ARG(StridePair, strides);
};

namespace functional {

using FixedSpectralPoolingFuncOptions = FixedSpectralPoolingOptions;

/// Output size: t_h = floor(H/s_h) rounded down to even, at least 2;
/// t_w = max(floor(W/s_w), 2).
at::Tensor fixed_spectral_pooling(
    const at::Tensor& input,
    const FixedSpectralPoolingFuncOptions& options = {});

}  // namespace functional

class FixedSpectralPoolingImpl
    : public torch::nn::Cloneable<FixedSpectralPoolingImpl> {
 public:
  explicit FixedSpectralPoolingImpl(
      const FixedSpectralPoolingOptions& options_ = {});

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  at::Tensor forward(const at::Tensor& input);

  FixedSpectralPoolingOptions options;
};

TORCH_MODULE(FixedSpectralPooling);

}  // namespace diffstride
