#include <diffstride/train/trainer.h>

#include "train/checked_file.h"
#include "train/device_tally.h"

#include <diffstride/data/batches.h>
#include <diffstride/data/device_batches.h>
#include <diffstride/train/distributed.h>
#include <diffstride/train/metrics_log.h>
#include <diffstride/train/mixed_precision.h>
#include <diffstride/train/run_folder.h>
#include <diffstride/train/train_step.h>

#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <iomanip>
#include <optional>
#include <sstream>

namespace diffstride {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Split `split` of the dataset the config names.
Dataset load_config_dataset(const TrainConfig::Data& data,
                            const std::string& split) {
  return load_dataset(data.dataset, split, data.data_dir, folder_options(data));
}

// The config's normalisation, or the dataset's where the config has none.
Normalization config_normalization(const TrainConfig::Data& data) {
  if (data.mean.empty() && data.std.empty()) {
    return dataset_normalization(data.dataset);
  }
  TORCH_CHECK(data.mean.size() == data.std.size(),
              "data.mean and data.std: expected one value per channel in "
              "both, got ",
              data.mean.size(),
              " and ",
              data.std.size());
  return {data.mean, data.std};
}

int64_t multiply_adds_now(ResNet& model, const Dataset& data) {
  const bool training = model->is_training();
  model->eval();
  ForwardTrace trace;
  {
    torch::NoGradGuard no_grad;
    model->forward_traced(torch::zeros(
                              [&] {
                                auto shape = data.example_shape();
                                shape.insert(shape.begin(), 1);
                                return shape;
                              }(),
                              model->parameters().front().options()),
                          &trace,
                          nullptr);
  }
  model->train(training);
  return trace.multiply_adds;
}

// The epoch's record, as metrics.csv and TensorBoard show it (the CSV
// columns follow this order after epoch and step).
std::vector<NamedValue> named_values(const EpochMetrics& m) {
  std::vector<NamedValue> values = {
      {"learning_rate", m.learning_rate},
      {"train/loss", m.train_loss},
      {"train/accuracy", m.train_accuracy},
      {"test/loss", m.test_loss},
      {"test/accuracy", m.test_accuracy},
      {"examples_per_second", m.examples_per_second},
      {"multiply_adds", static_cast<double>(m.multiply_adds)}};
  for (size_t i = 0; i < m.strides.size(); ++i) {
    const std::string layer = "stride" + std::to_string(i);
    values.push_back({layer + "/h", m.strides[i][0]});
    values.push_back({layer + "/w", m.strides[i][1]});
  }
  return values;
}

// Examples per second count every rank: the batch is the global one.
// `where` names the processes and the device ("2 x cpu").
void print_progress(std::ostream& out,
                    const TrainConfig& config,
                    const std::string& where,
                    const ResumePoint& point,
                    int64_t total_steps,
                    double steps_per_second) {
  const RunPosition& p = point.position;
  out << "\r[" << where << "] epoch " << p.epoch + 1 << "/"
      << config.train.epochs << "  step " << p.step << "/" << total_steps
      << "  loss " << std::fixed << std::setprecision(4)
      << point.tally.loss_sum / point.tally.seen << "  " << std::setprecision(1)
      << steps_per_second * config.data.batch_size << " ex/s  ETA "
      << std::setprecision(0) << (total_steps - p.step) / steps_per_second
      << " s   " << std::defaultfloat << std::flush;
}

// Batch norm statistics are kept per process while training (as Keras'
// MirroredStrategy does); evaluation and checkpoints use their average over
// the processes, as MirroredStrategy reads them.
void average_buffers(Collectives& collectives, ResNet& model) {
  std::vector<at::Tensor> floating;
  for (auto& buffer : model->buffers()) {
    if (buffer.is_floating_point()) {
      floating.push_back(buffer);
    }
  }
  torch::NoGradGuard no_grad;
  collectives.average(floating);
}

// Parameters and buffers as rank 0 has them, on every rank.
void broadcast_model(Collectives& collectives, ResNet& model) {
  torch::NoGradGuard no_grad;
  auto tensors = model->parameters();
  for (auto& buffer : model->buffers()) {
    tensors.push_back(buffer);
  }
  collectives.broadcast_from_first(tensors);
}

// The largest batch a run allocates (and a few ahead of the model): 2^30
// float32 values, 4 GiB.
constexpr double kMaxBatchValues = 1 << 30;

// The splits make batches of one example shape, of a bounded size, that
// split evenly across the processes.
void check_batches(const TrainConfig::Data& data,
                   const Dataset& train_data,
                   const Dataset& test_data,
                   int64_t world_size) {
  const auto shape = train_data.example_shape();
  TORCH_CHECK(shape == test_data.example_shape(),
              data.dataset,
              " in ",
              data.data_dir.empty() ? "its default folder" : data.data_dir,
              ": the training images are ",
              c10::IntArrayRef(shape),
              " (C, H, W) but the test images ",
              c10::IntArrayRef(test_data.example_shape()),
              "; both splits must have one image size");
  double values = static_cast<double>(data.batch_size);
  for (const auto size : shape) {
    values *= static_cast<double>(size);
  }
  TORCH_CHECK(values <= kMaxBatchValues,
              "data.batch_size ",
              data.batch_size,
              " examples of ",
              c10::IntArrayRef(shape),
              " make a batch of ",
              values * 4 / (1 << 30),
              " GiB; expected at most 4 GiB: lower data.batch_size or the "
              "example size (data.image_size, data.clip_samples)");
  TORCH_CHECK(data.batch_size % world_size == 0,
              "data.batch_size ",
              data.batch_size,
              " is the global batch: it must split evenly across the ",
              world_size,
              " processes");
}

// What every rank of a run must agree on, one "key = value" line each: the
// config (its keys as section.key) but for what is each process's own
// (where it writes, reads data from, and its threads and device), the
// number of processes, and the data's sizes and labels.
std::string agreement_text(TrainConfig config,
                           const Dataset& train_data,
                           const Dataset& test_data,
                           int64_t world_size) {
  config.train.out = config.data.data_dir = config.train.device = "";
  config.train.threads = config.data.workers = 0;
  std::ostringstream out;
  std::istringstream toml(to_toml(config));
  std::string section;
  for (std::string line; std::getline(toml, line);) {
    if (line.size() > 2 && line.front() == '[') {
      section = line.substr(1, line.size() - 2) + ".";
    } else if (!line.empty()) {
      out << section << line << "\n";
    }
  }
  out << "processes = " << world_size << "\n";
  for (const auto* data : {&train_data, &test_data}) {
    const auto name = data == &train_data ? "train" : "test";
    const auto labels = data->labels.contiguous();
    uint64_t hash = 1469598103934665603ull;  // FNV-1a of the labels
    for (int64_t i = 0; i < labels.numel(); ++i) {
      hash = (hash ^ static_cast<uint64_t>(labels.data_ptr<int64_t>()[i])) *
             1099511628211ull;
    }
    out << "data." << name << " = " << data->size() << " examples of "
        << c10::IntArrayRef(data->example_shape()) << ", " << data->num_classes
        << " classes, labels hash " << hash << "\n";
  }
  return out.str();
}

}  // namespace

