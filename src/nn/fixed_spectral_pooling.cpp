#include <diffstride/nn/fixed_spectral_pooling.h>

#include "nn/pooling_input.h"
#include "nn/spectral_crop.h"

#include <ATen/ATen.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace diffstride {

namespace {

void check_strides(const StridePair& strides) {
  for (const double stride : *strides) {
    TORCH_CHECK(std::isfinite(stride) && stride >= 1.0,
                "FixedSpectralPooling: strides must be finite and >= 1, got ",
                stride);
  }
}

}  // namespace

namespace functional {

at::Tensor fixed_spectral_pooling(
    const at::Tensor& input, const FixedSpectralPoolingFuncOptions& options) {
  detail::check_pooling_input(input, "FixedSpectralPooling");
  check_strides(options.strides());
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  TORCH_CHECK(height >= 2 && width >= 2,
              "FixedSpectralPooling: expected an input of at least 2x2, got ",
              height,
              "x",
              width);
  // Output height: floor(H / s_h) rounded down to even (as many negative as
  // positive frequencies), at least 2. Output width: floor(W / s_w), at least
  // 2; a C2R transform needs only its W'/2 + 1 lowest columns.
  int64_t out_height = static_cast<int64_t>(
      std::floor(static_cast<double>(height) / (*options.strides())[0]));
  out_height = std::max<int64_t>(out_height - out_height % 2, 2);
  const int64_t out_width = std::max<int64_t>(
      static_cast<int64_t>(
          std::floor(static_cast<double>(width) / (*options.strides())[1])),
      2);

  std::vector<int64_t> kept_rows;
  for (const auto k : c10::irange(out_height / 2)) {
    kept_rows.push_back(k);
  }
  for (const auto k : c10::irange(height - out_height / 2, height)) {
    kept_rows.push_back(k);
  }
  return detail::separable_spectral_crop(input,
                                         kept_rows,
                                         at::Tensor(),
                                         out_width / 2 + 1,
                                         at::Tensor(),
                                         out_width);
}

}  // namespace functional

FixedSpectralPoolingImpl::FixedSpectralPoolingImpl(
    const FixedSpectralPoolingOptions& options_)
    : options(options_) {
  reset();
}

void FixedSpectralPoolingImpl::reset() {
  check_strides(options.strides());
}

void FixedSpectralPoolingImpl::pretty_print(std::ostream& stream) const {
  stream << "diffstride::FixedSpectralPooling(strides=["
         << (*options.strides())[0] << ", " << (*options.strides())[1] << "])";
}

at::Tensor FixedSpectralPoolingImpl::forward(const at::Tensor& input) {
  return functional::fixed_spectral_pooling(input, options);
}

}  // namespace diffstride
