#include <diffstride/nn/diff_stride.h>

#include "nn/cropping.h"
#include "nn/diffstride_matrices.h"
#include "nn/host_constants.h"
#include "nn/module_checks.h"
#include "nn/pooling_input.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>
#include <c10/util/irange.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

namespace diffstride {

namespace {

// Lowest stride at which the mask's ramp still fits inside the spectrum:
// with s >= size/(size-R) the target size size/s is at most size - R. Below
// it the mask is 1 on every bin, so its gradient with respect to s vanishes.
double stride_floor(int64_t size, double smoothness_factor) {
  return static_cast<double>(size) /
         (static_cast<double>(size) - smoothness_factor);
}

void check_smoothness_factor(double smoothness_factor,
                             const std::string& layer) {
  TORCH_CHECK(std::isfinite(smoothness_factor) && smoothness_factor > 0,
              layer,
              ": smoothness_factor must be a finite number > 0, got ",
              smoothness_factor);
}

void check_stride_value(double stride,
                        const std::string& layer,
                        const char* what) {
  TORCH_CHECK(std::isfinite(stride) && stride >= 1.0,
              layer,
              ": ",
              what,
              " must be finite and >= 1, got ",
              stride);
}

// The spatial axes of an input with `rank` of them, for messages.
const char* axis_names(int64_t rank) {
  switch (rank) {
    case 1:
      return "length";
    case 2:
      return "height, width";
    default:
      return "depth, height, width";
  }
}

// Every spatial size must exceed R: the stride floor size/(size - R) is
// undefined otherwise.
void check_sizes_exceed_smoothness(at::IntArrayRef spatial,
                                   double smoothness_factor,
                                   const std::string& layer) {
  bool ok = true;
  for (const int64_t size : spatial) {
    ok = ok && static_cast<double>(size) > smoothness_factor;
  }
  TORCH_CHECK(ok,
              layer,
              ": every spatial size of the input must exceed the smoothness "
              "factor R = ",
              smoothness_factor,
              " (the stride floor size/(size - R) is undefined otherwise), "
              "got ",
              c10::Join("x", spatial));
}

// Ramp position of each bin of a full FFT-ordered spectrum of `size` bins
// (every axis but the last): frequency f >= 0 at f; for even sizes negative
// frequency -f at f - 1 (so the window is one bin wider on the negative side
// and output sizes stay even), for odd sizes symmetrically at f.
std::vector<int64_t> two_sided_positions(int64_t size) {
  std::vector<int64_t> positions(size);
  for (const auto k : c10::irange(size)) {
    if (k < (size + 1) / 2) {
      positions[k] = k;
    } else {
      positions[k] = size % 2 == 0 ? size - 1 - k : size - k;
    }
  }
  return positions;
}

// Ramp position of each bin of the last axis' half spectrum: its frequency.
std::vector<int64_t> half_spectrum_positions(int64_t width) {
  std::vector<int64_t> positions(width / 2 + 1);
  for (const auto p : c10::irange(positions.size())) {
    positions[p] = static_cast<int64_t>(p);
  }
  return positions;
}

// The strides' values, read on the host (one copy from the device). Meta
// inputs (and fake ones, for tracers) are fine, but the crop's size is a
// function of these values (docs/layers.md, "Under tracers and compilers").
std::vector<double> host_values(const at::Tensor& strides,
                                const std::string& layer) {
  TORCH_CHECK(!detail::holds_no_values(strides),
              layer,
              ": the output size depends on the strides' values, which "
              "strides on the meta device or fake strides do not hold; keep "
              "the strides a tensor with values (the input may be meta)");
  detail::OutsideTensorModes outside;
  const auto host = strides.detach().to(at::kCPU, at::kDouble).contiguous();
  return {host.data_ptr<double>(), host.data_ptr<double>() + host.numel()};
}

// Steps 1-3 of docs/layers.md for inputs of spatial size `spatial`: what
// the crop keeps of each axis and what its mask depends on, and the last
// axis' output size. Which bins are kept depends on the strides' values, read
// on the host (one copy from the device).
struct DiffStrideCrops {
  std::vector<detail::RampAxis> axes;
  int64_t last_output_size = 0;
};

DiffStrideCrops diffstride_crops(at::IntArrayRef spatial,
                                 const at::Tensor& strides,
                                 const std::vector<double>& known_values,
                                 double smoothness_factor,
                                 bool cropping,
                                 const std::string& layer) {
  const int64_t rank = static_cast<int64_t>(spatial.size());
  TORCH_CHECK(strides.defined() && strides.dim() == 1 &&
                  (strides.numel() == 1 || strides.numel() == rank),
              layer,
              ": expected strides of shape (",
              rank,
              ",) [",
              axis_names(rank),
              rank == 1 ? "]" : "] or (1,) [shared]",
              " for an ",
              detail::input_layout(rank),
              " input, got shape ",
              strides.defined() ? strides.sizes() : at::IntArrayRef{});
  TORCH_CHECK(at::isFloatingType(strides.scalar_type()),
              layer,
              ": expected floating-point strides, got ",
              strides.scalar_type());
  const bool shared = strides.numel() == 1;
  const auto values =
      known_values.empty() ? host_values(strides, layer) : known_values;
  TORCH_INTERNAL_ASSERT(values.size() == static_cast<size_t>(strides.numel()));
  for (const double value : values) {
    check_stride_value(value, layer, "strides");
  }

  // Step 1: floor each stride at size/(size - R), in float64 (a shared
  // stride at the largest floor).
  std::vector<double> floors;
  for (const int64_t size : spatial) {
    floors.push_back(stride_floor(size, smoothness_factor));
  }
  if (shared) {
    std::fill(floors.begin(),
              floors.end(),
              *std::max_element(floors.begin(), floors.end()));
  }
  DiffStrideCrops crops;
  for (const auto axis : c10::irange(rank)) {
    const bool last = axis == rank - 1;
    detail::RampAxis ramp;
    ramp.stride_index = shared ? 0 : axis;
    ramp.stride = values[ramp.stride_index];
    ramp.size = static_cast<double>(spatial[axis]);
    ramp.floor = floors[axis];
    // Step 3: the ramp is centred on t/2 on the two-sided axes and on
    // t/2 + 1 on the last one.
    ramp.offset = last ? 1.0 : 0.0;
    // With cropping only the bins where the mask is > 0 are kept.
    const auto positions = last ? half_spectrum_positions(spatial[axis])
                                : two_sided_positions(spatial[axis]);
    ramp.positions.assign(positions.begin(), positions.end());
    const auto mask = detail::ramp_weights(ramp, smoothness_factor, 0);
    ramp.positions.clear();
    for (const auto bin : c10::irange(positions.size())) {
      if (!cropping || mask[bin] > 0) {
        ramp.bins.push_back(static_cast<int64_t>(bin));
        ramp.positions.push_back(static_cast<double>(positions[bin]));
      }
    }
    crops.axes.push_back(std::move(ramp));
  }
  const int64_t kept_last = static_cast<int64_t>(crops.axes.back().bins.size());
  TORCH_CHECK(kept_last >= 2,
              layer,
              ": an input of last size ",
              spatial.back(),
              " leaves no output sample on that axis (irfft of ",
              kept_last,
              " bin); use a size of at least 2");
  crops.last_output_size = 2 * (kept_last - 1);
  return crops;
}

}  // namespace

namespace functional {

at::Tensor diffstride(const at::Tensor& input,
                      const at::Tensor& strides,
                      const DiffStrideFuncOptions& options) {
  return detail::diffstride_with_stride_values(input, strides, {}, options);
}

}  // namespace functional

namespace detail {

at::Tensor diffstride_with_stride_values(
    const at::Tensor& input,
    const at::Tensor& strides,
    const std::vector<double>& values,
    const functional::DiffStrideFuncOptions& options) {
  const int64_t rank = detail::pooling_spatial_rank(input, "DiffStride");
  const auto layer = detail::layer_name("DiffStride", rank);
  const double smoothness_factor = options.smoothness_factor();
  check_smoothness_factor(smoothness_factor, layer);
  check_sizes_exceed_smoothness(
      input.sizes().slice(2), smoothness_factor, layer);
  const auto crops = diffstride_crops(input.sizes().slice(2),
                                      strides,
                                      values,
                                      smoothness_factor,
                                      options.cropping(),
                                      layer);
  // Steps 4-6: mask, crop, inverse transform with last size 2 (K' - 1).
  if (rank == 2) {
    const auto [row_matrix, column_matrix] =
        detail::diffstride_separable_matrices(strides,
                                              crops.axes[0],
                                              crops.axes[1],
                                              smoothness_factor,
                                              crops.last_output_size,
                                              detail::compute_options(input));
    return detail::crop_with_matrices(input, row_matrix, column_matrix);
  }
  std::vector<detail::AxisCrop> masked;
  for (const auto& axis : crops.axes) {
    masked.push_back(
        {axis.bins, detail::ramp_mask(strides, axis, smoothness_factor)});
  }
  return detail::crop_with_ffts(input, masked, crops.last_output_size);
}

}  // namespace detail

namespace functional {

std::tuple<at::Tensor, at::Tensor> diffstride_matrices(
    at::IntArrayRef size,
    const at::Tensor& strides,
    const DiffStrideFuncOptions& options) {
  const double smoothness_factor = options.smoothness_factor();
  check_smoothness_factor(smoothness_factor, "DiffStride");
  TORCH_CHECK(size.size() == 2,
              "DiffStride: the separable matrices are the 2-D layer's: "
              "expected a spatial size (H, W), got ",
              size);
  check_sizes_exceed_smoothness(size, smoothness_factor, "DiffStride");
  const auto crops = diffstride_crops(
      size, strides, {}, smoothness_factor, options.cropping(), "DiffStride");
  return detail::diffstride_separable_matrices(
      strides,
      crops.axes[0],
      crops.axes[1],
      smoothness_factor,
      crops.last_output_size,
      at::TensorOptions().dtype(at::kDouble));
}

}  // namespace functional

namespace detail {

std::vector<double> diffstride_initial_strides(int64_t spatial_rank,
                                               c10::ArrayRef<double> init,
                                               double smoothness_factor,
                                               double lower,
                                               c10::optional<double> upper,
                                               bool shared_stride) {
  const auto layer = layer_name("DiffStride", spatial_rank);
  TORCH_CHECK(
      init.size() == 1 || static_cast<int64_t>(init.size()) == spatial_rank,
      layer,
      ": expected 1 or ",
      spatial_rank,
      " strides, got ",
      init.size());
  std::vector<double> values(init.begin(), init.end());
  values.resize(static_cast<size_t>(spatial_rank), init[0]);
  for (const double stride : values) {
    check_stride_value(stride, layer, "strides init");
  }
  check_smoothness_factor(smoothness_factor, layer);
  TORCH_CHECK(std::isfinite(lower) && lower >= 1.0,
              layer,
              ": lower_limit_stride must be finite and >= 1, got ",
              lower);
  TORCH_CHECK(!upper || (!std::isnan(*upper) && *upper >= lower),
              layer,
              ": upper_limit_stride must be >= lower_limit_stride (",
              lower,
              "), got ",
              upper.value_or(0));
  for (const double stride : values) {
    TORCH_CHECK(stride >= lower && (!upper || stride <= *upper),
                layer,
                ": strides init ",
                stride,
                " lies outside [lower_limit_stride, upper_limit_stride]");
  }
  if (shared_stride) {
    TORCH_CHECK(std::all_of(values.begin(),
                            values.end(),
                            [&](double s) { return s == values[0]; }),
                layer,
                ": shared_stride needs equal initial strides, got (",
                c10::Join(", ", values),
                ")");
    values.resize(1);
  }
  return values;
}

std::vector<double> constrain_strides(
    const at::Tensor& strides,
    int64_t spatial_rank,
    c10::ArrayRef<int64_t> last_input_size,
    double smoothness_factor,
    double lower_limit_stride,
    c10::optional<double> upper_limit_stride) {
  TORCH_CHECK(strides.numel() == 1 || strides.numel() == spatial_rank,
              "constrain_strides: expected 1 or ",
              spatial_rank,
              " strides, got ",
              strides.numel());
  std::vector<double> lower(spatial_rank, lower_limit_stride);
  for (const auto axis : c10::irange(last_input_size.size())) {
    lower[axis] = std::max(
        lower[axis], stride_floor(last_input_size[axis], smoothness_factor));
  }
  const double upper =
      upper_limit_stride.value_or(std::numeric_limits<double>::infinity());
  // Strides without values (a module moved to the meta device) have
  // nothing to clamp.
  if (holds_no_values(strides)) {
    return {};
  }
  torch::NoGradGuard no_grad;
  OutsideTensorModes outside;
  const auto held = strides.detach().to(at::kCPU, at::kDouble).contiguous();
  auto values = held.clone();
  auto* data = values.data_ptr<double>();
  const auto constrain = [&](double& value, double floor) {
    value = std::min(std::max(value, floor), upper);
  };
  if (strides.numel() == 1) {
    constrain(data[0], *std::max_element(lower.begin(), lower.end()));
  } else {
    for (const auto axis : c10::irange(spatial_rank)) {
      constrain(data[axis], lower[axis]);
    }
  }
  // The clamped values as the parameter can hold them (a float32 floor
  // rounds either way); written only when one moves, so that a stride
  // resting at its floor costs no write (and no copy to its device) per
  // call. An in-place write bumps the parameter's version, which autograd
  // checks when the module runs twice in one graph.
  values = values.to(strides.scalar_type()).to(at::kDouble);
  if (!at::equal(values, held)) {
    strides.detach().copy_(values);
  }
  data = values.data_ptr<double>();
  return {data, data + values.numel()};
}

void check_layer_input(const at::Tensor& input,
                       const std::string& layer,
                       int64_t spatial_rank,
                       double smoothness_factor) {
  check_pooling_input(input, layer, spatial_rank);
  if (smoothness_factor > 0) {
    check_sizes_exceed_smoothness(
        input.sizes().slice(2), smoothness_factor, layer);
  }
}

}  // namespace detail

namespace {

// The options' upper limit as the op schemas' optional (c10::optional is
// std::optional in LibTorch 2, its own type in 1.13).
template <size_t D>
c10::optional<double> upper_limit(const DiffStrideNdOptions<D>& options) {
  if (options.upper_limit_stride()) {
    return *options.upper_limit_stride();
  }
  return c10::nullopt;
}

}  // namespace

template <size_t D>
DiffStrideNdImpl<D>::DiffStrideNdImpl(const DiffStrideNdOptions<D>& options_)
    : options(options_) {
  reset();
}

template <size_t D>
void DiffStrideNdImpl<D>::reset() {
  const auto values =
      detail::diffstride_initial_strides(D,
                                         *options.strides(),
                                         options.smoothness_factor(),
                                         options.lower_limit_stride(),
                                         upper_limit(options),
                                         options.shared_stride());
  strides = this->register_parameter(
      "strides",
      torch::tensor(std::vector<float>(values.begin(), values.end()),
                    torch::kFloat32),
      options.trainable());
  last_input_size_.reset();
}

template <size_t D>
void DiffStrideNdImpl<D>::pretty_print(std::ostream& stream) const {
  stream << "diffstride::" << detail::layer_name("DiffStride", D)
         << "(strides=[" << c10::Join(", ", current_strides())
         << "], smoothness_factor=" << options.smoothness_factor()
         << ", cropping=" << (options.cropping() ? "true" : "false")
         << ", trainable=" << (options.trainable() ? "true" : "false")
         << ", shared_stride=" << (options.shared_stride() ? "true" : "false")
         << ", lower_limit_stride=" << options.lower_limit_stride()
         << ", upper_limit_stride=";
  if (options.upper_limit_stride()) {
    stream << *options.upper_limit_stride();
  } else {
    stream << "none";
  }
  stream << ")";
}

template <size_t D>
at::Tensor DiffStrideNdImpl<D>::forward(const at::Tensor& input) {
  detail::check_layer_input(input,
                            detail::layer_name("DiffStride", D),
                            D,
                            options.smoothness_factor());
  // A copy for this call's graph: a later call at another input size may
  // clamp the parameter in place without invalidating this one (the value
  // and the gradient are the parameter's; docs/layers.md, step 1). The
  // values the constraint read on the host size the crop: one read from
  // the device per call. Both are taken under the lock, so that they are
  // the same strides when threads share the module.
  std::vector<double> values;
  at::Tensor clamped;
  {
    std::lock_guard<std::mutex> lock(*constrain_mutex_);
    std::array<int64_t, D> size;
    std::copy_n(input.sizes().begin() + 2, D, size.begin());
    last_input_size_ = size;
    values = constrain_strides_locked();
    clamped = strides.clone();
  }
  return detail::diffstride_with_stride_values(
      input,
      clamped,
      values,
      functional::DiffStrideFuncOptions()
          .smoothness_factor(options.smoothness_factor())
          .cropping(options.cropping()));
}

template <size_t D>
void DiffStrideNdImpl<D>::constrain_strides() {
  std::lock_guard<std::mutex> lock(*constrain_mutex_);
  constrain_strides_locked();
}

template <size_t D>
std::vector<double> DiffStrideNdImpl<D>::constrain_strides_locked() {
  return detail::constrain_strides(strides,
                                   D,
                                   last_input_size_
                                       ? c10::IntArrayRef(*last_input_size_)
                                       : c10::IntArrayRef(),
                                   options.smoothness_factor(),
                                   options.lower_limit_stride(),
                                   upper_limit(options));
}

template <size_t D>
std::array<double, D> DiffStrideNdImpl<D>::current_strides() const {
  const auto values = strides.detach().to(at::kCPU, at::kDouble).contiguous();
  const auto* data = values.template data_ptr<double>();
  std::array<double, D> current;
  for (const auto axis : c10::irange(D)) {
    current[axis] = data[values.numel() == 1 ? 0 : axis];
  }
  return current;
}

template class DiffStrideNdImpl<1>;
template class DiffStrideNdImpl<2>;
template class DiffStrideNdImpl<3>;

}  // namespace diffstride