torch::Device training_device(const std::string& name,
                              const std::string& option) {
  if (name == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA)
                                       : torch::Device(torch::kCPU);
  }
  const torch::Device device(name);
  TORCH_CHECK(!device.is_cuda() ||
                  (torch::cuda::is_available() &&
                   (!device.has_index() ||
                    device.index() <
                        static_cast<int64_t>(torch::cuda::device_count()))),
              option,
              ": ",
              name,
              " requested, but ",
              torch::cuda::is_available()
                  ? "this machine has " +
                        std::to_string(torch::cuda::device_count()) +
                        " CUDA device(s)"
                  : std::string("no CUDA device is available (or LibTorch "
                                "was built without CUDA)"));
  return device;
}

void to_channels_last(ResNet& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) {
      p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
}

ResNet build_model(const TrainConfig& config,
                   int64_t in_channels,
                   int64_t num_classes) {
  const auto& m = config.model;
  ResNetOptions options =
      m.factory == kCustomResNetFactory
          ? ResNetOptions(m.filters, m.strides).id_only(m.id_only)
          : resnet_options(m.factory);
  if (!m.filters.empty())
    options.filters(m.filters);
  if (!m.strides.empty())
    options.strides(m.strides);
  if (m.layers_per_block)
    options.layers_per_block(*m.layers_per_block);
  auto diffstride = DiffStrideOptions()
                        .smoothness_factor(m.smoothness_factor)
                        .cropping(m.cropping)
                        .shared_stride(m.shared_stride)
                        .trainable(m.trainable_strides)
                        .lower_limit_stride(m.lower_limit_stride)
                        .upper_limit_stride(m.upper_limit_stride);
  options.pooling(parse_pooling(m.pooling))
      .diffstride(diffstride)
      .in_channels(in_channels)
      .num_classes(num_classes);
  try {
    return ResNet(options);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false,
                "the config's [model] (model.factory, filters, strides, "
                "layers_per_block) makes no ResNet here: ",
                error.what_without_backtrace());
  }
}

