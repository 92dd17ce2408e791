#pragma once

// DiffStride: spectral pooling whose strides are learned by gradient descent
// (Riad et al., "Learning Strides in Convolutional Neural Networks", ICLR
// 2022). Semantics: docs/layers.md.

#include <diffstride/nn/stride_pair.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>

#include <array>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>

namespace diffstride {

/// Options for the `DiffStride` module.
///
/// Example:
/// ```
/// DiffStride pool(DiffStrideOptions().strides({2.0, 3.0}).cropping(true));
/// ```
struct DiffStrideOptions {
  /// Initial strides (height, width); each must be >= 1. A single number sets
  /// both.
  TORCH_ARG(StridePair, strides) = 2.0;
  /// R: width of the ramp of the frequency mask, in bins; must be > 0.
  TORCH_ARG(double, smoothness_factor) = 4.0;
  /// Keep only the frequencies the mask lets through (the downsampling).
  /// Without it the output keeps the input's height.
  TORCH_ARG(bool, cropping) = true;
  /// Whether the strides are learned.
  TORCH_ARG(bool, trainable) = true;
  /// One stride for both axes (both inits must then be equal).
  TORCH_ARG(bool, shared_stride) = false;
  /// Smallest stride the constraint allows (>= 1).
  TORCH_ARG(double, lower_limit_stride) = 1.0;
  /// Largest stride the constraint allows (none: unbounded).
  TORCH_ARG(std::optional<double>, upper_limit_stride) = std::nullopt;
};

namespace functional {

/// Options for `diffstride::functional::diffstride`.
struct DiffStrideFuncOptions {
  TORCH_ARG(double, smoothness_factor) = 4.0;
  TORCH_ARG(bool, cropping) = true;
};

/// DiffStride of a 4-D NCHW `input` (float32 or float64) with `strides` a
/// float tensor of shape (2,) [height, width] or (1,) [shared]. Each stride is
/// first raised to the floor `size / (size - R)` with the gradient passed
/// straight through; `strides` itself is never modified. Differentiable in
/// `input` and `strides`.
at::Tensor diffstride(const at::Tensor& input,
                      const at::Tensor& strides,
                      const DiffStrideFuncOptions& options = {});

}  // namespace functional

/// A pooling layer with learnable strides. Its parameter `strides` (float32,
/// shape (2,), or (1,) when shared) is clamped in place at every forward, as
/// the reference does, so that the gradient always reaches it; call
/// `constrain_strides()` after each optimiser step. Forward calls from several
/// threads at once are safe: the clamp is a critical section, and once done
/// for an input size it leaves the strides as they are.
class DiffStrideImpl : public torch::nn::Cloneable<DiffStrideImpl> {
 public:
  explicit DiffStrideImpl(const DiffStrideOptions& options_ = {});

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  at::Tensor forward(const at::Tensor& input);

  /// Clamps the strides to [max(lower, size/(size-R)), upper] in place, with
  /// the spatial size of the last forward's input (before any forward: to
  /// [lower, upper]). Records no gradient.
  void constrain_strides();

  /// The current strides (height, width) as plain numbers, for logging.
  std::array<double, 2> current_strides() const;

  /// The options with which this module was constructed.
  DiffStrideOptions options;

  /// The learnable strides.
  at::Tensor strides;

 private:
  // constrain_strides() with constrain_mutex_ held.
  void constrain_strides_locked();

  // Spatial size (H, W) of the last input seen, for the constraint's floor.
  std::optional<std::array<int64_t, 2>> last_input_size_;
  // Guards last_input_size_ and the clamp's read-modify-write of `strides`
  // (shared by clones, which is harmless).
  std::shared_ptr<std::mutex> constrain_mutex_ = std::make_shared<std::mutex>();
};

TORCH_MODULE(DiffStride);

}  // namespace diffstride
