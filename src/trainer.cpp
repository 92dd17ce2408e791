#include <diffstride/batches.h>
#include <diffstride/complexity_penalty.h>
#include <diffstride/event_writer.h>
#include <diffstride/trainer.h>

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace diffstride {

namespace {

namespace fs = std::filesystem;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Writes `write(path)` to a temporary file beside `path`, then renames it
// over `path`: readers see the old file or the new one, never half of one.
template <typename Write>
void write_atomically(const fs::path& path, const Write& write) {
  const fs::path temporary = path.string() + ".tmp";
  write(temporary);
  fs::rename(temporary, path);
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  write_atomically(path, [&](const fs::path& to) {
    std::ofstream out(to, std::ios::trunc);
    out << text;
    TORCH_CHECK(out.good(), to, ": cannot write");
  });
}

// Where a run is in its data: the next batch of `epoch`, and the sums of the
// epoch's training loss, correct predictions and examples so far.
struct RunState {
  int64_t epoch = 0, batch = 0, step = 0;
  double loss_sum = 0, correct = 0, seen = 0, seconds = 0;
};

void save_checkpoint(const fs::path& path,
                     const ResNet& model,
                     const torch::optim::SGD& optimizer,
                     const RunState& s) {
  write_atomically(path, [&](const fs::path& to) {
    torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
    model->save(model_archive);
    optimizer.save(optimizer_archive);
    archive.write("model", model_archive);
    archive.write("optimizer", optimizer_archive);
    archive.write("position",
                  torch::tensor({s.epoch, s.batch, s.step}, torch::kLong));
    archive.write("sums",
                  torch::tensor({s.loss_sum, s.correct, s.seen, s.seconds},
                                torch::kDouble));
    archive.save_to(to.string());
  });
}

RunState load_checkpoint(const fs::path& path,
                         ResNet& model,
                         torch::optim::SGD* optimizer) {
  TORCH_CHECK(fs::exists(path), path.string(), ": checkpoint not found");
  torch::serialize::InputArchive archive, model_archive, optimizer_archive;
  try {
    archive.load_from(path.string());
    archive.read("model", model_archive);
    model->load(model_archive);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false,
                path.string(),
                ": not a checkpoint of this model (",
                error.what_without_backtrace(),
                ")");
  }
  RunState s;
  if (optimizer == nullptr) {
    return s;
  }
  archive.read("optimizer", optimizer_archive);
  optimizer->load(optimizer_archive);
  torch::Tensor position, sums;
  archive.read("position", position);
  archive.read("sums", sums);
  s.epoch = position[0].item<int64_t>();
  s.batch = position[1].item<int64_t>();
  s.step = position[2].item<int64_t>();
  s.loss_sum = sums[0].item<double>();
  s.correct = sums[1].item<double>();
  s.seen = sums[2].item<double>();
  s.seconds = sums[3].item<double>();
  return s;
}

const char* kMetricsHeader =
    "epoch,step,learning_rate,train_loss,train_accuracy,test_loss,"
    "test_accuracy,examples_per_second,multiply_adds";

std::string metrics_row(const EpochMetrics& m) {
  std::ostringstream row;
  row << std::setprecision(8) << m.epoch << "," << m.step << ","
      << m.learning_rate << "," << m.train_loss << "," << m.train_accuracy
      << "," << m.test_loss << "," << m.test_accuracy << ","
      << m.examples_per_second << "," << m.multiply_adds;
  for (const auto& s : m.strides) {
    row << "," << s[0] << "," << s[1];
  }
  return row.str();
}

// metrics.csv keeps the rows of epochs before `epochs_done` only: a run
// killed between its last row and its checkpoint is rewritten (atomically)
// without the row the resumed run will write again.
void trim_metrics(const fs::path& path, int64_t epochs_done) {
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    const bool header = line.rfind("epoch", 0) == 0;
    if (header || std::stoll(line.substr(0, line.find(','))) <= epochs_done) {
      kept += line + "\n";
    }
  }
  in.close();
  write_text_atomically(path, kept);
}

int64_t multiply_adds_now(ResNet& model, const Dataset& data) {
  const bool training = model->is_training();
  model->eval();
  ForwardTrace trace;
  {
    torch::NoGradGuard no_grad;
    model->forward_traced(
        torch::zeros(
            {1, data.images.size(1), data.images.size(2), data.images.size(3)}),
        &trace,
        nullptr);
  }
  model->train(training);
  return trace.multiply_adds;
}

}  // namespace

ResNet build_model(const TrainConfig& config,
                   int64_t in_channels,
                   int64_t num_classes) {
  const auto& m = config.model;
  ResNetOptions options =
      m.factory == "resnet"
          ? ResNetOptions(m.filters, m.strides).id_only(m.id_only)
          : resnet_options(m.factory);
  if (!m.filters.empty())
    options.filters(m.filters);
  if (!m.strides.empty())
    options.strides(m.strides);
  if (m.layers_per_block > 0)
    options.layers_per_block(m.layers_per_block);
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
  return ResNet(options);
}

