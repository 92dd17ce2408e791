#pragma once

// DiffStride: spectral pooling whose strides are learned by gradient descent
// (Riad et al., "Learning Strides in Convolutional Neural Networks", ICLR
// 2022), over 1, 2 or 3 spatial axes. Semantics: docs/layers.md.

#include <diffstride/nn/stride_pair.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>

#include <array>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <tuple>
#include <vector>

namespace diffstride {

/// Options for the DiffStride modules over `D` spatial axes (`DiffStride1d`,
/// `DiffStride` (2-D), `DiffStride3d`).
///
/// Example:
/// ```
/// DiffStride pool(DiffStrideOptions().strides({2.0, 3.0}).cropping(true));
/// DiffStride1d audio(DiffStride1dOptions().strides(4.0));
/// ```
template <size_t D>
struct DiffStrideNdOptions {
  /// Initial strides, one per spatial axis in the input's order; each must be
  /// >= 1. A single number sets them all.
  TORCH_ARG(Strides<D>, strides) = 2.0;
  /// R: width of the ramp of the frequency mask, in bins; must be > 0.
  TORCH_ARG(double, smoothness_factor) = 4.0;
  /// Keep only the frequencies the mask lets through (the downsampling).
  /// Without it the output keeps the input's size on every axis but the last.
  TORCH_ARG(bool, cropping) = true;
  /// Whether the strides are learned.
  TORCH_ARG(bool, trainable) = true;
  /// One stride for every axis (all inits must then be equal).
  TORCH_ARG(bool, shared_stride) = false;
  /// Smallest stride the constraint allows (>= 1).
  TORCH_ARG(double, lower_limit_stride) = 1.0;
  /// Largest stride the constraint allows (none: unbounded).
  TORCH_ARG(std::optional<double>, upper_limit_stride) = std::nullopt;
};

using DiffStride1dOptions = DiffStrideNdOptions<1>;
using DiffStride2dOptions = DiffStrideNdOptions<2>;
using DiffStride3dOptions = DiffStrideNdOptions<3>;
/// The 2-D layer's options, the library's main layer.
using DiffStrideOptions = DiffStride2dOptions;

namespace functional {

/// Options for `diffstride::functional::diffstride`.
struct DiffStrideFuncOptions {
  TORCH_ARG(double, smoothness_factor) = 4.0;
  TORCH_ARG(bool, cropping) = true;
};

/// DiffStride of `input` (float16, bfloat16, float32 or float64) over its
/// spatial axes: `N x C x L`, `N x C x H x W` or `N x C x D x H x W`, with
/// `strides` a float tensor of shape (number of spatial axes,) or (1,)
/// [shared]. Each stride is first raised to the floor `size / (size - R)` of
/// its axis with the gradient passed straight through; `strides` itself is
/// never modified. Differentiable in `input` and `strides`.
at::Tensor diffstride(const at::Tensor& input,
                      const at::Tensor& strides,
                      const DiffStrideFuncOptions& options = {});

/// The 2-D layer at fixed strides as its two small matrices, for inputs of
/// spatial size `size` (H, W): [A_r | A_i] (H' x 2H) and [G_r | G_i]
/// (W x 2W'), float64, such that every plane x maps to y = A_r x G_r +
/// A_i x G_i (docs/layers.md). What freezing a trained layer for deployment
/// needs; differentiable in `strides` like the layer.
std::tuple<at::Tensor, at::Tensor> diffstride_matrices(
    at::IntArrayRef size,
    const at::Tensor& strides,
    const DiffStrideFuncOptions& options = {});

}  // namespace functional

/// A pooling layer with learnable strides over `D` spatial axes. Its
/// parameter `strides` (float32, shape (D,), or (1,) when shared) is clamped
/// in place at every forward, as the reference does, so that the gradient
/// always reaches it; call `constrain_strides()` after each optimiser step.
/// Forward calls from several threads at once are safe: the clamp is a
/// critical section, and once done for an input size it leaves the strides
/// as they are.
template <size_t D>
class DiffStrideNdImpl : public torch::nn::Cloneable<DiffStrideNdImpl<D>> {
 public:
  explicit DiffStrideNdImpl(const DiffStrideNdOptions<D>& options_ = {});

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  at::Tensor forward(const at::Tensor& input);

  /// Clamps the strides to [max(lower, size/(size-R)), upper] in place, with
  /// the spatial size of the last forward's input (before any forward: to
  /// [lower, upper]). Records no gradient.
  void constrain_strides();

  /// The current strides, one per axis, as plain numbers, for logging.
  std::array<double, D> current_strides() const;

  /// The options with which this module was constructed.
  DiffStrideNdOptions<D> options;

  /// The learnable strides.
  at::Tensor strides;

 private:
  // constrain_strides() with constrain_mutex_ held; returns the strides'
  // values after it (none for strides without values).
  std::vector<double> constrain_strides_locked();

  // Spatial size of the last input seen, for the constraint's floor.
  std::optional<std::array<int64_t, D>> last_input_size_;
  // Guards last_input_size_ and the clamp's read-modify-write of `strides`
  // (shared by clones, which is harmless).
  std::shared_ptr<std::mutex> constrain_mutex_ = std::make_shared<std::mutex>();
};

extern template class DiffStrideNdImpl<1>;
extern template class DiffStrideNdImpl<2>;
extern template class DiffStrideNdImpl<3>;

/// DiffStride over the length of `N x C x L` inputs (audio, sequences).
using DiffStride1dImpl = DiffStrideNdImpl<1>;
TORCH_MODULE(DiffStride1d);

/// DiffStride over height and width of `N x C x H x W` inputs (images).
using DiffStrideImpl = DiffStrideNdImpl<2>;
TORCH_MODULE(DiffStride);
using DiffStride2dImpl = DiffStrideImpl;
using DiffStride2d = DiffStride;

/// DiffStride over depth, height and width of `N x C x D x H x W` inputs
/// (volumes, video).
using DiffStride3dImpl = DiffStrideNdImpl<3>;
TORCH_MODULE(DiffStride3d);

}  // namespace diffstride
