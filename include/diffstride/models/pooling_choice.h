#pragma once

// The downsampling a network uses: strided convolutions, or one of the three
// pooling layers of this library (docs/resnet.md).

#include <diffstride/nn/diff_stride.h>
#include <diffstride/nn/stride_pair.h>
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

/// A pooling layer of kind `pooling` (not kNone) with the given strides;
/// `diffstride_options` supplies DiffStride's other options (its strides are
/// replaced). Spatial pooling rounds fractional strides up.
torch::nn::AnyModule make_pooling_layer(
    Pooling pooling,
    StridePair strides,
    const DiffStrideOptions& diffstride_options = {});

}  // namespace diffstride
