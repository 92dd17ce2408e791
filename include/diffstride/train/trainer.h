#pragma once

// `diffstride train` and `diffstride eval` as library functions: the recipe
// of docs/training.md on a TrainConfig. The parts: RunFolder (files,
// checkpoints, resume), MetricsLog (metrics.csv and TensorBoard), train_step
// (one optimiser step); train() is the loop over epochs and batches.

#include <diffstride/data/dataset.h>
#include <diffstride/models/resnet.h>
#include <diffstride/train/config.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace diffstride {

class Collectives;

struct EpochMetrics {
  int64_t epoch = 0;  // counted from 1
  int64_t step = 0;   // optimiser steps so far
  double learning_rate = 0;
  double train_loss = 0, train_accuracy = 0;
  double test_loss = 0, test_accuracy = 0;
  double examples_per_second = 0;
  int64_t multiply_adds = 0;  // per example, at the current strides
  std::vector<std::array<double, 2>> strides;
};

struct TrainOptions {
  /// Continue the run in config.train.out from its checkpoint.
  bool resume = false;
  /// Set (by a signal handler, say) to stop after the current step: a
  /// checkpoint is written and train() returns.
  const std::atomic<bool>* interrupt = nullptr;
  /// Stop the same way after this many steps of this call (tests; < 0: no).
  int64_t stop_after_steps = -1;
  /// Where the progress line goes (none when null; with several processes
  /// only rank 0 prints).
  std::ostream* progress = nullptr;
  /// Called after every optimiser step with the model and the step count
  /// (tests, instrumentation); on every rank.
  std::function<void(ResNet&, int64_t)> after_step;
};

/// The device a name of train.device stands for ("auto": CUDA when there is
/// one); an error naming `option` when it does not exist here.
torch::Device training_device(const std::string& name,
                              const std::string& option = "train.device");

/// Convolution weights (4-D parameters) in NHWC order (train.channels_last).
void to_channels_last(ResNet& model);

/// The model a config describes, for a dataset of `in_channels` channels and
/// `num_classes` classes.
ResNet build_model(const TrainConfig& config,
                   int64_t in_channels,
                   int64_t num_classes);

/// Trains as `config` says in config.train.out. Returns the metrics of the
/// epochs this call completed (a resumed run: only the new ones). Started by
/// a launcher with WORLD_SIZE > 1 (launcher_environment()), it is one rank
/// of a data-parallel run: config.data.batch_size is the global batch, split
/// evenly across ranks, and rank 0 alone writes to the run folder.
std::vector<EpochMetrics> train(const TrainConfig& config,
                                const TrainOptions& options = {});

struct Evaluation {
  double loss = 0, accuracy = 0;
  int64_t examples = 0;
  /// Stopped early by `interrupt` (on any rank): the figures are partial.
  bool interrupted = false;
};

/// Test loss (cross-entropy with the hard labels) and accuracy of `model`.
/// With `collectives` of several processes, each evaluates its share of
/// every batch and all return the totals. `interrupt`, when set, ends the
/// evaluation after the current batch.
Evaluation evaluate(ResNet& model,
                    const Dataset& test,
                    const Normalization& normalization,
                    int64_t batch_size,
                    Collectives* collectives = nullptr,
                    const std::atomic<bool>* interrupt = nullptr);

/// Loads a checkpoint (checkpoint.pt or model.pt of a run folder; the run's
/// config.toml beside it says what model and data) and evaluates it.
Evaluation evaluate_checkpoint(const std::string& path);

/// The first `count` test examples of a checkpoint's run as its model sees
/// them (normalised), their labels, and the model's logits, written to
/// `path` as a dict {"images", "labels", "logits"} that Python's torch.load
/// reads: for checking the weights in another implementation. `path` must
/// not exist unless `replace` is true; even then it must be a regular file
/// and none of the run's own files.
void dump_test_logits(const std::string& checkpoint,
                      const std::string& path,
                      int64_t count = 64,
                      bool replace = false);

}  // namespace diffstride
