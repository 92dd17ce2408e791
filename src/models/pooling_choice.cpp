#include <diffstride/models/pooling_choice.h>
#include <diffstride/nn/fixed_spectral_pooling.h>
#include <diffstride/nn/spatial_pooling.h>

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <cmath>

namespace diffstride {

namespace {

struct NamedPooling {
  const char* name;
  Pooling pooling;
};

constexpr NamedPooling kPoolings[] = {{"none", Pooling::kNone},
                                      {"spatial", Pooling::kSpatial},
                                      {"spectral", Pooling::kSpectral},
                                      {"diffstride", Pooling::kDiffStride}};

}  // namespace

std::string pooling_name(Pooling pooling) {
  for (const auto& entry : kPoolings) {
    if (entry.pooling == pooling) {
      return entry.name;
    }
  }
  TORCH_INTERNAL_ASSERT(false, "unknown Pooling value");
}

std::vector<std::string> pooling_names() {
  std::vector<std::string> names;
  for (const auto& entry : kPoolings) {
    names.emplace_back(entry.name);
  }
  return names;
}

Pooling parse_pooling(const std::string& name) {
  for (const auto& entry : kPoolings) {
    if (name == entry.name) {
      return entry.pooling;
    }
  }
  TORCH_CHECK(false,
              "unknown pooling '",
              name,
              "': expected one of ",
              c10::Join(", ", pooling_names()));
}

AlongTimeImpl::AlongTimeImpl(Pooling pooling_,
                             double stride_,
                             DiffStrideOptions diffstride_options_)
    : pooling(pooling_),
      stride(stride_),
      diffstride_options(std::move(diffstride_options_)) {
  reset();
}

void AlongTimeImpl::reset() {
  if (pooling == Pooling::kDiffStride) {
    const auto& o = diffstride_options;
    diffstride = DiffStride1d(DiffStride1dOptions()
                                  .strides(stride)
                                  .smoothness_factor(o.smoothness_factor())
                                  .cropping(o.cropping())
                                  .trainable(o.trainable())
                                  .lower_limit_stride(o.lower_limit_stride())
                                  .upper_limit_stride(o.upper_limit_stride()));
    layer = torch::nn::AnyModule(diffstride);
  } else {
    TORCH_CHECK(pooling == Pooling::kSpectral,
                "AlongTime: expected DiffStride or spectral pooling, got ",
                pooling_name(pooling));
    diffstride = DiffStride1d(nullptr);
    layer = torch::nn::AnyModule(
        FixedSpectralPooling1d(FixedSpectralPooling1dOptions(stride)));
  }
  register_module("layer", layer.ptr());
}

at::Tensor AlongTimeImpl::forward(const at::Tensor& input) {
  TORCH_CHECK(input.dim() == 4 && input.size(2) == 1,
              "AlongTime: expected an N x C x 1 x L input, got shape ",
              input.sizes());
  return layer.forward(input.squeeze(2)).unsqueeze(2);
}

torch::nn::AnyModule make_pooling_layer(
    Pooling pooling,
    StridePair strides,
    const DiffStrideOptions& diffstride_options,
    int64_t spatial_dims) {
  TORCH_CHECK(spatial_dims == 1 || spatial_dims == 2,
              "make_pooling_layer: expected 1 or 2 spatial dimensions, got ",
              spatial_dims);
  const auto rounded = [](double s) {
    return static_cast<int64_t>(std::ceil(s));
  };
  if (spatial_dims == 1 && pooling != Pooling::kNone) {
    const double stride = (*strides)[1];
    if (pooling == Pooling::kSpatial) {
      return torch::nn::AnyModule(
          SpatialPooling(SpatialPoolingOptions({1, rounded(stride)})));
    }
    return torch::nn::AnyModule(AlongTime(pooling, stride, diffstride_options));
  }
  switch (pooling) {
    case Pooling::kSpatial: {
      return torch::nn::AnyModule(SpatialPooling(SpatialPoolingOptions(
          {rounded((*strides)[0]), rounded((*strides)[1])})));
    }
    case Pooling::kSpectral:
      return torch::nn::AnyModule(
          FixedSpectralPooling(FixedSpectralPoolingOptions(strides)));
    case Pooling::kDiffStride: {
      auto options = diffstride_options;
      options.strides(strides);
      return torch::nn::AnyModule(DiffStride(options));
    }
    case Pooling::kNone:
      break;
  }
  TORCH_CHECK(false, "make_pooling_layer: no layer for pooling 'none'");
}

}  // namespace diffstride
