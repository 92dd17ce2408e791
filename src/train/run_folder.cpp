#include <diffstride/train/run_folder.h>

#include "train/checked_file.h"
#include "train/checkpoint_file.h"

#include <diffstride/train/event_writer.h>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace diffstride {

namespace {

namespace fs = std::filesystem;

const char* kConfigFile = "config.toml";
const char* kCheckpointFile = "checkpoint.pt";
const char* kModelFile = "model.pt";
const char* kStateDictFile = "model_state_dict.pt";
const char* kMetricsFile = "metrics.csv";

// metrics.csv with the rows of epochs after `epochs_done` dropped. Every row
// must start with its epoch number.
void trim_metrics(const fs::path& path, int64_t epochs_done) {
  std::ifstream in(path);
  std::string line, kept;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (number == 1 && line.rfind("epoch,", 0) == 0) {
      kept += line + "\n";
      continue;
    }
    const auto comma = line.find(',');
    const std::string field = line.substr(0, comma);
    char* end = nullptr;
    errno = 0;
    const long long epoch = std::strtoll(field.c_str(), &end, 10);
    TORCH_CHECK(!field.empty() && end == field.c_str() + field.size() &&
                    errno == 0 && comma != std::string::npos,
                path.string(),
                " line ",
                number,
                ": expected a row starting with its epoch number, got '",
                line,
                "'; repair or remove the line, then resume");
    if (epoch <= epochs_done) {
      kept += line + "\n";
    }
  }
  in.close();
  detail::replace_file(path, kept);
}

// The first line of every config.toml a run writes: how the tool knows a
// folder's files as its own.
const std::string kConfigMark =
    "# diffstride run: the resolved config; `diffstride train --resume "
    "FOLDER` continues it\n";

// A new run goes into a folder that is absent, empty, or holds only what a
// run of this tool writes before its first checkpoint (its marked
// config.toml and event files), which holds no results and starts again.
// Anything else is refused: no file the tool did not make is replaced.
void check_new_run_folder(const fs::path& out) {
  std::error_code error;
  const auto status = fs::status(out, error);
  if (!fs::exists(status)) {
    return;
  }
  TORCH_CHECK(fs::is_directory(status),
              out.string(),
              ": exists and is not a folder; choose another --out");
  TORCH_CHECK(!fs::exists(fs::symlink_status(out / kCheckpointFile)) &&
                  !fs::exists(fs::symlink_status(out / kMetricsFile)),
              out.string(),
              " already holds a run: resume it with --resume ",
              out.string(),
              " or choose another --out");
  TORCH_CHECK(!fs::exists(fs::symlink_status(out / kModelFile)),
              out.string(),
              " already holds a finished run (its ",
              kModelFile,
              "): choose another --out");
  for (const auto& entry : fs::directory_iterator(out)) {
    const auto name = entry.path().filename().string();
    if (name == kConfigFile) {
      TORCH_CHECK(detail::carries_mark(entry.path(), kConfigMark),
                  entry.path().string(),
                  ": a config.toml diffstride train did not write; a new run "
                  "needs an empty folder or a new one");
    } else {
      TORCH_CHECK(name.rfind(kEventFilePrefix, 0) == 0,
                  out.string(),
                  " holds files that are not part of a diffstride run (",
                  name,
                  "): a new run needs an empty folder or a new one");
    }
  }
}

}  // namespace

RunFolder RunFolder::create(const std::string& path,
                            const TrainConfig& config) {
  const fs::path out = path;
  check_new_run_folder(out);
  fs::create_directories(out);
  detail::replace_file(out / kConfigFile, kConfigMark + to_toml(config));
  return RunFolder(out);
}

RunState RunFolder::state_of(const std::string& path) {
  const fs::path folder = path;
  if (fs::is_regular_file(folder / kModelFile)) {
    return RunState::kFinished;
  }
  return fs::is_regular_file(folder / kConfigFile) ? RunState::kStarted
                                                   : RunState::kAbsent;
}

