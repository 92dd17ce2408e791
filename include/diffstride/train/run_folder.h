#pragma once

// A run's output folder: its resolved config.toml, checkpoint.pt (model,
// optimiser and data position), the final model.pt, and, on resume,
// metrics.csv trimmed to the checkpoint. Every file is replaced atomically
// (a temporary file renamed over it), so a crash leaves the old file or the
// new one, never half of one; an existing run is never started over.

#include <diffstride/train/config.h>

#include <ATen/core/Dict.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace torch {
namespace nn {
class Module;
}
namespace optim {
class SGD;
}
}  // namespace torch

namespace diffstride {

/// Where a run is in its data: the next batch of `epoch` (both counted from
/// 0) and the optimiser steps so far.
struct RunPosition {
  int64_t epoch = 0, batch = 0, step = 0;
  /// The float16 loss scale and its count of good steps (LossScaler; 0:
  /// none saved, the scaler's initial scale).
  double loss_scale = 0;
  int64_t loss_scale_good_steps = 0;
};

/// The sums of the current epoch's training so far, over every rank: loss
/// times examples, correct predictions, examples, and seconds spent.
struct EpochTally {
  double loss_sum = 0, correct = 0, seen = 0, seconds = 0;
};

/// What a checkpoint holds besides the weights and the optimiser: a resumed
/// run continues its epoch's sums where they were.
struct ResumePoint {
  RunPosition position;
  EpochTally tally;
};

/// How far the run in a folder got: none there, started (its config is
/// written; resume it), or finished (its final model is written).
enum class RunState { kAbsent, kStarted, kFinished };

class RunFolder {
 public:
  static RunState state_of(const std::string& path);

  /// A new run in `path`: the folder must be absent, empty, or hold only a
  /// run of this tool that never reached its first checkpoint (its
  /// config.toml, whose first line marks it as the tool's, and event
  /// files); a run with a checkpoint, metrics or a final model, or any other
  /// file, is an error naming it. Creates the folder and writes the resolved
  /// config.toml.
  static RunFolder create(const std::string& path, const TrainConfig& config);

  /// The run in `path`, to resume from its checkpoint and write to: an
  /// error unless its config.toml or checkpoint.pt was written by this
  /// tool.
  static RunFolder resume(const std::string& path);

  /// The run in `path`, to read only (reports, the ranks that do not
  /// write).
  static RunFolder open(const std::string& path);

  /// Whether `file` is one of the files a run writes into its folder
  /// (config.toml, checkpoint.pt, metrics.csv, model.pt,
  /// model_state_dict.pt, event files) in a folder that holds a
  /// config.toml.
  static bool is_run_file(const std::filesystem::path& file);

  const std::filesystem::path& path() const {
    return path_;
  }
  std::filesystem::path metrics_path() const;
  std::filesystem::path config_path() const;

  /// Replaces checkpoint.pt with the model, the optimiser and `point`.
  void save_checkpoint(const torch::nn::Module& model,
                       const torch::optim::SGD& optimizer,
                       const ResumePoint& point) const;

  /// Loads checkpoint.pt into `model` and `optimizer`; returns its point.
  /// Without a checkpoint (a run interrupted before its first one) returns
  /// the start of the run and leaves `model` and `optimizer` as they are.
  /// Keeps the rows of metrics.csv up to the checkpoint's epoch only: a run
  /// killed between an epoch's row and its checkpoint writes that row again.
  ResumePoint load_checkpoint(torch::nn::Module& model,
                              torch::optim::SGD& optimizer) const;

  /// As load_checkpoint, but writes nothing (the ranks other than 0 of a
  /// run on several processes).
  ResumePoint read_checkpoint(torch::nn::Module& model,
                              torch::optim::SGD& optimizer) const;

  /// Writes model.pt, the final weights, and model_state_dict.pt, the same
  /// weights as a PyTorch state dict for Python (`torch.load`).
  void save_model(const torch::nn::Module& model) const;

 private:
  explicit RunFolder(std::filesystem::path path) : path_(std::move(path)) {}

  std::filesystem::path path_;
};

/// `tensors` (name -> tensor) in torch.save's format as a plain dict, which
/// Python's torch.load(path, weights_only=True) reads without running code.
std::string python_tensor_dict(
    const c10::Dict<std::string, at::Tensor>& tensors);

/// Loads the weights in `file` (a run's checkpoint.pt or model.pt) into
/// `model`; an error naming the file if it holds no such model.
void load_model_weights(const std::string& file, torch::nn::Module& model);

}  // namespace diffstride
