#include <diffstride/nn/diff_stride.h>

#include "nn/pooling_input.h"
#include "nn/spectral_crop.h"

#include <ATen/ATen.h>
#include <c10/util/irange.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <limits>
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

void check_smoothness_factor(double smoothness_factor) {
  TORCH_CHECK(std::isfinite(smoothness_factor) && smoothness_factor > 0,
              "DiffStride: smoothness_factor must be a finite number > 0, got ",
              smoothness_factor);
}

void check_stride_value(double stride, const char* what) {
  TORCH_CHECK(std::isfinite(stride) && stride >= 1.0,
              "DiffStride: ",
              what,
              " must be finite and >= 1, got ",
              stride);
}

void check_input(const at::Tensor& input, double smoothness_factor) {
  detail::check_pooling_input(input, "DiffStride");
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  TORCH_CHECK(static_cast<double>(height) > smoothness_factor &&
                  static_cast<double>(width) > smoothness_factor,
              "DiffStride: the input's height and width must exceed the "
              "smoothness factor R = ",
              smoothness_factor,
              " (the stride floor size/(size - R) is undefined otherwise), "
              "got ",
              height,
              "x",
              width);
}

// The ramp mask m(a, p) = clip((R + a - p) / R, 0, 1) over the bins of one
// axis, given each bin's position on the ramp. With cropping only the bins
// where it is > 0 are kept; which bins those are is decided on the host from
// `a_value`, a constant for autograd, while the mask values stay
// differentiable in the tensor `a`.
struct RampMask {
  std::vector<int64_t> bins;
  at::Tensor weights;
};

RampMask ramp_mask(const std::vector<int64_t>& positions,
                   const at::Tensor& a,
                   double a_value,
                   double smoothness_factor,
                   bool cropping) {
  RampMask mask;
  std::vector<double> kept_positions;
  for (const auto bin : c10::irange(positions.size())) {
    const double position = static_cast<double>(positions[bin]);
    if (!cropping || (smoothness_factor + a_value) - position > 0) {
      mask.bins.push_back(static_cast<int64_t>(bin));
      kept_positions.push_back(position);
    }
  }
  const auto position_tensor =
      at::tensor(kept_positions, at::TensorOptions().dtype(at::kDouble))
          .to(a.device());
  mask.weights = ((a + smoothness_factor - position_tensor) / smoothness_factor)
                     .clamp(0.0, 1.0);
  return mask;
}

// Ramp position of each row of an FFT-ordered spectrum of `height` rows:
// frequency f >= 0 at f; for even heights negative frequency -f at f - 1 (so
// the window is one bin wider on the negative side and output heights stay
// even), for odd heights symmetrically at f.
std::vector<int64_t> row_positions(int64_t height) {
  std::vector<int64_t> positions(height);
  for (const auto k : c10::irange(height)) {
    if (k < (height + 1) / 2) {
      positions[k] = k;
    } else {
      positions[k] = height % 2 == 0 ? height - 1 - k : height - k;
    }
  }
  return positions;
}

// Ramp position of each rfft column: its frequency.
std::vector<int64_t> column_positions(int64_t width) {
  std::vector<int64_t> positions(width / 2 + 1);
  for (const auto p : c10::irange(positions.size())) {
    positions[p] = static_cast<int64_t>(p);
  }
  return positions;
}

// Raises `stride` to `floor` in value while passing the gradient straight
// through: a clamp inside the graph would zero it and strand the stride.
at::Tensor straight_through_floor(const at::Tensor& stride, double floor) {
  return stride + (stride.clamp_min(floor) - stride).detach();
}

}  // namespace

namespace functional {

at::Tensor diffstride(const at::Tensor& input,
                      const at::Tensor& strides,
                      const DiffStrideFuncOptions& options) {
  const double smoothness_factor = options.smoothness_factor();
  check_smoothness_factor(smoothness_factor);
  check_input(input, smoothness_factor);
  TORCH_CHECK(strides.defined() && strides.dim() == 1 &&
                  (strides.numel() == 1 || strides.numel() == 2),
              "DiffStride: expected strides of shape (2,) [height, width] or "
              "(1,) [shared], got shape ",
              strides.defined() ? strides.sizes() : at::IntArrayRef{});
  TORCH_CHECK(at::isFloatingType(strides.scalar_type()),
              "DiffStride: expected floating-point strides, got ",
              strides.scalar_type());
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  const bool shared = strides.numel() == 1;

  // The output's shape depends on the strides' values: read them on the host
  // (one copy from the device, kept in the graph for the masks below).
  const auto strides64 = strides.to(at::kCPU, at::kDouble);
  const auto host = strides64.detach().contiguous();
  std::vector<double> values(host.data_ptr<double>(),
                             host.data_ptr<double>() + host.numel());
  for (const double value : values) {
    check_stride_value(value, "strides");
  }

  // Step 1 of docs/layers.md: floor each stride at size/(size - R), in float64.
  // The masks and the small matrices built from them are host work on any
  // device: a few dozen tiny operations that on a GPU would each cost a
  // kernel launch (the copy back to the device is one per matrix).
  double floor_height = stride_floor(height, smoothness_factor);
  double floor_width = stride_floor(width, smoothness_factor);
  if (shared) {
    floor_height = floor_width = std::max(floor_height, floor_width);
  }
  const auto stride_height = straight_through_floor(strides64[0], floor_height);
  const auto stride_width =
      straight_through_floor(strides64[shared ? 0 : 1], floor_width);
  // The same arithmetic on the host values, for the crop decision.
  const auto floored = [](double s, double floor) {
    return s + (std::max(s, floor) - s);
  };
  const double stride_height_value = floored(values.front(), floor_height);
  const double stride_width_value = floored(values.back(), floor_width);

  // Step 2: real-valued target sizes t = max(size / s, 2).
  const auto target_height =
      (stride_height.reciprocal() * height).clamp_min(2.0);
  const auto target_width = (stride_width.reciprocal() * width).clamp_min(2.0);
  const double target_height_value =
      std::max((1.0 / stride_height_value) * height, 2.0);
  const double target_width_value =
      std::max((1.0 / stride_width_value) * width, 2.0);

  // Step 3: the ramp masks; rows centred on t_h/2, columns on t_w/2 + 1.
  const auto rows = ramp_mask(row_positions(height),
                              target_height / 2.0,
                              target_height_value / 2.0,
                              smoothness_factor,
                              options.cropping());
  const auto columns = ramp_mask(column_positions(width),
                                 target_width / 2.0 + 1.0,
                                 target_width_value / 2.0 + 1.0,
                                 smoothness_factor,
                                 options.cropping());
  const int64_t kept_columns = static_cast<int64_t>(columns.bins.size());
  TORCH_CHECK(kept_columns >= 2,
              "DiffStride: an input of width ",
              width,
              " leaves no output column (irfft of ",
              kept_columns,
              " bin); use a width of at least 2");
  // Steps 4-6: mask, crop, inverse transform with output width 2 (K' - 1).
  return detail::separable_spectral_crop(input,
                                         rows.bins,
                                         rows.weights,
                                         kept_columns,
                                         columns.weights,
                                         2 * (kept_columns - 1));
}

}  // namespace functional