Evaluation evaluate(ResNet& model,
                    const Dataset& test,
                    const Normalization& normalization,
                    int64_t batch_size,
                    Collectives* collectives,
                    const std::atomic<bool>* interrupt) {
  const bool training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  const int64_t rank = collectives ? collectives->rank() : 0;
  const int64_t ranks = collectives ? collectives->world_size() : 1;
  BatchMaker maker(test,
                   normalization,
                   BatchOptions()
                       .batch_size(batch_size)
                       .shuffle(false)
                       .drop_last(false)
                       .shard(rank)
                       .shards(ranks));
  const auto device = model->parameters().front().device();
  DeviceBatches batches(maker, 0, 0, device, at::MemoryFormat::Contiguous);
  // loss sum, correct, examples, interrupted: summed over this rank's
  // shards, then over the ranks.
  auto sums =
      torch::zeros({4}, torch::TensorOptions(device).dtype(at::kDouble));
  while (auto batch = batches.next()) {
    if (interrupt != nullptr && interrupt->load()) {
      sums[3] = 1;
      break;
    }
    const auto logits = model(batch->images).to(at::kFloat);
    const auto& labels = batch->labels;
    sums[0] += torch::nn::functional::cross_entropy(
        logits,
        labels,
        torch::nn::functional::CrossEntropyFuncOptions().reduction(
            torch::kSum));
    sums[1] += logits.argmax(1).eq(labels).sum();
    sums[2] += batch->labels.size(0);
  }
  if (collectives != nullptr) {
    collectives->sum(sums);
  }
  model->train(training);
  const auto host = sums.cpu();
  Evaluation result;
  result.examples = static_cast<int64_t>(host[2].item<double>());
  const double examples = std::max(1.0, host[2].item<double>());
  result.loss = host[0].item<double>() / examples;
  result.accuracy = host[1].item<double>() / examples;
  result.interrupted = host[3].item<double>() > 0;
  return result;
}

