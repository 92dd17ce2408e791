#include <diffstride/train/mixed_precision.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>

namespace diffstride {

namespace {

struct NamedPrecision {
  const char* name;
  c10::ScalarType dtype;
};

constexpr NamedPrecision kPrecisions[] = {{"float32", c10::kFloat},
                                          {"bfloat16", c10::kBFloat16},
                                          {"float16", c10::kHalf}};

// LibTorch 2.4 replaced the per-device autocast setters with ones that take
// the device type; 1.13 has only the former.
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(c10::DeviceType type) {
  return at::autocast::is_autocast_enabled(type);
}
c10::ScalarType autocast_dtype(c10::DeviceType type) {
  return at::autocast::get_autocast_dtype(type);
}
void set_autocast(c10::DeviceType type, bool enabled, c10::ScalarType dtype) {
  at::autocast::set_autocast_enabled(type, enabled);
  at::autocast::set_autocast_dtype(type, dtype);
}
#else
bool autocast_enabled(c10::DeviceType type) {
  return type == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled()
                                      : at::autocast::is_enabled();
}
c10::ScalarType autocast_dtype(c10::DeviceType type) {
  return type == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                      : at::autocast::get_autocast_gpu_dtype();
}
void set_autocast(c10::DeviceType type, bool enabled, c10::ScalarType dtype) {
  if (type == c10::DeviceType::CPU) {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
}
#endif

}  // namespace

const std::vector<std::string>& precision_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& p : kPrecisions) {
      out.emplace_back(p.name);
    }
    return out;
  }();
  return names;
}

c10::ScalarType parse_precision(const std::string& name) {
  for (const auto& p : kPrecisions) {
    if (name == p.name) {
      return p.dtype;
    }
  }
  std::string accepted;
  for (const auto& n : precision_names()) {
    accepted += (accepted.empty() ? "" : ", ") + n;
  }
  TORCH_CHECK(false, "precision '", name, "': expected one of ", accepted);
}

void check_precision_supported(c10::ScalarType precision,
                               const c10::Device& device,
                               const std::string& option) {
  TORCH_CHECK(precision != c10::kHalf || device.is_cuda(),
              option,
              " = \"float16\" needs a CUDA device (autocast to "
              "float16 is a GPU feature); this run trains on ",
              device.str(),
              ": use \"bfloat16\" or \"float32\" there");
}

AutocastGuard::AutocastGuard(const c10::Device& device,
                             c10::ScalarType precision)
    : device_type_(device.type()) {
  if (precision == c10::kFloat) {
    return;
  }
  active_ = true;
  was_enabled_ = autocast_enabled(device_type_);
  previous_dtype_ = autocast_dtype(device_type_);
  set_autocast(device_type_, true, precision);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) {
    return;
  }
  // Casts of weights are cached while autocast is on; the outermost guard
  // drops them (the weights change at every step).
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  set_autocast(device_type_, was_enabled_, previous_dtype_);
}

LossScaler::LossScaler(bool enabled,
                       double initial_scale,
                       int64_t growth_interval)
    : enabled_(enabled),
      scale_(enabled ? initial_scale : 1.0),
      growth_interval_(growth_interval) {}

void LossScaler::restore(double scale, int64_t good_steps) {
  if (!enabled_ || scale == 0) {
    return;
  }
  TORCH_CHECK(scale > 0 && good_steps >= 0,
              "LossScaler: expected a positive scale and a count >= 0, got ",
              scale,
              " and ",
              good_steps);
  scale_ = scale;
  good_steps_ = good_steps;
}

at::Tensor LossScaler::scale_loss(const at::Tensor& loss) const {
  return enabled_ ? loss * scale_ : loss;
}

bool LossScaler::unscale_and_update(const std::vector<at::Tensor>& parameters) {
  if (!enabled_) {
    return true;
  }
  std::vector<at::Tensor> finite;
  for (const auto& p : parameters) {
    if (p.grad().defined()) {
      p.grad().div_(scale_);
      finite.push_back(at::isfinite(p.grad()).all().reshape({1}));
    }
  }
  const bool all_finite = finite.empty() || at::cat(finite).all().item<bool>();
  if (!all_finite) {
    // Halve and skip this step.
    scale_ *= 0.5;
    good_steps_ = 0;
  } else if (++good_steps_ == growth_interval_) {
    scale_ *= 2.0;
    good_steps_ = 0;
  }
  return all_finite;
}

}  // namespace diffstride