DiffStrideImpl::DiffStrideImpl(const DiffStrideOptions& options_)
    : options(options_) {
  reset();
}

void DiffStrideImpl::reset() {
  const auto& init = options.strides();
  for (const double stride : *init) {
    check_stride_value(stride, "strides init");
  }
  check_smoothness_factor(options.smoothness_factor());
  const double lower = options.lower_limit_stride();
  TORCH_CHECK(std::isfinite(lower) && lower >= 1.0,
              "DiffStride: lower_limit_stride must be finite and >= 1, got ",
              lower);
  if (options.upper_limit_stride()) {
    const double upper = *options.upper_limit_stride();
    TORCH_CHECK(
        !std::isnan(upper) && upper >= lower,
        "DiffStride: upper_limit_stride must be >= lower_limit_stride (",
        lower,
        "), got ",
        upper);
  }
  for (const double stride : *init) {
    TORCH_CHECK(stride >= lower && (!options.upper_limit_stride() ||
                                    stride <= *options.upper_limit_stride()),
                "DiffStride: strides init ",
                stride,
                " lies outside [lower_limit_stride, upper_limit_stride]");
  }
  std::vector<float> values;
  if (options.shared_stride()) {
    TORCH_CHECK((*init)[0] == (*init)[1],
                "DiffStride: shared_stride needs equal initial strides, got (",
                (*init)[0],
                ", ",
                (*init)[1],
                ")");
    values = {static_cast<float>((*init)[0])};
  } else {
    values = {static_cast<float>((*init)[0]), static_cast<float>((*init)[1])};
  }
  strides = register_parameter(
      "strides", torch::tensor(values, torch::kFloat32), options.trainable());
  last_input_size_.reset();
}

void DiffStrideImpl::pretty_print(std::ostream& stream) const {
  const auto current = current_strides();
  stream << "diffstride::DiffStride(strides=[" << current[0] << ", "
         << current[1] << "], smoothness_factor=" << options.smoothness_factor()
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

at::Tensor DiffStrideImpl::forward(const at::Tensor& input) {
  check_input(input, options.smoothness_factor());
  {
    std::lock_guard<std::mutex> lock(*constrain_mutex_);
    last_input_size_ = std::array<int64_t, 2>{input.size(2), input.size(3)};
    constrain_strides_locked();
  }
  return functional::diffstride(
      input,
      strides,
      functional::DiffStrideFuncOptions()
          .smoothness_factor(options.smoothness_factor())
          .cropping(options.cropping()));
}

void DiffStrideImpl::constrain_strides() {
  std::lock_guard<std::mutex> lock(*constrain_mutex_);
  constrain_strides_locked();
}

void DiffStrideImpl::constrain_strides_locked() {
  std::array<double, 2> lower = {options.lower_limit_stride(),
                                 options.lower_limit_stride()};
  if (last_input_size_) {
    for (const auto axis : c10::irange(2)) {
      lower[axis] = std::max(
          lower[axis],
          stride_floor((*last_input_size_)[axis], options.smoothness_factor()));
    }
  }
  const double upper = options.upper_limit_stride().value_or(
      std::numeric_limits<double>::infinity());
  torch::NoGradGuard no_grad;
  auto values = strides.detach().to(at::kCPU, at::kDouble).contiguous();
  auto* data = values.data_ptr<double>();
  bool changed = false;
  const auto constrain = [&](double& value, double floor) {
    const double constrained = std::min(std::max(value, floor), upper);
    changed |= constrained != value;
    value = constrained;
  };
  if (strides.numel() == 1) {
    constrain(data[0], std::max(lower[0], lower[1]));
  } else {
    for (const auto axis : c10::irange(2)) {
      constrain(data[axis], lower[axis]);
    }
  }
  // Write only when a value moved: an in-place write bumps the parameter's
  // version, which autograd checks when the module runs twice in one graph.
  if (changed) {
    strides.detach().copy_(values);
  }
}

std::array<double, 2> DiffStrideImpl::current_strides() const {
  const auto values = strides.detach().to(at::kCPU, at::kDouble).contiguous();
  const auto* data = values.data_ptr<double>();
  return {data[0], data[values.numel() - 1]};
}

}  // namespace diffstride