namespace {

// The CUDA device of this process: one GPU per process on each machine, as
// torchrun expects, when the config names no index and there are several.
torch::Device run_device(const TrainConfig& config,
                         const LauncherEnvironment& launcher) {
  const auto device = training_device(config.train.device);
  if (device.is_cuda() && !device.has_index() && launcher.world_size > 1) {
    return training_device(
        torch::Device(torch::kCUDA,
                      static_cast<c10::DeviceIndex>(launcher.local_rank))
            .str());
  }
  return device;
}

c10::ScalarType checked_precision(const TrainConfig& config,
                                  const torch::Device& device) {
  const auto precision = parse_precision(config.train.precision);
  check_precision_supported(precision, device);
  return precision;
}

// The config's model, its initial weights drawn from train.seed, on
// `device` in the config's memory format.
ResNet model_on(const TrainConfig& config,
                const Dataset& data,
                const torch::Device& device) {
  torch::manual_seed(config.train.seed);
  auto model = build_model(config, data.example_shape()[0], data.num_classes);
  model->to(device);
  if (config.train.channels_last) {
    to_channels_last(model);
  }
  return model;
}

// The test split, checked against the training split (check_batches).
Dataset checked_test_split(const TrainConfig& config,
                           const Dataset& train_data,
                           int64_t world_size) {
  auto test_data = load_config_dataset(config.data, "test");
  check_batches(config.data, train_data, test_data, world_size);
  return test_data;
}

BatchOptions training_batches(const TrainConfig& config,
                              const Collectives& collectives) {
  return BatchOptions()
      .batch_size(config.data.batch_size)
      .seed(config.train.seed)
      .augment(config.data.augment)
      .mixup_alpha(config.data.mixup_alpha)
      .label_smoothing(config.loss.label_smoothing)
      .shard(collectives.rank())
      .shards(collectives.world_size());
}

// One run of the recipe (docs/training.md). The constructor sets it up:
// run folder, data, model, process group, optimiser, and the checkpoint to
// resume from. run() is the loop: per step learning rate, step, tally, log,
// stop?; per epoch evaluate, log, checkpoint.
class Trainer {
 public:
  Trainer(const TrainConfig& config, const TrainOptions& options);
  // Gives cuDNN's algorithm search back its setting from before the run.
  ~Trainer() {
    at::globalContext().setBenchmarkCuDNN(cudnn_benchmark_before_);
  }
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
  std::vector<EpochMetrics> run();

 private:
  RunFolder open_folder() const;
  ResumePoint load_resume_point();
  void print_setup() const;
  void start_epoch();
  bool step(const Batch& batch);
  void advance();
  bool is_read_step(bool interrupted_here) const;
  detail::DeviceTally::Reading read_figures();
  void check_losses_finite(const detail::DeviceTally::Reading& reading) const;
  void check_losses_before_rethrow();
  void log_step(const detail::DeviceTally::Reading& reading);
  bool stop_requested(const detail::DeviceTally::Reading& reading) const;
  bool stop_after_reached() const {
    return options_.stop_after_steps >= 0 &&
           steps_this_call() >= options_.stop_after_steps;
  }
  std::optional<EpochMetrics> evaluate_epoch();
  void log_epoch(const EpochMetrics& metrics);
  void checkpoint(const ResumePoint& point);
  void next_epoch();
  void say_stopped(const std::string& when);

  int64_t steps_this_call() const {
    return point_.position.step - first_step_;
  }

