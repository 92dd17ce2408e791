#include <diffstride/train/trainer.h>

#include "train/checked_file.h"

#include <diffstride/data/batches.h>
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
    model->forward_traced(
        torch::zeros(
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
                    const RunPosition& p,
                    int64_t total_steps,
                    double steps_per_second) {
  out << "\r[" << where << "] epoch " << p.epoch + 1 << "/"
      << config.train.epochs << "  step " << p.step << "/" << total_steps
      << "  loss " << std::fixed << std::setprecision(4)
      << p.loss_sum / p.seen << "  " << std::setprecision(1) << steps_per_second * config.data.batch_size
      << " ex/s  ETA " << std::setprecision(0)
      << (total_steps - p.step) / steps_per_second << " s   "
      << std::defaultfloat << std::flush;
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

// Convolution weights (4-D parameters) in NHWC order, for
// train.channels_last.
void to_channels_last(ResNet& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    if (p.dim() == 4) {
      p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
}

// The batch on `device`: pinned host memory and asynchronous copies to a
// GPU, the tensors themselves on the CPU; images in `format`.
Batch batch_on(const Batch& batch,
               const torch::Device& device,
               at::MemoryFormat format) {
  Batch moved = batch;
  if (!device.is_cpu()) {
    moved.images = batch.images.pin_memory().to(device, /*non_blocking=*/true);
    moved.targets =
        batch.targets.pin_memory().to(device, /*non_blocking=*/true);
    moved.labels = batch.labels.pin_memory().to(device, /*non_blocking=*/true);
  }
  moved.images = moved.images.contiguous(format);
  return moved;
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

torch::Device training_device(const std::string& name) {
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
              "train.device: ",
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

}  // namespace

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
  BatchPrefetcher batches(maker, 0);
  const auto device = model->parameters().front().device();
  // loss sum, correct, examples, interrupted: summed over this rank's
  // shards, then over the ranks.
  auto sums = torch::zeros({4}, torch::TensorOptions(device).dtype(at::kDouble));
  while (auto batch = batches.next()) {
    if (interrupt != nullptr && interrupt->load()) {
      sums[3] = 1;
      break;
    }
    const auto logits = model(batch->images.to(device)).to(at::kFloat);
    const auto labels = batch->labels.to(device);
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

std::vector<EpochMetrics> train(const TrainConfig& config,
                                const TrainOptions& options) {
  const auto launcher = launcher_environment();
  const bool writer = launcher.rank == 0;
  // Rank 0 alone writes the run folder; the others only read a checkpoint.
  const auto folder = !writer          ? RunFolder::open(config.train.out)
                     : options.resume ? RunFolder::resume(config.train.out)
                                      : RunFolder::create(config.train.out, config);
  if (config.train.threads > 0) {
    torch::set_num_threads(static_cast<int>(config.train.threads));
  }
  const auto train_data = load_config_dataset(config.data, "train");
  const auto test_data = load_config_dataset(config.data, "test");
  check_batches(config.data, train_data, test_data, launcher.world_size);
  const auto normalization = config_normalization(config.data);

  torch::manual_seed(config.train.seed);
  auto model = build_model(
      config, train_data.example_shape()[0], train_data.num_classes);
  auto device = training_device(config.train.device);
  if (device.is_cuda() && !device.has_index() && launcher.world_size > 1) {
    // One GPU per process on each machine, as torchrun expects.
    device = torch::Device(torch::kCUDA,
                           static_cast<c10::DeviceIndex>(launcher.local_rank));
    device = training_device(device.str());
  }
  const auto precision = parse_precision(config.train.precision);
  check_precision_supported(precision, device);
  const auto memory_format = config.train.channels_last
                                 ? at::MemoryFormat::ChannelsLast
                                 : at::MemoryFormat::Contiguous;
  model->to(device);
  if (config.train.channels_last) {
    to_channels_last(model);
  }
  Collectives collectives(
      launcher,
      device,
      std::chrono::milliseconds(static_cast<int64_t>(
          config.train.collective_timeout_seconds * 1000)),
      agreement_text(config, train_data, test_data, launcher.world_size),
      options.interrupt);
  std::ostream* progress = writer ? options.progress : nullptr;
  const std::string where =
      std::to_string(collectives.world_size()) + " x " + device.str();
  if (progress != nullptr) {
    *progress << "device " << device << ", precision "
              << config.train.precision
              << (config.train.channels_last ? ", channels last" : "");
    if (collectives.world_size() > 1) {
      *progress << "; " << collectives.world_size() << " processes ("
                << collectives.backend() << "), global batch "
                << config.data.batch_size << " = "
                << collectives.world_size() << " x "
                << config.data.batch_size / collectives.world_size();
    }
    *progress << "\n";
  }
  torch::optim::SGD optimizer(
      model->parameters(),
      torch::optim::SGDOptions(config.optimizer.values[0])
          .momentum(config.optimizer.momentum));
  LossScaler scaler(precision == at::kHalf);
  RunPosition position;
  if (options.resume) {
    // Every rank reads the same checkpoint (the folder is shared); rank 0
    // also drops the metrics rows past it.
    position = writer ? folder.load_checkpoint(*model, optimizer)
                      : folder.read_checkpoint(*model, optimizer);
    scaler.restore(position.loss_scale, position.loss_scale_good_steps);
  }
  broadcast_model(collectives, model);
  GradientAverager averager(collectives, model->parameters());
  StepOptions step_options;
  step_options.precision = precision;
  step_options.scaler = scaler.enabled() ? &scaler : nullptr;
  step_options.averager = &averager;
  BatchMaker maker(train_data,
                   normalization,
                   BatchOptions()
                       .batch_size(config.data.batch_size)
                       .seed(config.train.seed)
                       .augment(config.data.augment)
                       .mixup_alpha(config.data.mixup_alpha)
                       .label_smoothing(config.loss.label_smoothing)
                       .shard(collectives.rank())
                       .shards(collectives.world_size()));
  const int64_t per_epoch = maker.batches_per_epoch();
  TORCH_CHECK(per_epoch > 0,
              "data.batch_size ",
              config.data.batch_size,
              " is larger than an epoch of ",
              train_data.size(),
              " examples");
  const int64_t total_steps = per_epoch * config.train.epochs;
  std::optional<MetricsLog> log;
  if (writer) {
    log.emplace(folder.path().string());
  }
  // Call with the batch norm statistics averaged over the ranks.
  const auto save_checkpoint = [&](const RunPosition& p) {
    if (writer) {
      RunPosition saved = p;
      saved.loss_scale = scaler.scale();
      saved.loss_scale_good_steps = scaler.good_steps();
      folder.save_checkpoint(*model, optimizer, saved);
    }
  };
  std::vector<EpochMetrics> completed;
  const auto run_start = Clock::now();
  const int64_t first_step = position.step;
  double lr = 0;
  // Per step, summed over the ranks: loss x examples, correct, examples,
  // and whether any rank was interrupted.
  auto step_sums = torch::zeros(
      {4}, torch::TensorOptions(device).dtype(at::kDouble));

  for (; position.epoch < config.train.epochs; ++position.epoch) {
    const auto epoch_start = Clock::now();
    const double seconds_before = position.seconds;
    BatchPrefetcher batches(maker, position.epoch, position.batch);
    while (auto batch = batches.next()) {
      lr = learning_rate_at(config.optimizer, position.step);
      const auto step = train_step(model,
                                   optimizer,
                                   batch_on(*batch, device, memory_format),
                                   config.loss,
                                   lr,
                                   step_options);
      const bool interrupted_here =
          options.interrupt != nullptr && options.interrupt->load();
      const auto n = static_cast<double>(batch->labels.size(0));
      step_sums[0] = step.data_loss.to(at::kDouble) * n;
      step_sums[1] = step.correct.to(at::kDouble);
      step_sums[2] = n;
      step_sums[3] = interrupted_here ? 1.0 : 0.0;
      collectives.sum(step_sums);
      const auto sums = step_sums.cpu();
      const double loss_sum = sums[0].item<double>();
      const double examples = sums[2].item<double>();
      const double data_loss = loss_sum / examples;
      // A non-finite loss poisons every parameter at the next step: stop
      // before anything is written, so the last checkpoint stays as it was.
      // (A float16 step that overflowed was skipped instead: the loss scale
      // handles that.)
      TORCH_CHECK(std::isfinite(data_loss),
                  "step ",
                  position.step + 1,
                  " (epoch ",
                  position.epoch + 1,
                  ", batch ",
                  position.batch + 1,
                  "): the training loss is ",
                  data_loss,
                  "; the run stops here and its last checkpoint, if any, is "
                  "unchanged. Lower the learning rate or check the data, "
                  "then resume or start a new run");
      position.loss_sum += loss_sum;
      position.correct += sums[1].item<double>();
      position.seen += examples;
      ++position.step;
      ++position.batch;
      if (options.after_step) {
        options.after_step(model, position.step);
      }
      const int64_t steps_this_call = position.step - first_step;
      position.seconds = seconds_before + seconds_since(epoch_start);
      if (progress != nullptr &&
          (position.batch % 10 == 0 || position.batch == per_epoch)) {
        print_progress(*progress,
                       config,
                       where,
                       position,
                       total_steps,
                       steps_this_call / seconds_since(run_start));
      }
      if (log && steps_this_call % config.train.log_every_steps == 0) {
        log->add_scalar("train/step_loss", data_loss, position.step);
      }
      const bool interrupted = sums[3].item<double>() > 0;
      if (interrupted || (options.stop_after_steps >= 0 &&
                          steps_this_call >= options.stop_after_steps)) {
        average_buffers(collectives, model);
        save_checkpoint(position);
        if (log) {
          log->flush();
        }
        if (progress != nullptr) {
          *progress << "\nstopped at step " << position.step
                    << "; checkpoint written: continue with --resume "
                    << folder.path().string() << "\n";
        }
        return completed;
      }
    }
    // End of epoch: evaluate, record, checkpoint.
    average_buffers(collectives, model);
    EpochMetrics m;
    m.epoch = position.epoch + 1;
    m.step = position.step;
    m.learning_rate = lr;
    m.train_loss = position.loss_sum / std::max(1.0, position.seen);
    m.train_accuracy = position.correct / std::max(1.0, position.seen);
    const auto test = evaluate(
        model, test_data, normalization, 256, &collectives, options.interrupt);
    if (test.interrupted) {
      // The epoch's training is done: a resumed run evaluates it again.
      save_checkpoint(position);
      if (progress != nullptr) {
        *progress << "\nstopped while evaluating epoch " << position.epoch + 1
                  << "; checkpoint written: continue with --resume "
                  << folder.path().string() << "\n";
      }
      return completed;
    }
    m.test_loss = test.loss;
    m.test_accuracy = test.accuracy;
    m.examples_per_second = position.seen / std::max(1e-9, position.seconds);
    m.multiply_adds = multiply_adds_now(model, train_data);
    m.strides = model->current_strides();
    if (progress != nullptr) {
      *progress << std::fixed << std::setprecision(4) << "\nepoch "
                << m.epoch << ": train loss " << m.train_loss
                << ", accuracy " << m.train_accuracy << "; test loss "
                << m.test_loss << ", accuracy " << m.test_accuracy
                << std::defaultfloat << "\n";
      for (const auto* data : {&train_data, &test_data}) {
        if (data->reader && data->reader->skipped_files() > 0) {
          *progress << "  " << (data == &train_data ? "training" : "test")
                    << " split: "
                    << skipped_files_message(data->reader->skipped_files())
                    << "\n";
        }
      }
    }
    if (log) {
      log->add_epoch(m.epoch, m.step, named_values(m));
      log->flush();
    }
    completed.push_back(m);
    RunPosition next;
    next.epoch = position.epoch + 1;
    next.step = position.step;
    save_checkpoint(next);
    position.batch = 0;
    position.loss_sum = position.correct = position.seen = position.seconds = 0;
  }
  if (writer) {
    folder.save_model(*model);
  }
  return completed;
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
  TORCH_CHECK(!RunFolder::is_run_file(path) &&
                  !fs::equivalent(path, checkpoint, error),
              path,
              ": the checkpoint read or a file of a run folder (",
              fs::path(path).filename().string(),
              "); the dump goes elsewhere");
}

}  // namespace

Evaluation evaluate_checkpoint(const std::string& path) {
  auto run = load_for_test(path);
  return evaluate(run.model, run.test, config_normalization(run.config.data), 256);
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
