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

torch::nn::AnyModule make_pooling_layer(
    Pooling pooling,
    StridePair strides,
    const DiffStrideOptions& diffstride_options) {
  switch (pooling) {
    case Pooling::kSpatial: {
      const auto rounded = [](double s) {
        return static_cast<int64_t>(std::ceil(s));
      };
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
