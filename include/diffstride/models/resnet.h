#pragma once

// The pre-activation ResNet family of docs/resnet.md with pluggable
// downsampling, its two factories, and what training and the summary need
// of it: the DiffStride layers in forward order and a traced forward pass.

#include <diffstride/models/pooling_choice.h>
#include <diffstride/models/residual_layer.h>
#include <diffstride/nn/stride_pair.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <array>
#include <ostream>
#include <string>
#include <vector>

namespace diffstride {

/// Options for `ResNet`. `filters` and `strides` have one entry per stage:
/// stage 0 is the stem, every further stage a block of residual layers.
struct ResNetOptions {
  ResNetOptions(std::vector<int64_t> filters, std::vector<StridePair> strides)
      : filters_(std::move(filters)), strides_(std::move(strides)) {}

  TORCH_ARG(std::vector<int64_t>, filters);
  /// One number or a (height, width) pair per stage.
  TORCH_ARG(std::vector<StridePair>, strides);
  TORCH_ARG(int64_t, layers_per_block) = 2;
  /// Blocks (0 = the first block after the stem) whose first layer is an
  /// identity layer rather than a projecting one.
  TORCH_ARG(std::vector<int64_t>, id_only) = {};
  TORCH_ARG(int64_t, kernel_size) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(Pooling, pooling) = Pooling::kNone;
  /// DiffStride's options other than the strides (smoothness, limits...).
  TORCH_ARG(DiffStrideOptions, diffstride) = {};
  /// 2: images. 1: waveforms, N x C x L (or N x C x 1 x L): 1 x k kernels,
  /// each stage's stride along time only, DiffStride1d and
  /// FixedSpectralPooling1d as the pooling layers (docs/resnet.md,
  /// "Waveforms").
  TORCH_ARG(int64_t, spatial_dims) = 2;
};

/// The largest network ResNet builds: 2^28 parameters (1 GiB in float32)
/// and 10,000 residual layers. Options beyond them (a mistyped filter
/// count, say) are an error before anything is allocated.
constexpr double kMaxResNetParameters = 1 << 28;
constexpr int64_t kMaxResNetLayers = 10000;

/// The parameters of the network `options` describe, counted from the
/// options alone: convolutions, projections, batch norms and the dense
/// head (DiffStride's few strides aside).
double resnet_parameter_count(const ResNetOptions& options);

/// resnet18: filters 64,64,128,256,512, strides 1,1,2,2,2, id_only {0},
/// 2 layers per block, 3x3 kernels.
ResNetOptions resnet18_options();
/// resnet56: filters 16,16,32,64, strides 1,1,2,2, 9 layers per block.
ResNetOptions resnet56_options();

/// resnet1d, for raw waveforms: resnet18's layout in one dimension with
/// kernels of 9 samples: filters 32,32,64,128,256, strides 4,1,4,4,4 (a
/// second at 16 kHz ends as 63 steps), id_only {0}, 2 layers per block.
ResNetOptions resnet1d_options();
/// The names of the factories above, in declaration order.
std::vector<std::string> resnet_factory_names();
/// The options of the factory called `name` (one of resnet_factory_names());
/// an error listing the accepted names otherwise.
ResNetOptions resnet_options(const std::string& name);

/// Stem: conv_k with stride strides[0] (stride 1 followed by the pooling
/// layer with strides[0] when a pooling choice is set). Blocks as in
/// ResidualLayer. Head: bn, relu, global average pooling, dense with bias.
class ResNetImpl : public torch::nn::Cloneable<ResNetImpl> {
 public:
  explicit ResNetImpl(const ResNetOptions& options_);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// Logits (N x num_classes) of an N x in_channels x H x W batch (a
  /// waveform model: N x in_channels x L, or x 1 x L).
  at::Tensor forward(const at::Tensor& input);

  /// The same, recording multiply-adds, DiffStride output sizes and the
  /// output shape of every stage into `trace` and `stage_shapes`.
  at::Tensor forward_traced(const at::Tensor& input,
                            ForwardTrace* trace,
                            std::vector<std::vector<int64_t>>* stage_shapes);

  /// The DiffStride layers in forward order (empty unless pooling is
  /// kDiffStride and the model is 2-D).
  std::vector<DiffStride> diffstride_layers() const;

  /// The DiffStride1d layers of a waveform model, in forward order.
  std::vector<DiffStride1d> diffstride1d_layers() const;

  /// The complexity penalty of docs/resnet.md over the model's DiffStride
  /// layers (a waveform model's: prod 1 / s over its one axis).
  at::Tensor complexity_penalty() const;

  /// Their current strides (height, width), in forward order; a waveform
  /// model's are (1, s).
  std::vector<std::array<double, 2>> current_strides() const;

  /// Applies every DiffStride layer's stride constraint; call after each
  /// optimiser step.
  void constrain_strides();

  /// Number of trainable parameter elements.
  int64_t trainable_parameter_count() const;

  ResNetOptions options;

  torch::nn::Conv2d stem{nullptr};
  torch::nn::AnyModule stem_pooling;
  std::vector<std::vector<ResidualLayer>> blocks;
  torch::nn::BatchNorm2d head_bn{nullptr};
  torch::nn::Linear fc{nullptr};
};

TORCH_MODULE(ResNet);

}  // namespace diffstride