  const bool cudnn_benchmark_before_ = at::globalContext().benchmarkCuDNN();
  const TrainConfig& config_;
  const TrainOptions& options_;
  const LauncherEnvironment launcher_;
  // Rank 0 alone writes the run folder; the others only read a checkpoint.
  const bool writer_;
  const RunFolder folder_;
  const Dataset train_data_, test_data_;
  const Normalization normalization_;
  const torch::Device device_;
  const c10::ScalarType precision_;
  const at::MemoryFormat memory_format_;
  ResNet model_;
  Collectives collectives_;
  std::ostream* const progress_;
  torch::optim::SGD optimizer_;
  LossScaler scaler_;
  ResumePoint point_;
  GradientAverager averager_;
  StepOptions step_options_;
  BatchMaker maker_;
  const int64_t per_epoch_;
  const int64_t first_step_;
  std::optional<MetricsLog> log_;
  // Per step, summed over the ranks: loss x examples, correct, examples,
  // and whether any rank was interrupted; and their sums over the epoch.
  at::Tensor step_sums_;
  detail::DeviceTally device_tally_;
  double learning_rate_ = 0;
  Clock::time_point run_start_ = Clock::now(), epoch_start_;
  double seconds_before_epoch_ = 0;
  std::vector<EpochMetrics> completed_;
};

Trainer::Trainer(const TrainConfig& config, const TrainOptions& options)
    : config_(config),
      options_(options),
      launcher_(launcher_environment()),
      writer_(launcher_.rank == 0),
      folder_(open_folder()),
      train_data_(load_config_dataset(config.data, "train")),
      test_data_(checked_test_split(config, train_data_, launcher_.world_size)),
      normalization_(config_normalization(config.data)),
      device_(run_device(config, launcher_)),
      precision_(checked_precision(config, device_)),
      memory_format_(config.train.channels_last ? at::MemoryFormat::ChannelsLast
                                                : at::MemoryFormat::Contiguous),
      model_(model_on(config, train_data_, device_)),
      collectives_(
          launcher_,
          device_,
          std::chrono::milliseconds(static_cast<int64_t>(
              config.train.collective_timeout_seconds * 1000)),
          agreement_text(config, train_data_, test_data_, launcher_.world_size),
          options.interrupt),
      progress_(writer_ ? options.progress : nullptr),
      optimizer_(model_->parameters(),
                 torch::optim::SGDOptions(config.optimizer.values[0])
                     .momentum(config.optimizer.momentum)),
      scaler_(precision_ == at::kHalf),
      point_(load_resume_point()),
      averager_(collectives_, model_->parameters()),
      maker_(
          train_data_, normalization_, training_batches(config, collectives_)),
      per_epoch_(maker_.batches_per_epoch()),
      first_step_(point_.position.step),
      step_sums_(
          torch::zeros({4}, torch::TensorOptions(device_).dtype(at::kDouble))),
      device_tally_(device_) {
  TORCH_CHECK(per_epoch_ > 0,
              "data.batch_size ",
              config.data.batch_size,
              " is larger than an epoch of ",
              train_data_.size(),
              " examples");
  if (device_.is_cuda()) {
    at::globalContext().setBenchmarkCuDNN(config.train.cudnn_benchmark);
  }
  broadcast_model(collectives_, model_);
  step_options_.precision = precision_;
  step_options_.scaler = scaler_.enabled() ? &scaler_ : nullptr;
  step_options_.averager = &averager_;
  if (writer_) {
    log_.emplace(folder_.path().string());
  }
  print_setup();
}

RunFolder Trainer::open_folder() const {
  const auto& out = config_.train.out;
  return !writer_          ? RunFolder::open(out)
         : options_.resume ? RunFolder::resume(out)
                           : RunFolder::create(out, config_);
}

// Every rank reads the same checkpoint (the folder is shared); rank 0 also
// drops the metrics rows past it.
ResumePoint Trainer::load_resume_point() {
  if (!options_.resume) {
    return ResumePoint();
  }
  const auto point = writer_ ? folder_.load_checkpoint(*model_, optimizer_)
                             : folder_.read_checkpoint(*model_, optimizer_);
  scaler_.restore(point.position.loss_scale,
                  point.position.loss_scale_good_steps);
  return point;
}

void Trainer::print_setup() const {
  if (progress_ == nullptr) {
    return;
  }
  *progress_ << "device " << device_ << ", precision "
             << config_.train.precision
             << (config_.train.channels_last ? ", channels last" : "");
  const int64_t ranks = collectives_.world_size();
  if (ranks > 1) {
    *progress_ << "; " << ranks << " processes (" << collectives_.backend()
               << "), global batch " << config_.data.batch_size << " = "
               << ranks << " x " << config_.data.batch_size / ranks;
  }
  *progress_ << "\n";
}

std::vector<EpochMetrics> Trainer::run() {
  for (; point_.position.epoch < config_.train.epochs; next_epoch()) {
    start_epoch();
    DeviceBatches batches(maker_,
                          point_.position.epoch,
                          point_.position.batch,
                          device_,
                          memory_format_);
    while (auto batch = batches.next()) {
      learning_rate_ =
          learning_rate_at(config_.optimizer, point_.position.step);
      const bool interrupted_here = step(*batch);
      advance();
      if (!is_read_step(interrupted_here)) {
        continue;
      }
      const auto reading = read_figures();
      log_step(reading);
      if (stop_requested(reading)) {
        average_buffers(collectives_, model_);
        checkpoint(point_);
        say_stopped("at step " + std::to_string(point_.position.step));
        return completed_;
      }
    }
    average_buffers(collectives_, model_);
    const auto metrics = evaluate_epoch();
    if (!metrics) {
      // The epoch's training is done: a resumed run evaluates it again.
      checkpoint(point_);
      say_stopped("while evaluating epoch " +
                  std::to_string(point_.position.epoch + 1) + " after step " +
                  std::to_string(point_.position.step));
      return completed_;
    }
    log_epoch(*metrics);
    checkpoint(ResumePoint{
        RunPosition{point_.position.epoch + 1, 0, point_.position.step},
        EpochTally()});
  }
  if (writer_) {
    folder_.save_model(*model_);
  }
  return completed_;
}

void Trainer::start_epoch() {
  epoch_start_ = Clock::now();
  seconds_before_epoch_ = point_.tally.seconds;
  device_tally_.restart(point_.tally);
}

// One step; its figures, summed over the ranks, join the epoch's on the
// device. Returns whether this process was interrupted.
bool Trainer::step(const Batch& batch) {
  StepResult result;
  try {
    result = train_step(
        model_, optimizer_, batch, config_.loss, learning_rate_, step_options_);
  } catch (const c10::Error&) {
    // Weights poisoned by an earlier non-finite loss fail in the layers
    // (a DiffStride stride of NaN): that loss is the error to report.
    check_losses_before_rethrow();
    throw;
  }
  const bool interrupted =
      options_.interrupt != nullptr && options_.interrupt->load();
  const auto n = static_cast<double>(batch.labels.size(0));
  step_sums_[0] = result.data_loss.to(at::kDouble) * n;
  step_sums_[1] = result.correct.to(at::kDouble);
  step_sums_[2] = n;
  step_sums_[3] = interrupted ? 1.0 : 0.0;
  collectives_.sum(step_sums_);
  device_tally_.add(step_sums_, point_.position.step + 1);
  return interrupted;
}

void Trainer::advance() {
  ++point_.position.step;
  ++point_.position.batch;
  if (options_.after_step) {
    options_.after_step(model_, point_.position.step);
  }
}

// The host reads the figures every train.log_every_steps steps, at the end
// of an epoch and at a stop: every rank at the same steps, since the ranks
// agree on an interrupt there. One process has no one to agree with and
// reads when it is interrupted (docs/training.md).
bool Trainer::is_read_step(bool interrupted_here) const {
  return point_.position.batch == per_epoch_ ||
         steps_this_call() % config_.train.log_every_steps == 0 ||
         stop_after_reached() ||
         (interrupted_here && collectives_.world_size() == 1);
}

// The epoch's figures as the device has them, checked for a non-finite
// loss.
detail::DeviceTally::Reading Trainer::read_figures() {
  const auto reading = device_tally_.read(step_sums_);
  EpochTally& t = point_.tally;
  t.loss_sum = reading.sums.loss_sum;
  t.correct = reading.sums.correct;
  t.seen = reading.sums.seen;
  t.seconds = seconds_before_epoch_ + seconds_since(epoch_start_);
  check_losses_finite(reading);
  return reading;
}

// A non-finite loss poisons every parameter at the next step: the run
// stops at the read that sees it, before anything is written, so the last
// checkpoint stays as it was. (A float16 step that overflowed was skipped
// instead: the loss scale handles that.)
void Trainer::check_losses_finite(
    const detail::DeviceTally::Reading& reading) const {
  const RunPosition& p = point_.position;
  const int64_t bad = reading.first_nonfinite_step;
  TORCH_CHECK(bad < 0,
              "step ",
              bad,
              " (epoch ",
              p.epoch + 1,
              ", batch ",
              p.batch - (p.step - bad),
              "): the training loss is not finite; the run stops here and its "
              "last checkpoint, if any, is unchanged. Lower the learning "
              "rate or check the data, then resume or start a new run");
}

// Throws the non-finite-loss error when the device noted one; otherwise,
// or when the device cannot be read any more (a failed CUDA context),
// returns, and the caller rethrows the step's own error.
void Trainer::check_losses_before_rethrow() {
  std::optional<detail::DeviceTally::Reading> reading;
  try {
    reading = device_tally_.read(step_sums_);
  } catch (const c10::Error&) {
    return;
  }
  check_losses_finite(*reading);
}

void Trainer::log_step(const detail::DeviceTally::Reading& reading) {
  if (progress_ != nullptr) {
    print_progress(
        *progress_,
        config_,
        std::to_string(collectives_.world_size()) + " x " + device_.str(),
        point_,
        per_epoch_ * config_.train.epochs,
        steps_this_call() / seconds_since(run_start_));
  }
  if (log_ && steps_this_call() % config_.train.log_every_steps == 0) {
    log_->add_scalar(
        "train/step_loss", reading.last_step_loss, point_.position.step);
  }
}

bool Trainer::stop_requested(
    const detail::DeviceTally::Reading& reading) const {
  return reading.interrupted || stop_after_reached();
}

// The epoch's metrics, or none when an interrupt stopped the evaluation.
std::optional<EpochMetrics> Trainer::evaluate_epoch() {
  const EpochTally& t = point_.tally;
  const auto test = evaluate(model_,
                             test_data_,
                             normalization_,
                             256,
                             &collectives_,
                             options_.interrupt);
  if (test.interrupted) {
    return std::nullopt;
  }
  EpochMetrics m;
  m.epoch = point_.position.epoch + 1;
  m.step = point_.position.step;
  m.learning_rate = learning_rate_;
  m.train_loss = t.loss_sum / std::max(1.0, t.seen);
  m.train_accuracy = t.correct / std::max(1.0, t.seen);
  m.test_loss = test.loss;
  m.test_accuracy = test.accuracy;
  m.examples_per_second = t.seen / std::max(1e-9, t.seconds);
  m.multiply_adds = multiply_adds_now(model_, train_data_);
  m.strides = model_->current_strides();
  return m;
}

void Trainer::log_epoch(const EpochMetrics& m) {
  if (progress_ != nullptr) {
    *progress_ << std::fixed << std::setprecision(4) << "\nepoch " << m.epoch
               << ": train loss " << m.train_loss << ", accuracy "
               << m.train_accuracy << "; test loss " << m.test_loss
               << ", accuracy " << m.test_accuracy << std::defaultfloat << "\n";
    for (const auto* data : {&train_data_, &test_data_}) {
      if (data->reader && data->reader->skipped_files() > 0) {
        *progress_ << "  " << (data == &train_data_ ? "training" : "test")
                   << " split: "
                   << skipped_files_message(data->reader->skipped_files())
                   << "\n";
      }
    }
  }
  if (log_) {
    log_->add_epoch(m.epoch, m.step, named_values(m));
    log_->flush();
  }
  completed_.push_back(m);
}

// Call with the batch norm statistics averaged over the ranks.
void Trainer::checkpoint(const ResumePoint& point) {
  if (writer_) {
    ResumePoint saved = point;
    saved.position.loss_scale = scaler_.scale();
    saved.position.loss_scale_good_steps = scaler_.good_steps();
    folder_.save_checkpoint(*model_, optimizer_, saved);
  }
}

void Trainer::next_epoch() {
  ++point_.position.epoch;
  point_.position.batch = 0;
  point_.tally = EpochTally();
}

void Trainer::say_stopped(const std::string& when) {
  if (log_) {
    log_->flush();
  }
  if (progress_ != nullptr) {
    *progress_ << "\nstopped " << when
               << "; checkpoint written: continue with --resume "
               << folder_.path().string() << "\n";
  }
}

}  // namespace

