#pragma once

// Plain subsampling: average pooling with a 1x1 window, integer strides and
// 'same' padding. Semantics: docs/layers.md.

#include <diffstride/nn/stride_pair.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>

#include <ostream>

namespace diffstride {

/// Options for the `SpatialPooling` module.
///
/// Example:
/// ```
/// SpatialPooling pool(SpatialPoolingOptions({2, 3}));
/// ```
struct SpatialPoolingOptions {
  /* implicit */ SpatialPoolingOptions(IntStridePair strides = 2)
      : strides_(strides) {}

  /// Strides (height, width), each >= 1. A single number sets both.
  TORCH_ARG(IntStridePair, strides);
};

namespace functional {

using SpatialPoolingFuncOptions = SpatialPoolingOptions;

/// Keeps every s-th row and column starting at 0: output
/// ceil(H/s_h) x ceil(W/s_w).
at::Tensor spatial_pooling(const at::Tensor& input,
                           const SpatialPoolingFuncOptions& options = {});

}  // namespace functional

class SpatialPoolingImpl : public torch::nn::Cloneable<SpatialPoolingImpl> {
 public:
  explicit SpatialPoolingImpl(const SpatialPoolingOptions& options_ = {});

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  at::Tensor forward(const at::Tensor& input);

  SpatialPoolingOptions options;
};

TORCH_MODULE(SpatialPooling);

}  // namespace diffstride
