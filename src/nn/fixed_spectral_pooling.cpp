#include <diffstride/nn/fixed_spectral_pooling.h>

#include "nn/cropping.h"
#include "nn/module_checks.h"
#include "nn/pooling_input.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace diffstride {

namespace functional {

at::Tensor fixed_spectral_pooling(
    const at::Tensor& input, const FixedSpectralPoolingFuncOptions& options) {
  const int64_t rank =
      detail::pooling_spatial_rank(input, "FixedSpectralPooling");
  const auto layer = detail::layer_name("FixedSpectralPooling", rank);
  const auto strides =
      detail::fixed_spectral_pooling_strides(rank, options.strides());
  const auto spatial = input.sizes().slice(2);
  TORCH_CHECK(std::all_of(spatial.begin(),
                          spatial.end(),
                          [](int64_t size) { return size >= 2; }),
              layer,
              ": expected every spatial size to be at least 2, got ",
              c10::Join("x", spatial));
  // Every axis but the last keeps floor(size / s) rounded down to even (as
  // many negative as positive frequencies), at least 2: bins [0, t/2) and
  // [size - t/2, size). The last keeps floor(W / s), at least 2; a C2R
  // transform needs only its t/2 + 1 lowest bins.
  std::vector<detail::AxisCrop> crops(rank);
  int64_t last_output_size = 0;
  for (const auto axis : c10::irange(rank)) {
    const double stride = strides[axis];
    const int64_t size = spatial[axis];
    auto& bins = crops[axis].bins;
    int64_t kept =
        static_cast<int64_t>(std::floor(static_cast<double>(size) / stride));
    if (axis + 1 < rank) {
      kept = std::max<int64_t>(kept - kept % 2, 2);
      for (const auto k : c10::irange(kept / 2)) {
        bins.push_back(k);
      }
      for (const auto k : c10::irange(size - kept / 2, size)) {
        bins.push_back(k);
      }
    } else {
      last_output_size = std::max<int64_t>(kept, 2);
      for (const auto k : c10::irange(last_output_size / 2 + 1)) {
        bins.push_back(k);
      }
    }
  }
  if (rank == 2) {
    const auto [row_matrix, column_matrix] =
        detail::separable_matrices(crops[0],
                                   crops[1],
                                   input.size(2),
                                   input.size(3),
                                   last_output_size,
                                   detail::compute_options(input));
    return detail::crop_with_matrices(input, row_matrix, column_matrix);
  }
  return detail::crop_with_ffts(input, crops, last_output_size);
}

}  // namespace functional

namespace detail {

std::vector<double> fixed_spectral_pooling_strides(
    int64_t spatial_rank, c10::ArrayRef<double> strides) {
  const auto layer = layer_name("FixedSpectralPooling", spatial_rank);
  TORCH_CHECK(strides.size() == 1 ||
                  static_cast<int64_t>(strides.size()) == spatial_rank,
              layer,
              spatial_rank == 1 ? ": expected 1 stride"
                                : ": expected 1 or " +
                                      std::to_string(spatial_rank) + " strides",
              " for an ",
              input_layout(spatial_rank),
              " input, got ",
              strides.size());
  std::vector<double> values(strides.begin(), strides.end());
  values.resize(static_cast<size_t>(spatial_rank), strides[0]);
  for (const double stride : values) {
    TORCH_CHECK(std::isfinite(stride) && stride >= 1.0,
                layer,
                ": strides must be finite and >= 1, got ",
                stride);
  }
  return values;
}

}  // namespace detail

template <size_t D>
FixedSpectralPoolingNdImpl<D>::FixedSpectralPoolingNdImpl(
    const FixedSpectralPoolingNdOptions<D>& options_)
    : options(options_) {
  reset();
}

template <size_t D>
void FixedSpectralPoolingNdImpl<D>::reset() {
  detail::fixed_spectral_pooling_strides(D, *options.strides());
}

template <size_t D>
void FixedSpectralPoolingNdImpl<D>::pretty_print(std::ostream& stream) const {
  stream << "diffstride::" << detail::layer_name("FixedSpectralPooling", D)
         << "(strides=[" << c10::Join(", ", *options.strides()) << "])";
}

template <size_t D>
at::Tensor FixedSpectralPoolingNdImpl<D>::forward(const at::Tensor& input) {
  detail::check_layer_input(
      input, detail::layer_name("FixedSpectralPooling", D), D);
  return functional::fixed_spectral_pooling(input, options);
}

template class FixedSpectralPoolingNdImpl<1>;
template class FixedSpectralPoolingNdImpl<2>;
template class FixedSpectralPoolingNdImpl<3>;

}  // namespace diffstride