std::vector<EpochMetrics> train(const TrainConfig& config,
                                const TrainOptions& options) {
  if (config.train.threads > 0) {
    torch::set_num_threads(static_cast<int>(config.train.threads));
  }
  Trainer trainer(config, options);
  return trainer.run();
}

namespace {

// A checkpoint's run read back for testing: its config, the test split and
// the model with the checkpoint's weights.
struct CheckpointUnderTest {
  TrainConfig config;
  Dataset test;
  ResNet model{nullptr};
};

CheckpointUnderTest load_for_test(const std::string& path) {
  const std::filesystem::path file = path;
  const auto config_path = file.parent_path() / "config.toml";
  TORCH_CHECK(
      std::filesystem::exists(config_path),
      config_path.string(),
      " not found: a checkpoint is read with the config.toml of its run");
  CheckpointUnderTest run;
  run.config = load_train_config(config_path.string());
  // A damaged file is reported before the data is looked for.
  detail::verified_content(file, "checkpoint or model");
  run.test = load_config_dataset(run.config.data, "test");
  run.model = build_model(
      run.config, run.test.example_shape()[0], run.test.num_classes);
  load_model_weights(path, *run.model);
  return run;
}

// A dump goes to a new path, or with `replace` over a regular file that is
// neither the checkpoint read nor one of a run folder's own files.
void check_dump_path(const std::string& checkpoint,
                     const std::string& path,
                     bool replace) {
  namespace fs = std::filesystem;
  const auto status = fs::symlink_status(path);
  if (!fs::exists(status)) {
    return;
  }
  TORCH_CHECK(replace,
              path,
              ": exists; the dump goes to a new path (or pass --force to "
              "replace a file)");
  TORCH_CHECK(fs::is_regular_file(status),
              path,
              ": exists and is not a regular file: nothing was written");
  std::error_code error;
  TORCH_CHECK(
      !RunFolder::is_run_file(path) && !fs::equivalent(path, checkpoint, error),
      path,
      ": the checkpoint read or a file of a run folder (",
      fs::path(path).filename().string(),
      "); the dump goes elsewhere");
}

}  // namespace

Evaluation evaluate_checkpoint(const std::string& path) {
  auto run = load_for_test(path);
  return evaluate(
      run.model, run.test, config_normalization(run.config.data), 256);
}

void dump_test_logits(const std::string& checkpoint,
                      const std::string& path,
                      int64_t count,
                      bool replace) {
  check_dump_path(checkpoint, path, replace);
  auto run = load_for_test(checkpoint);
  run.model->eval();
  torch::NoGradGuard no_grad;
  BatchMaker maker(
      run.test,
      config_normalization(run.config.data),
      BatchOptions().batch_size(count).shuffle(false).drop_last(false));
  const auto batch = maker.make_batch(maker.epoch_order(0), 0, 0);
  c10::Dict<std::string, at::Tensor> dump;
  dump.insert("images", batch.images);
  dump.insert("labels", batch.labels);
  dump.insert("logits", run.model(batch.images));
  if (replace) {
    detail::replace_file(path, python_tensor_dict(dump));
  } else {
    detail::create_file(path, python_tensor_dict(dump));
  }
}

}  // namespace diffstride
