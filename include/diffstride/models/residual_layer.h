#pragma once

// The pre-activation residual layer of docs/resnet.md, with pluggable
// downsampling.

#include <diffstride/models/pooling_choice.h>
#include <diffstride/nn/stride_pair.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/conv.h>

#include <array>
#include <ostream>
#include <vector>

namespace diffstride {

/// Options for `ResidualLayer`.
struct ResidualLayerOptions {
  ResidualLayerOptions(int64_t in_channels, int64_t filters)
      : in_channels_(in_channels), filters_(filters) {}

  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, filters);
  /// Downsampling of a projecting layer; identity layers ignore it.
  TORCH_ARG(StridePair, strides) = 1.0;
  /// A projecting layer downsamples and has a 1x1 convolution on its
  /// shortcut; an identity layer has neither.
  TORCH_ARG(bool, project) = false;
  TORCH_ARG(int64_t, kernel_size) = 3;
  TORCH_ARG(Pooling, pooling) = Pooling::kNone;
  /// DiffStride's options other than the strides, when pooling is kDiffStride.
  TORCH_ARG(DiffStrideOptions, diffstride) = {};
  /// 2: images (N x C x H x W). 1: waveforms as N x C x 1 x L: 1 x k
  /// kernels, downsampling by the width stride along L only, 1-D pooling
  /// layers (docs/resnet.md, "Waveforms").
  TORCH_ARG(int64_t, spatial_dims) = 2;
};

/// What a traced forward pass records (for model summaries): multiply-adds
/// of the convolutions and dense layers per example, and the output size of
/// every DiffStride layer in forward order. Pooling layers' own arithmetic is
/// not counted.
struct ForwardTrace {
  int64_t multiply_adds = 0;
  std::vector<std::array<int64_t, 2>> diffstride_outputs;
};

/// h = conv_k,s(relu(bn0(x))), then the pooling layer (projecting layers with
/// a pooling choice), then h = conv_k(relu(bn1(h))). The shortcut of a
/// projecting layer is a 1x1 convolution of relu(bn0(x)) (the pre-activated
/// input, as in pre-activation ResNets) followed by the same pooling
/// instance, so both paths share its strides; otherwise it is x. Output
/// h + shortcut. Convolutions are strided only without a pooling layer.
class ResidualLayerImpl : public torch::nn::Cloneable<ResidualLayerImpl> {
 public:
  explicit ResidualLayerImpl(const ResidualLayerOptions& options_);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  at::Tensor forward(const at::Tensor& input);
  /// The same, recording into `trace` when it is not null.
  at::Tensor forward_traced(const at::Tensor& input, ForwardTrace* trace);

  /// The layer's DiffStride, or an empty holder when it has none.
  DiffStride diffstride() const;
  /// The layer's DiffStride1d (waveforms), or an empty holder.
  DiffStride1d diffstride1d() const;

  ResidualLayerOptions options;

  torch::nn::BatchNorm2d bn0{nullptr}, bn1{nullptr};
  torch::nn::Conv2d conv0{nullptr}, conv1{nullptr}, shortcut{nullptr};
  /// Empty unless the layer projects with a pooling choice.
  torch::nn::AnyModule pooling;
};

TORCH_MODULE(ResidualLayer);

/// The initialisation and batch-norm settings, applied to a
/// freshly built module: He-normal convolutions (a normal truncated at two
/// standard deviations, rescaled to std sqrt(2 / fan_in), as Keras does),
/// BatchNorm2d with momentum 0.1 (Keras 0.9) and epsilon 1e-5.
void he_normal_(at::Tensor weight);
torch::nn::BatchNorm2d make_batch_norm(int64_t channels);
/// A bias-free convolution with "same" padding, He-normal initialised;
/// with `spatial_dims` 1 its kernel is 1 x kernel_size and it strides along
/// the width only (stride's second number).
torch::nn::Conv2d make_conv(int64_t in_channels,
                            int64_t out_channels,
                            int64_t kernel_size,
                            IntStridePair stride,
                            int64_t spatial_dims = 2);

/// The stage strides as convolution strides: strided convolutions (pooling
/// kNone) need whole numbers >= 1; an error otherwise.
IntStridePair whole_strides(StridePair strides);

/// pooling(input), or input when `pooling` is empty; adds the output size to
/// `trace` (when not null) if `kind` is DiffStride.
at::Tensor traced_pooling(torch::nn::AnyModule& pooling,
                          Pooling kind,
                          const at::Tensor& input,
                          ForwardTrace* trace);

/// conv(input), adding its multiply-adds to `trace` when not null.
at::Tensor traced(torch::nn::Conv2d& conv,
                  const at::Tensor& input,
                  ForwardTrace* trace);

}  // namespace diffstride
