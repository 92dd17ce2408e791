#pragma once

// An epoch's training figures summed on the training device, step by step,
// so that the host waits for the device only when it reads them: every
// train.log_every_steps steps, at the end of an epoch, and at a stop
// (docs/training.md, "When the host reads the figures"). The sums are
// float64 and taken one step at a time in step order, as the host took
// them before: the figures, and a resumed run's, are the same to the bit.
// Internal to the training library.

#include <diffstride/train/run_folder.h>

#include <ATen/ATen.h>

#include <cstdint>

namespace diffstride {
namespace detail {

class DeviceTally {
 public:
  /// The host's copy of the figures at one read.
  struct Reading {
    EpochTally sums;  // loss x examples, correct and seen (no seconds)
    bool interrupted = false;
    int64_t first_nonfinite_step = -1;  // -1: every loss was finite
    double last_step_loss = 0;          // the data loss of the last step
  };

  explicit DeviceTally(const at::Device& device)
      : state_(
            at::zeros({kSize}, at::TensorOptions(device).dtype(at::kDouble))) {}

  /// Starts from `tally`: zeros at an epoch's start, a checkpoint's sums
  /// when a run resumes mid-epoch.
  void restart(const EpochTally& tally) {
    state_.copy_(at::tensor(
        {tally.loss_sum, tally.correct, tally.seen, 0.0, -1.0}, at::kDouble));
  }

  /// Adds the figures of `step` summed over the ranks: loss x examples,
  /// correct, examples, and the number of interrupted ranks. The first step
  /// whose loss is not finite is kept (every rank sees the same sums).
  void add(const at::Tensor& step_sums, int64_t step) {
    state_.narrow(0, 0, 4).add_(step_sums);
    auto first = state_.narrow(0, 4, 1);
    const auto is_first = first.lt(0).logical_and(
        at::isfinite(step_sums.narrow(0, 0, 1)).logical_not());
    first.add_(is_first.to(at::kDouble) * static_cast<double>(step + 1));
  }

  /// The epoch's figures and those of the last step, `last_step_sums` (as
  /// passed to add()), in one copy from the device.
  Reading read(const at::Tensor& last_step_sums) const {
    const auto host = at::cat({state_, last_step_sums}).cpu();
    const auto* v = host.data_ptr<double>();
    Reading reading;
    reading.sums.loss_sum = v[0];
    reading.sums.correct = v[1];
    reading.sums.seen = v[2];
    reading.interrupted = v[3] > 0;
    reading.first_nonfinite_step = static_cast<int64_t>(v[4]);
    reading.last_step_loss = v[kSize] / v[kSize + 2];
    return reading;
  }

 private:
  // loss x examples, correct, seen, interrupted ranks, first non-finite step
  static constexpr int64_t kSize = 5;
  at::Tensor state_;
};

}  // namespace detail
}  // namespace diffstride
