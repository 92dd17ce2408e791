#pragma once

// Training in reduced precision (docs/training.md, "Devices and
// precision"): autocast runs matrix products and convolutions in bfloat16 or
// float16 while parameters, optimiser state and the loss stay float32; with
// float16 a dynamic loss scale keeps small gradients from underflowing, as
// PyTorch's GradScaler does.

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

namespace diffstride {

/// The accepted values of train.precision: float32, bfloat16, float16.
const std::vector<std::string>& precision_names();

/// The dtype a precision name stands for; an error naming the accepted ones.
c10::ScalarType parse_precision(const std::string& name);

/// An error naming `option` when `device` cannot autocast to `precision`
/// (float16 needs CUDA; bfloat16 works on the CPU and on CUDA).
void check_precision_supported(c10::ScalarType precision,
                               const c10::Device& device,
                               const std::string& option = "train.precision");

/// Autocast to `precision` on `device` for the guard's lifetime (float32:
/// nothing changes); the previous state is restored afterwards.
class AutocastGuard {
 public:
  AutocastGuard(const c10::Device& device, c10::ScalarType precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_type_;
  bool active_ = false;
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::kFloat;
};

/// Dynamic loss scaling for float16 (torch.cuda.amp.GradScaler's rule): the
/// loss is multiplied by the scale before backward; after it the gradients
/// are divided by it; a step whose gradients hold inf or nan is skipped and
/// the scale halved, and after `growth_interval` good steps in a row it
/// doubles. Disabled, it changes nothing.
class LossScaler {
 public:
  explicit LossScaler(bool enabled,
                      double initial_scale = 65536.0,
                      int64_t growth_interval = 2000);

  bool enabled() const {
    return enabled_;
  }
  double scale() const {
    return scale_;
  }
  int64_t good_steps() const {
    return good_steps_;
  }
  /// Restores a state saved with a checkpoint (scale 0: none was saved).
  void restore(double scale, int64_t good_steps);

  at::Tensor scale_loss(const at::Tensor& loss) const;
  /// Divides the gradients of `parameters` by the scale; returns whether
  /// they are all finite (take the step), and updates the scale.
  bool unscale_and_update(const std::vector<at::Tensor>& parameters);

 private:
  bool enabled_;
  double scale_;
  int64_t growth_interval_;
  int64_t good_steps_ = 0;
};

}  // namespace diffstride
