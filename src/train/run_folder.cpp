#include <diffstride/train/run_folder.h>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <fstream>

namespace diffstride {

namespace {

namespace fs = std::filesystem;

const char* kConfigFile = "config.toml";
const char* kCheckpointFile = "checkpoint.pt";
const char* kModelFile = "model.pt";
const char* kMetricsFile = "metrics.csv";

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

void save_archive(const fs::path& path,
                  const torch::nn::Module& model,
                  const torch::optim::Optimizer* optimizer,
                  const RunPosition* p) {
  write_atomically(path, [&](const fs::path& to) {
    torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
    model.save(model_archive);
    archive.write("model", model_archive);
    if (optimizer != nullptr) {
      optimizer->save(optimizer_archive);
      archive.write("optimizer", optimizer_archive);
      archive.write("position",
                    torch::tensor({p->epoch, p->batch, p->step}, torch::kLong));
      archive.write(
          "sums",
          torch::tensor({p->loss_sum, p->correct, p->seen, p->seconds},
                        torch::kDouble));
    }
    archive.save_to(to.string());
  });
}

// The archive in `file` with its model loaded into `model`.
torch::serialize::InputArchive load_archive(const fs::path& file,
                                            torch::nn::Module& model) {
  TORCH_CHECK(fs::exists(file), file.string(), ": checkpoint not found");
  torch::serialize::InputArchive archive, model_archive;
  try {
    archive.load_from(file.string());
    archive.read("model", model_archive);
    model.load(model_archive);
  } catch (const c10::Error& error) {
    TORCH_CHECK(false,
                file.string(),
                ": not a checkpoint of this model (",
                error.what_without_backtrace(),
                ")");
  }
  return archive;
}

// metrics.csv with the rows of epochs after `epochs_done` dropped.
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

}  // namespace

RunFolder RunFolder::create(const std::string& path,
                            const TrainConfig& config) {
  const fs::path out = path;
  TORCH_CHECK(
      !fs::exists(out / kCheckpointFile) && !fs::exists(out / kConfigFile),
      out.string(),
      " already holds a run: resume it with --resume ",
      out.string(),
      " or choose another --out");
  fs::create_directories(out);
  write_text_atomically(out / kConfigFile, to_toml(config));
  return RunFolder(out);
}

RunFolder RunFolder::resume(const std::string& path) {
  return RunFolder(path);
}

fs::path RunFolder::metrics_path() const {
  return path_ / kMetricsFile;
}

void RunFolder::save_checkpoint(const torch::nn::Module& model,
                                const torch::optim::Optimizer& optimizer,
                                const RunPosition& position) const {
  save_archive(path_ / kCheckpointFile, model, &optimizer, &position);
}

RunPosition RunFolder::load_checkpoint(
    torch::nn::Module& model, torch::optim::Optimizer& optimizer) const {
  auto archive = load_archive(path_ / kCheckpointFile, model);
  torch::serialize::InputArchive optimizer_archive;
  archive.read("optimizer", optimizer_archive);
  optimizer.load(optimizer_archive);
  torch::Tensor position, sums;
  archive.read("position", position);
  archive.read("sums", sums);
  RunPosition p;
  p.epoch = position[0].item<int64_t>();
  p.batch = position[1].item<int64_t>();
  p.step = position[2].item<int64_t>();
  p.loss_sum = sums[0].item<double>();
  p.correct = sums[1].item<double>();
  p.seen = sums[2].item<double>();
  p.seconds = sums[3].item<double>();
  if (fs::exists(metrics_path())) {
    trim_metrics(metrics_path(), p.epoch);
  }
  return p;
}

void RunFolder::save_model(const torch::nn::Module& model) const {
  save_archive(path_ / kModelFile, model, nullptr, nullptr);
}

void load_model_weights(const std::string& file, torch::nn::Module& model) {
  load_archive(file, model);
}

}  // namespace diffstride
