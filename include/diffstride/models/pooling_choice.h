#pragma once

// The downsampling a network uses: strided convolutions, or one of the three
// pooling layers of this library (docs/resnet.md).

#include <diffstride/nn/diff_stride.h>
#include <diffstride/nn/stride_pair.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/any.h>

#include <string>
#include <vector>

namespace diffstride {

enum class Pooling {
  kNone,        // strided convolutions, no pooling layer ("none")
  kSpatial,     // SpatialPooling ("spatial")
  kSpectral,    // FixedSpectralPooling ("spectral")
  kDiffStride,  // DiffStride ("diffstride")
};

/// The command-line and config name of `pooling`.
std::string pooling_name(Pooling pooling);

/// The Pooling called `name`; an error listing the accepted names otherwise.
Pooling parse_pooling(const std::string& name);

/// The names parse_pooling accepts, in declaration order.
std::vector<std::string> pooling_names();

/// A one-dimensional pooling layer (DiffStride1d or FixedSpectralPooling1d,
/// stride `stride`) applied along the last axis of N x C x 1 x L tensors,
/// the layout of the waveform ResNet (docs/resnet.md, "Waveforms").
class AlongTimeImpl : public torch::nn::Cloneable<AlongTimeImpl> {
 public:
  AlongTimeImpl(Pooling pooling,
                double stride,
                DiffStrideOptions diffstride_options);
  void reset() override;
  at::Tensor forward(const at::Tensor& input);

  Pooling pooling;
  double stride;
  DiffStrideOptions diffstride_options;
  torch::nn::AnyModule layer;
  /// The layer, when it is a DiffStride1d (else empty).
  DiffStride1d diffstride{nullptr};
};
TORCH_MODULE(AlongTime);

/// A pooling layer of kind `pooling` (not kNone) with the given strides;
/// `diffstride_options` supplies DiffStride's other options (its strides are
/// replaced). Spatial pooling rounds fractional strides up. With
/// `spatial_dims` 1 the layer pools N x C x 1 x L tensors along L by the
/// width stride: SpatialPooling (1, s), or an AlongTime layer.
torch::nn::AnyModule make_pooling_layer(
    Pooling pooling,
    StridePair strides,
    const DiffStrideOptions& diffstride_options = {},
    int64_t spatial_dims = 2);

}  // namespace diffstride
