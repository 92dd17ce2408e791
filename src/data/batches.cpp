#include <diffstride/data/batches.h>

#include "data/random_draws.h"

#include <ATen/ATen.h>

#include <cmath>
#include <exception>
#include <mutex>
#include <random>
#include <thread>

namespace diffstride {

namespace {

using detail::beta_draw;
using detail::SplitMix64;

// The seed of one random stream of an epoch: -1 is the epoch's shuffle,
// p >= 0 the example at position p of the epoch.
uint64_t stream_seed(uint64_t seed, int64_t epoch, int64_t stream) {
  SplitMix64 mix{seed};
  uint64_t s = mix() ^ (static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ull);
  SplitMix64 second{s};
  return second() ^ (static_cast<uint64_t>(stream + 1) * 0x8CB92BA72F3D8DD7ull);
}

// Salt of the streams that draw the crops of examples read from files,
// apart from the streams of augmentation and mixup.
constexpr uint64_t kReadStreams = 0x5EED0F11E5ull;

// body(i) for i in [0, count), on up to `threads` threads; the first error
// is rethrown once all have stopped.
template <typename Body>
void for_each_in_parallel(int64_t count, int64_t threads, const Body& body) {
  threads = std::max<int64_t>(1, std::min(threads, count));
  std::exception_ptr error;
  std::mutex error_mutex;
  const auto work = [&](int64_t t) {
    for (int64_t i = t; i < count; i += threads) {
      try {
        body(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) {
          error = std::current_exception();
        }
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) {
    pool.emplace_back(work, t);
  }
  work(0);
  for (auto& thread : pool) {
    thread.join();
  }
  if (error) {
    std::rethrow_exception(error);
  }
}

}  // namespace

BatchMaker::BatchMaker(const Dataset& dataset,
                       Normalization normalization,
                       BatchOptions options)
    : dataset_(dataset),
      normalization_(std::move(normalization)),
      options_(options) {
  TORCH_CHECK(dataset.reader != nullptr ||
                  (dataset.images.defined() && dataset.images.dim() == 4 &&
                   dataset.images.scalar_type() == at::kByte),
              "BatchMaker: expected N x C x H x W uint8 images or a reader");
  TORCH_CHECK(options.batch_size() > 0,
              "BatchMaker: expected a positive batch size, got ",
              options.batch_size());
  TORCH_CHECK(
      options.mixup_alpha() >= 0 && std::isfinite(options.mixup_alpha()),
      "BatchMaker: expected mixup alpha >= 0, got ",
      options.mixup_alpha());
  TORCH_CHECK(options.label_smoothing() >= 0 && options.label_smoothing() < 1,
              "BatchMaker: expected label smoothing in [0, 1), got ",
              options.label_smoothing());
  TORCH_CHECK(options.shards() >= 1 && options.shard() >= 0 &&
                  options.shard() < options.shards(),
              "BatchMaker: expected shard in [0, shards) and shards >= 1, got "
              "shard ",
              options.shard(),
              " of ",
              options.shards());
  const auto channels = static_cast<size_t>(dataset.example_shape()[0]);
  TORCH_CHECK(normalization_.mean.size() == channels &&
                  normalization_.std.size() == channels,
              "BatchMaker: expected a mean and std per channel (",
              channels,
              ")");
}

int64_t BatchMaker::batches_per_epoch() const {
  const int64_t per_example = options_.mixup_alpha() > 0 ? 2 : 1;
  const int64_t examples = dataset_.size() / per_example;
  const int64_t b = options_.batch_size();
  return options_.drop_last() ? examples / b : (examples + b - 1) / b;
}

std::vector<int64_t> BatchMaker::epoch_order(int64_t epoch) const {
  const int64_t n = dataset_.size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    order[i] = i;
  }
  if (options_.shuffle()) {
    // Fisher-Yates.
    SplitMix64 rng{stream_seed(options_.seed(), epoch, -1)};
    for (int64_t i = n - 1; i > 0; --i) {
      std::swap(order[i], order[rng.below(static_cast<uint64_t>(i + 1))]);
    }
  }
  return order;
}

namespace {

// Where an example lands in its batch: the image padded by 2 pixels and
// cropped at (dy, dx), flipped left-right or not (docs/training.md).
struct Placement {
  int64_t dy = 2, dx = 2;
  bool flip = false;
};

// Adds `weight` x the normalised, placed example `image` (C x H x W values
// spanning 0 to `full_scale`) to `out` (C x H x W).
template <typename Value>
void add_example(const Value* image,
                 c10::IntArrayRef shape,
                 const Normalization& normalization,
                 double full_scale,
                 double weight,
                 const Placement& at,
                 float* out) {
  const int64_t C = shape[0], H = shape[1], W = shape[2];
  for (int64_t c = 0; c < C; ++c) {
    const double scale = 1.0 / (full_scale * normalization.std[c]);
    const double shift = -normalization.mean[c] / normalization.std[c];
    float* plane = out + c * H * W;
    for (int64_t y = 0; y < H; ++y) {
      // The padded image, cropped at (dy, dx): source row y + dy - 2.
      const int64_t sy = y + at.dy - 2;
      for (int64_t x = 0; x < W; ++x) {
        const int64_t sx = (at.flip ? W - 1 - x : x) + at.dx - 2;
        const bool inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
        const double raw =
            inside ? static_cast<double>(image[(c * H + sy) * W + sx]) : 0.0;
        plane[y * W + x] += static_cast<float>(weight * (raw * scale + shift));
      }
    }
  }
}

// Examples read from their files now: `values` (one C x H x W block per
// read) and the index each read example has in the dataset's labels.
struct ReadExamples {
  std::vector<float> values;
  std::vector<int64_t> index;
};

// Reads `reads` examples, sources first_source, first_source + 1, ... of
// the epoch's order, each with its crop drawn from its own stream, spread
// over the reader's threads.
ReadExamples read_examples(const Dataset& dataset,
                           const std::vector<int64_t>& order,
                           uint64_t seed,
                           int64_t epoch,
                           int64_t first_source,
                           int64_t reads) {
  const int64_t size = c10::multiply_integers(dataset.example_shape());
  ReadExamples read;
  read.values.resize(static_cast<size_t>(reads * size));
  read.index.resize(static_cast<size_t>(reads));
  for_each_in_parallel(reads, dataset.reader->workers(), [&](int64_t r) {
    const int64_t source = first_source + r;
    read.index[static_cast<size_t>(r)] =
        dataset.reader->read(order[static_cast<size_t>(source)],
                             stream_seed(seed ^ kReadStreams, epoch, source),
                             read.values.data() + r * size);
  });
  return read;
}

// Label smoothing: (1 - eps) of each target's mass stays, eps is spread
// evenly over the classes.
void smooth_labels(at::Tensor& targets, double eps) {
  if (eps > 0) {
    targets.mul_(1.0 - eps).add_(eps / static_cast<double>(targets.size(1)));
  }
}

}  // namespace

Batch BatchMaker::make_batch(const std::vector<int64_t>& order,
                             int64_t epoch,
                             int64_t index) const {
  TORCH_CHECK(index >= 0 && index < batches_per_epoch(),
              "BatchMaker: batch ",
              index,
              " is past the end of the epoch (",
              batches_per_epoch(),
              " batches)");
  const int64_t per_example = options_.mixup_alpha() > 0 ? 2 : 1;
  const int64_t available = static_cast<int64_t>(order.size()) / per_example;
  const int64_t first = index * options_.batch_size();
  const int64_t whole = std::min(options_.batch_size(), available - first);
  const int64_t shard_begin = whole * options_.shard() / options_.shards();
  const int64_t count =
      whole * (options_.shard() + 1) / options_.shards() - shard_begin;
  const auto shape = dataset_.example_shape();
  const int64_t size = c10::multiply_integers(shape);
  const int64_t K = dataset_.num_classes;
  Batch batch;
  batch.images = at::zeros({count, shape[0], shape[1], shape[2]}, at::kFloat);
  batch.targets = at::zeros({count, K}, at::kFloat);
  batch.labels = at::empty({count}, at::kLong);
  const int64_t* labels = dataset_.labels.data_ptr<int64_t>();
  // Example source j of batch example e: in memory, or read from its file
  // now. Stored pixels span 0-255; a reader says what its values span.
  const ReadExamples read =
      dataset_.reader ? read_examples(dataset_,
                                      order,
                                      options_.seed(),
                                      epoch,
                                      (first + shard_begin) * per_example,
                                      count * per_example)
                      : ReadExamples();
  const double full_scale =
      dataset_.reader ? dataset_.reader->full_scale() : 255.0;
  float* targets = batch.targets.data_ptr<float>();
  for (int64_t e = 0; e < count; ++e) {
    const int64_t position = first + shard_begin + e;
    SplitMix64 rng{stream_seed(options_.seed(), epoch, position)};
    const double lambda =
        per_example == 2 ? beta_draw(rng, options_.mixup_alpha()) : 1.0;
    int64_t sources[2] = {0, 0};
    for (int64_t j = 0; j < per_example; ++j) {
      const double weight = j == 0 ? lambda : 1.0 - lambda;
      const int64_t r = e * per_example + j;
      Placement at;
      if (options_.augment()) {
        at.dy = static_cast<int64_t>(rng.below(5));
        at.dx = static_cast<int64_t>(rng.below(5));
        at.flip = rng.below(2) == 1;
      }
      const auto add = [&](const auto* image) {
        add_example(image,
                    shape,
                    normalization_,
                    full_scale,
                    weight,
                    at,
                    batch.images.data_ptr<float>() + e * size);
      };
      if (dataset_.reader) {
        sources[j] = read.index[static_cast<size_t>(r)];
        add(read.values.data() + r * size);
      } else {
        sources[j] = order[static_cast<size_t>(position * per_example + j)];
        add(dataset_.images.data_ptr<uint8_t>() + sources[j] * size);
      }
      targets[e * K + labels[sources[j]]] += static_cast<float>(weight);
    }
    batch.labels.data_ptr<int64_t>()[e] =
        labels[sources[lambda >= 0.5 ? 0 : 1]];
  }
  smooth_labels(batch.targets, options_.label_smoothing());
  return batch;
}

BatchPrefetcher::BatchPrefetcher(const BatchMaker& maker,
                                 int64_t epoch,
                                 int64_t first_batch,
                                 size_t depth,
                                 bool pin_memory)
    : maker_(maker),
      depth_(std::max<size_t>(1, depth)),
      pin_memory_(pin_memory) {
  worker_ =
      std::thread([this, epoch, first_batch] { produce(epoch, first_batch); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void BatchPrefetcher::produce(int64_t epoch, int64_t first_batch) {
  try {
    const auto order = maker_.epoch_order(epoch);
    for (int64_t b = first_batch; b < maker_.batches_per_epoch(); ++b) {
      auto batch = maker_.make_batch(order, epoch, b);
      if (pin_memory_) {
        batch = Batch{batch.images.pin_memory(),
                      batch.targets.pin_memory(),
                      batch.labels.pin_memory()};
      }
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || ready_.size() < depth_; });
      if (stopping_) {
        return;
      }
      ready_.push_back(std::move(batch));
      changed_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  finished_ = true;
  changed_.notify_all();
}

std::optional<Batch> BatchPrefetcher::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !ready_.empty() || finished_; });
  if (!ready_.empty()) {
    Batch batch = std::move(ready_.front());
    ready_.pop_front();
    changed_.notify_all();
    return batch;
  }
  if (error_) {
    std::rethrow_exception(error_);
  }
  return std::nullopt;
}

}  // namespace diffstride