RunFolder RunFolder::resume(const std::string& path) {
  const fs::path folder = path;
  TORCH_CHECK(detail::carries_mark(folder / kConfigFile, kConfigMark) ||
                  detail::carries_mark(folder / kCheckpointFile,
                                       detail::integrity_magic()),
              folder.string(),
              ": not a run of diffstride train (its config.toml does not "
              "start with '",
              kConfigMark.substr(0, kConfigMark.find(':')),
              "' and it holds no checkpoint of this tool): nothing there is "
              "replaced");
  return RunFolder(folder);
}

bool RunFolder::is_run_file(const fs::path& file) {
  const auto name = file.filename().string();
  const bool run_name = name == kConfigFile || name == kCheckpointFile ||
                        name == kMetricsFile || name == kModelFile ||
                        name == kStateDictFile ||
                        name.rfind(kEventFilePrefix, 0) == 0;
  std::error_code error;
  return run_name &&
         fs::exists(fs::absolute(file).parent_path() / kConfigFile, error);
}

RunFolder RunFolder::open(const std::string& path) {
  return RunFolder(path);
}

fs::path RunFolder::metrics_path() const {
  return path_ / kMetricsFile;
}

fs::path RunFolder::config_path() const {
  return path_ / kConfigFile;
}

void RunFolder::save_checkpoint(const torch::nn::Module& model,
                                const torch::optim::SGD& optimizer,
                                const ResumePoint& point) const {
  detail::write_checkpoint_file(
      path_ / kCheckpointFile, model, &optimizer, &point);
}

ResumePoint RunFolder::load_checkpoint(torch::nn::Module& model,
                                       torch::optim::SGD& optimizer) const {
  const auto p = read_checkpoint(model, optimizer);
  // Without a checkpoint (interrupted before its first one) the run starts
  // from its beginning, keeping no metrics row of an epoch it redoes.
  if (fs::exists(metrics_path())) {
    trim_metrics(metrics_path(), p.position.epoch);
  }
  return p;
}

ResumePoint RunFolder::read_checkpoint(torch::nn::Module& model,
                                       torch::optim::SGD& optimizer) const {
  if (!fs::exists(path_ / kCheckpointFile) &&
      !fs::is_symlink(path_ / kCheckpointFile)) {
    return ResumePoint();
  }
  return detail::read_checkpoint_file(
      path_ / kCheckpointFile, model, optimizer);
}

void RunFolder::save_model(const torch::nn::Module& model) const {
  detail::write_checkpoint_file(path_ / kModelFile, model, nullptr, nullptr);
  // The same weights as a PyTorch state dict (name -> tensor) that Python's
  // torch.load reads and the Python package's ResNet loads.
  detail::replace_file(path_ / kStateDictFile,
                       python_tensor_dict(detail::model_tensors(model)));
}

std::string python_tensor_dict(
    const c10::Dict<std::string, at::Tensor>& tensors) {
  // torch::jit::pickle_save with one difference: no TorchScript type tags
  // around the dict (torch.jit._pickle.restore_type_tag), which
  // torch.load(weights_only=True) refuses. What remains is a plain dict of
  // tensors in torch.save's zip layout.
  std::string pickle;
  torch::jit::Pickler pickler(
      [&](const char* data, size_t size) { pickle.append(data, size); },
      /*tensor_table=*/nullptr,
      /*type_renamer=*/nullptr,
      /*memoized_class_types=*/nullptr,
      /*get_tensor_id=*/nullptr,
      /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(tensors);
  pickler.stop();
  std::string container;
  {
    caffe2::serialize::PyTorchStreamWriter writer(
        [&](const void* data, size_t size) {
          container.append(static_cast<const char*>(data), size);
          return size;
        });
    torch::jit::writeArchiveAndTensors(
        "data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
    writer.writeEndOfFile();
  }
  return container;
}

void load_model_weights(const std::string& file, torch::nn::Module& model) {
  detail::read_model_file(file, model, "checkpoint or model");
}

}  // namespace diffstride
