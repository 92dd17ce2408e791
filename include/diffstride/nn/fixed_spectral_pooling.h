#pragma once

// Spectral pooling with fixed (possibly fractional) strides: keep the lowest
// frequencies of the DFT over 1, 2 or 3 spatial axes. Semantics:
// docs/layers.md.

#include <diffstride/nn/stride_pair.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>

#include <cstddef>
#include <initializer_list>
#include <ostream>
#include <utility>
#include <vector>

namespace diffstride {

/// Options for the FixedSpectralPooling modules over `D` spatial axes
/// (`FixedSpectralPooling1d`, `FixedSpectralPooling` (2-D),
/// `FixedSpectralPooling3d`).
///
/// Example:
/// ```
/// FixedSpectralPooling pool(FixedSpectralPoolingOptions({2.0, 4.0}));
/// ```
template <size_t D>
struct FixedSpectralPoolingNdOptions {
  /* implicit */ FixedSpectralPoolingNdOptions(Strides<D> strides = 2.0)
      : strides_(strides) {}

  /// Strides, one per spatial axis, each >= 1. A single number sets them all.
  TORCH_ARG(Strides<D>, strides);
};

using FixedSpectralPooling1dOptions = FixedSpectralPoolingNdOptions<1>;
using FixedSpectralPooling2dOptions = FixedSpectralPoolingNdOptions<2>;
using FixedSpectralPooling3dOptions = FixedSpectralPoolingNdOptions<3>;
using FixedSpectralPoolingOptions = FixedSpectralPooling2dOptions;

namespace functional {

/// Options for `diffstride::functional::fixed_spectral_pooling`: one stride
/// per spatial axis of the input, or one for all of them. A module's options
/// convert to it.
struct FixedSpectralPoolingFuncOptions {
  /* implicit */ FixedSpectralPoolingFuncOptions(double stride = 2.0)
      : strides_({stride}) {}
  /* implicit */ FixedSpectralPoolingFuncOptions(std::vector<double> strides)
      : strides_(std::move(strides)) {}
  /* implicit */ FixedSpectralPoolingFuncOptions(
      std::initializer_list<double> strides)
      : strides_(strides) {}
  template <size_t D>
  /* implicit */ FixedSpectralPoolingFuncOptions(
      const FixedSpectralPoolingNdOptions<D>& options)
      : strides_(options.strides()->begin(), options.strides()->end()) {}

  TORCH_ARG(std::vector<double>, strides);
};

/// Fixed spectral pooling of an `N x C x L`, `N x C x H x W` or
/// `N x C x D x H x W` input. Output size per axis: the last axis
/// max(floor(W/s), 2); every other axis floor(size/s) rounded down to even,
/// at least 2.
at::Tensor fixed_spectral_pooling(
    const at::Tensor& input,
    const FixedSpectralPoolingFuncOptions& options = {});

}  // namespace functional

/// Fixed spectral pooling over `D` spatial axes.
template <size_t D>
class FixedSpectralPoolingNdImpl
    : public torch::nn::Cloneable<FixedSpectralPoolingNdImpl<D>> {
 public:
  explicit FixedSpectralPoolingNdImpl(
      const FixedSpectralPoolingNdOptions<D>& options_ = {});

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  at::Tensor forward(const at::Tensor& input);

  FixedSpectralPoolingNdOptions<D> options;
};

extern template class FixedSpectralPoolingNdImpl<1>;
extern template class FixedSpectralPoolingNdImpl<2>;
extern template class FixedSpectralPoolingNdImpl<3>;

using FixedSpectralPooling1dImpl = FixedSpectralPoolingNdImpl<1>;
TORCH_MODULE(FixedSpectralPooling1d);

using FixedSpectralPoolingImpl = FixedSpectralPoolingNdImpl<2>;
TORCH_MODULE(FixedSpectralPooling);
using FixedSpectralPooling2dImpl = FixedSpectralPoolingImpl;
using FixedSpectralPooling2d = FixedSpectralPooling;

using FixedSpectralPooling3dImpl = FixedSpectralPoolingNdImpl<3>;
TORCH_MODULE(FixedSpectralPooling3d);

}  // namespace diffstride