at::Tensor soft_cross_entropy(const at::Tensor& logits,
                              const at::Tensor& targets) {
  return -(targets * torch::log_softmax(logits, 1)).sum(1).mean();
}

at::Tensor l2_penalty(const ResNet& model) {
  at::Tensor total = torch::zeros({});
  for (const auto& item : model->named_modules()) {
    if (const auto* conv = item.value()->as<torch::nn::Conv2d>()) {
      total = total + conv->weight.square().sum();
    }
  }
  return total + model->fc->weight.square().sum() +
         model->fc->bias.square().sum();
}

Evaluation evaluate(ResNet& model,
                    const Dataset& test,
                    const Normalization& normalization,
                    int64_t batch_size) {
  const bool training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  BatchMaker maker(
      test,
      normalization,
      BatchOptions().batch_size(batch_size).shuffle(false).drop_last(false));
  Evaluation result;
  double loss_sum = 0, correct = 0;
  BatchPrefetcher batches(maker, 0);
  while (auto batch = batches.next()) {
    const auto logits = model(batch->images);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits,
                    batch->labels,
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(
                        torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(batch->labels).sum().item<double>();
    result.examples += batch->labels.size(0);
  }
  model->train(training);
  result.loss =
      loss_sum / static_cast<double>(std::max<int64_t>(1, result.examples));
  result.accuracy =
      correct / static_cast<double>(std::max<int64_t>(1, result.examples));
  return result;
}

std::vector<EpochMetrics> train(const TrainConfig& config,
                                const TrainOptions& options) {
  const fs::path out = config.train.out;
  const auto checkpoint = out / "checkpoint.pt";
  if (!options.resume) {
    TORCH_CHECK(!fs::exists(checkpoint) && !fs::exists(out / "config.toml"),
                out.string(),
                " already holds a run: resume it with --resume ",
                out.string(),
                " or choose another --out");
    fs::create_directories(out);
    write_text_atomically(out / "config.toml", to_toml(config));
  }
  if (config.train.threads > 0) {
    torch::set_num_threads(static_cast<int>(config.train.threads));
  }
  const auto train_data =
      load_dataset(config.data.dataset, "train", config.data.data_dir);
  const auto test_data =
      load_dataset(config.data.dataset, "test", config.data.data_dir);
  const auto normalization = dataset_normalization(config.data.dataset);

  torch::manual_seed(config.train.seed);
  auto model =
      build_model(config, train_data.images.size(1), train_data.num_classes);
  torch::optim::SGD optimizer(
      model->parameters(),
      torch::optim::SGDOptions(config.optimizer.values[0])
          .momentum(config.optimizer.momentum));
  RunState state;
  if (options.resume) {
    state = load_checkpoint(checkpoint, model, &optimizer);
    if (fs::exists(out / "metrics.csv")) {
      trim_metrics(out / "metrics.csv", state.epoch);
    }
  }
  BatchMaker maker(train_data,
                   normalization,
                   BatchOptions()
                       .batch_size(config.data.batch_size)
                       .seed(config.train.seed)
                       .augment(config.data.augment)
                       .mixup_alpha(config.data.mixup_alpha)
                       .label_smoothing(config.loss.label_smoothing));
  const int64_t per_epoch = maker.batches_per_epoch();
  TORCH_CHECK(per_epoch > 0,
              "data.batch_size ",
              config.data.batch_size,
              " is larger than an epoch of ",
              train_data.images.size(0),
              " examples");
  const int64_t total_steps = per_epoch * config.train.epochs;
  EventWriter events((out).string());
  std::vector<EpochMetrics> completed;
  int64_t steps_this_call = 0;
  const auto run_start = Clock::now();
  const int64_t first_step = state.step;
  double lr = 0;

  for (; state.epoch < config.train.epochs; ++state.epoch) {
    const auto epoch_start = Clock::now();
    const double seconds_before = state.seconds;
    BatchPrefetcher batches(maker, state.epoch, state.batch);
    while (auto batch = batches.next()) {
      lr = learning_rate_at(config.optimizer, state.step);
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
      }
      model->train();
      const auto logits = model(batch->images);
      const auto data_loss = soft_cross_entropy(logits, batch->targets);
      auto loss = data_loss + config.loss.weight_decay * l2_penalty(model);
      if (config.loss.complexity_lambda > 0) {
        loss = loss + config.loss.complexity_lambda *
                          complexity_penalty(model->diffstride_layers());
      }
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      model->constrain_strides();

      const auto n = static_cast<double>(batch->labels.size(0));
      state.loss_sum += data_loss.item<double>() * n;
      state.correct += logits.argmax(1).eq(batch->labels).sum().item<double>();
      state.seen += n;
      ++state.step;
      ++state.batch;
      ++steps_this_call;
      state.seconds = seconds_before + seconds_since(epoch_start);
      if (options.progress != nullptr &&
          (state.batch % 10 == 0 || state.batch == per_epoch)) {
        const double rate =
            (state.step - first_step) / seconds_since(run_start);
        *options.progress << "\repoch " << state.epoch + 1 << "/"
                          << config.train.epochs << "  step " << state.step
                          << "/" << total_steps << "  loss " << std::fixed
                          << std::setprecision(4) << state.loss_sum / state.seen
                          << "  " << std::setprecision(1)
                          << rate * config.data.batch_size << " ex/s  ETA "
                          << std::setprecision(0)
                          << (total_steps - state.step) / rate << " s   "
                          << std::defaultfloat << std::flush;
      }
      if (steps_this_call % 20 == 0) {
        events.add_scalar(
            "train/step_loss", data_loss.item<double>(), state.step);
      }
      const bool interrupted =
          options.interrupt != nullptr && options.interrupt->load();
      if (interrupted || (options.stop_after_steps >= 0 &&
                          steps_this_call >= options.stop_after_steps)) {
        save_checkpoint(checkpoint, model, optimizer, state);
        events.flush();
        if (options.progress != nullptr) {
          *options.progress
              << "\nstopped at step " << state.step << "; checkpoint written: "
              << "continue with --resume " << out.string() << "\n";
        }
        return completed;
      }
    }
    // End of epoch: evaluate, record, checkpoint.
    EpochMetrics m;
    m.epoch = state.epoch + 1;
    m.step = state.step;
    m.learning_rate = lr;
    m.train_loss = state.loss_sum / std::max(1.0, state.seen);
    m.train_accuracy = state.correct / std::max(1.0, state.seen);
    const auto test = evaluate(model, test_data, normalization, 256);
    m.test_loss = test.loss;
    m.test_accuracy = test.accuracy;
    m.examples_per_second = state.seen / std::max(1e-9, state.seconds);
    m.multiply_adds = multiply_adds_now(model, train_data);
    m.strides = model->current_strides();
    if (options.progress != nullptr) {
      *options.progress << std::fixed << std::setprecision(4) << "\nepoch "
                        << m.epoch << ": train loss " << m.train_loss
                        << ", accuracy " << m.train_accuracy << "; test loss "
                        << m.test_loss << ", accuracy " << m.test_accuracy
                        << std::defaultfloat << "\n";
    }
    const auto csv = out / "metrics.csv";
    const bool fresh = !fs::exists(csv);
    std::ofstream rows(csv, std::ios::app);
    if (fresh) {
      rows << kMetricsHeader;
      for (size_t i = 0; i < m.strides.size(); ++i) {
        rows << ",stride" << i << "_h,stride" << i << "_w";
      }
      rows << "\n";
    }
    rows << metrics_row(m) << "\n";
    rows.close();
    events.add_scalar("train/loss", m.train_loss, m.step);
    events.add_scalar("train/accuracy", m.train_accuracy, m.step);
    events.add_scalar("test/loss", m.test_loss, m.step);
    events.add_scalar("test/accuracy", m.test_accuracy, m.step);
    events.add_scalar("learning_rate", m.learning_rate, m.step);
    events.add_scalar("examples_per_second", m.examples_per_second, m.step);
    events.add_scalar(
        "multiply_adds", static_cast<double>(m.multiply_adds), m.step);
    for (size_t i = 0; i < m.strides.size(); ++i) {
      events.add_scalar("strides/layer" + std::to_string(i) + "_height",
                        m.strides[i][0],
                        m.step);
      events.add_scalar("strides/layer" + std::to_string(i) + "_width",
                        m.strides[i][1],
                        m.step);
    }
    events.flush();
    completed.push_back(m);
    state.batch = 0;
    state.loss_sum = state.correct = state.seen = state.seconds = 0;
    RunState next = state;
    ++next.epoch;
    save_checkpoint(checkpoint, model, optimizer, next);
  }
  write_atomically(out / "model.pt", [&](const fs::path& to) {
    torch::serialize::OutputArchive archive, model_archive;
    model->save(model_archive);
    archive.write("model", model_archive);
    archive.save_to(to.string());
  });
  return completed;
}

Evaluation evaluate_checkpoint(const std::string& path) {
  const fs::path file = path;
  const auto config_path = file.parent_path() / "config.toml";
  TORCH_CHECK(
      fs::exists(config_path),
      config_path.string(),
      " not found: a checkpoint is read with the config.toml of its run");
  const auto config = load_train_config(config_path.string());
  const auto test =
      load_dataset(config.data.dataset, "test", config.data.data_dir);
  auto model = build_model(config, test.images.size(1), test.num_classes);
  load_checkpoint(file, model, nullptr);
  return evaluate(model, test, dataset_normalization(config.data.dataset), 256);
}

}  // namespace diffstride
