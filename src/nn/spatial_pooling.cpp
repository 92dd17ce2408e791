#include <diffstride/nn/spatial_pooling.h>

#include "nn/module_checks.h"

#include <ATen/ATen.h>

#include <vector>

namespace diffstride {

namespace detail {

std::vector<int64_t> spatial_pooling_strides(c10::ArrayRef<int64_t> strides) {
  TORCH_CHECK(strides.size() == 1 || strides.size() == 2,
              "SpatialPooling: expected 1 or 2 strides, got ",
              strides.size());
  std::vector<int64_t> values(strides.begin(), strides.end());
  values.resize(2, strides[0]);
  for (const int64_t stride : values) {
    TORCH_CHECK(stride >= 1,
                "SpatialPooling: strides must be integers >= 1, got ",
                stride);
  }
  return values;
}

}  // namespace detail

namespace functional {

at::Tensor spatial_pooling(const at::Tensor& input,
                           const SpatialPoolingFuncOptions& options) {
  TORCH_CHECK(input.defined() && input.dim() == 4,
              "SpatialPooling: expected a 4-D NCHW input, got ",
              input.defined() ? input.dim() : 0,
              "-D");
  detail::spatial_pooling_strides(*options.strides());
  // A 1x1 average pool with 'same' padding pads nothing: it keeps rows and
  // columns 0, s, 2s, ... The copy keeps the input's memory format.
  const auto kept = input.slice(2, 0, input.size(2), (*options.strides())[0])
                        .slice(3, 0, input.size(3), (*options.strides())[1]);
  return kept.clone(input.suggest_memory_format());
}

}  // namespace functional

SpatialPoolingImpl::SpatialPoolingImpl(const SpatialPoolingOptions& options_)
    : options(options_) {
  reset();
}

void SpatialPoolingImpl::reset() {
  detail::spatial_pooling_strides(*options.strides());
}

void SpatialPoolingImpl::pretty_print(std::ostream& stream) const {
  stream << "diffstride::SpatialPooling(strides=[" << (*options.strides())[0]
         << ", " << (*options.strides())[1] << "])";
}

at::Tensor SpatialPoolingImpl::forward(const at::Tensor& input) {
  return functional::spatial_pooling(input, options);
}

}  // namespace diffstride
