#pragma once

// Training and evaluation batches of docs/training.md: seeded shuffling per
// epoch, optional augmentation (pad 2 + random crop, horizontal flip), mixup
// of consecutive pairs, label smoothing, the last partial batch dropped; and
// a background thread that prepares them ahead of the model.

#include <diffstride/data/dataset.h>
#include <torch/arg.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace diffstride {

struct BatchOptions {
  TORCH_ARG(int64_t, batch_size) = 128;
  TORCH_ARG(uint64_t, seed) = 0;
  /// Reshuffled every epoch from (seed, epoch); off: dataset order.
  TORCH_ARG(bool, shuffle) = true;
  /// Pad 2 pixels (value 0 before normalisation), crop back at a random
  /// offset, flip horizontally with probability 1/2.
  TORCH_ARG(bool, augment) = false;
  /// Mixup: consecutive pairs of the shuffled order become one example with
  /// weight lambda ~ Beta(alpha, alpha) (images and one-hot labels alike), so
  /// an epoch has half as many examples. 0 = off.
  TORCH_ARG(double, mixup_alpha) = 0.0;
  /// Soft labels y <- y (1 - eps) + eps / K.
  TORCH_ARG(double, label_smoothing) = 0.0;
  /// Drop the last partial batch (training); keep it (evaluation).
  TORCH_ARG(bool, drop_last) = true;
  /// Data-parallel training: batch_size is the global batch, and make_batch
  /// returns shard `shard` of `shards` equal consecutive parts of it (the
  /// first count * shard / shards to count * (shard + 1) / shards examples),
  /// identical to those rows of the unsharded batch.
  TORCH_ARG(int64_t, shard) = 0;
  TORCH_ARG(int64_t, shards) = 1;
};

struct Batch {
  at::Tensor images;   // B x C x H x W, float32, normalised
  at::Tensor targets;  // B x K, float32 soft labels
  at::Tensor labels;   // B, int64: the class with the larger mixup weight
};

/// Makes the batches of one dataset. Every batch is a pure function of
/// (seed, epoch, batch index), whichever thread makes it and in whatever
/// order: a run resumed at any batch sees the same data. Each example draws
/// its augmentation and mixup weight from its own stream (seed, epoch,
/// position in the epoch), so that a shard is made without the rest of its
/// batch.
class BatchMaker {
 public:
  BatchMaker(const Dataset& dataset,
             Normalization normalization,
             BatchOptions options);

  int64_t batches_per_epoch() const;
  /// The order in which epoch `epoch` visits the examples.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  /// Batch `index` of the epoch whose order is `order` (this maker's shard
  /// of it).
  Batch make_batch(const std::vector<int64_t>& order,
                   int64_t epoch,
                   int64_t index) const;

  const BatchOptions& options() const {
    return options_;
  }

 private:
  const Dataset& dataset_;
  Normalization normalization_;
  BatchOptions options_;
};

/// Batches [first_batch, batches_per_epoch) of one epoch, made on a
/// background thread up to `depth` ahead of the consumer; with
/// `pin_memory` (for a GPU) that thread also copies them into page-locked
/// memory, from which copies to the device do not block the host.
class BatchPrefetcher {
 public:
  BatchPrefetcher(const BatchMaker& maker,
                  int64_t epoch,
                  int64_t first_batch = 0,
                  size_t depth = 3,
                  bool pin_memory = false);
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  /// The next batch, or nothing at the end of the epoch. Rethrows an error
  /// the background thread met.
  std::optional<Batch> next();

 private:
  void produce(int64_t epoch, int64_t first_batch);

  const BatchMaker& maker_;
  size_t depth_;
  bool pin_memory_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Batch> ready_;
  bool finished_ = false;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace diffstride
