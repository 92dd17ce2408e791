#include <diffstride/train/run_folder.h>

#include "train/checked_file.h"

#include <diffstride/train/event_writer.h>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
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

void save_archive(const fs::path& path,
                  const torch::nn::Module& model,
                  const torch::optim::Optimizer* optimizer,
                  const ResumePoint* point) {
  // A checkpoint is a state to go back to: never one that cannot train.
  for (const auto& parameter : model.named_parameters()) {
    TORCH_CHECK(parameter.value().isfinite().all().item<bool>(),
                path.string(),
                ": not written: parameter ",
                parameter.key(),
                " holds non-finite values; the previous file, if any, is "
                "unchanged");
  }
  torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  if (optimizer != nullptr) {
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
    const RunPosition* p = &point->position;
    const EpochTally& t = point->tally;
    archive.write("position",
                  torch::tensor({p->epoch, p->batch, p->step}, torch::kLong));
    archive.write("sums",
                  torch::tensor({t.loss_sum, t.correct, t.seen, t.seconds},
                                torch::kDouble));
    archive.write("loss_scale",
                  torch::tensor({p->loss_scale,
                                 static_cast<double>(p->loss_scale_good_steps)},
                                torch::kDouble));
  }
  std::string bytes;
  archive.save_to([&](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  detail::replace_file(path, detail::with_integrity_header(bytes));
}

// Adds to `problems` every parameter and buffer of `module` that `archive`
// lacks or holds with another shape, and every tensor or module `archive`
// holds that `module` lacks (LibTorch's loader would silently take the
// file's shapes, and ignore what the model lacks: a DiffStride's strides in
// a model of another pooling, say).
void architecture_problems(const torch::nn::Module& module,
                           torch::serialize::InputArchive& archive,
                           const std::string& prefix,
                           std::vector<std::string>& problems) {
  std::set<std::string> names;
  const auto check = [&](const std::string& name,
                         const torch::Tensor& expected,
                         bool is_buffer) {
    names.insert(name);
    torch::Tensor stored;
    if (!archive.try_read(name, stored, is_buffer)) {
      problems.push_back("holds no " + prefix + name);
    } else if (stored.sizes() != expected.sizes()) {
      std::ostringstream text;
      text << prefix << name << " has shape " << stored.sizes()
           << " where this run's config.toml gives " << expected.sizes();
      problems.push_back(text.str());
    }
  };
  for (const auto& parameter : module.named_parameters(/*recurse=*/false)) {
    check(parameter.key(), parameter.value(), false);
  }
  for (const auto& buffer : module.named_buffers(/*recurse=*/false)) {
    check(buffer.key(), buffer.value(), true);
  }
  for (const auto& child : module.named_children()) {
    names.insert(child.key());
    torch::serialize::InputArchive child_archive;
    if (archive.try_read(child.key(), child_archive)) {
      architecture_problems(
          *child.value(), child_archive, prefix + child.key() + ".", problems);
    } else {
      problems.push_back("holds no module " + prefix + child.key());
    }
  }
  for (const auto& key : archive.keys()) {
    c10::IValue value;
    if (names.count(key) == 0 && archive.try_read(key, value) &&
        (value.isTensor() || value.isObject())) {
      problems.push_back("holds " + prefix + key +
                         ", which the model this run's config.toml "
                         "describes does not have");
    }
  }
}

// Checks, before any parameter is replaced, that `archive` holds the
// tensors of `module` and no others, naming the first ten that differ.
void check_same_architecture(const torch::nn::Module& module,
                             torch::serialize::InputArchive& archive,
                             const fs::path& file) {
  std::vector<std::string> problems;
  architecture_problems(module, archive, "", problems);
  if (problems.empty()) {
    return;
  }
  std::string listed;
  for (size_t i = 0; i < std::min<size_t>(problems.size(), 10); ++i) {
    listed += (i ? "; " : "") + problems[i];
  }
  TORCH_CHECK(false,
              file.string(),
              ": ",
              listed,
              problems.size() > 10
                  ? "; and " + std::to_string(problems.size() - 10) + " more"
                  : std::string(),
              ": the file was made with another architecture or pooling "
              "than this run's config.toml describes");
}

// The archive in `file` (checked for integrity) with its model loaded into
// `model` (checked for architecture first).
torch::serialize::InputArchive load_archive(const fs::path& file,
                                            torch::nn::Module& model,
                                            const char* what) {
  const auto content = detail::verified_content(file, what);
  torch::serialize::InputArchive archive, model_archive;
  std::optional<std::string> failure;
  try {
    // Onto the model's device, whatever device wrote the file.
    const auto parameters = model.parameters();
    archive.load_from(content.data(),
                      content.size(),
                      parameters.empty() ? torch::Device(torch::kCPU)
                                         : parameters.front().device());
    TORCH_CHECK(archive.try_read("model", model_archive), "no model in it");
  } catch (const c10::Error& error) {
    failure = error.what_without_backtrace();
  } catch (const std::exception& error) {
    // LibTorch's readers throw other exceptions too, some without a
    // message: std::out_of_range for a tensor whose storage the archive
    // lacks, TorchScript's parse errors for a damaged type name.
    failure = std::string("damaged content") +
              (*error.what() != '\0' ? std::string(": ") + error.what() : "");
  }
  TORCH_CHECK(!failure,
              file.string(),
              ": not a diffstride ",
              what,
              " (",
              failure.value_or(""),
              ")");
  check_same_architecture(model, model_archive, file);
  model.load(model_archive);
  return archive;
}

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
                                const torch::optim::Optimizer& optimizer,
                                const ResumePoint& point) const {
  save_archive(path_ / kCheckpointFile, model, &optimizer, &point);
}

ResumePoint RunFolder::load_checkpoint(
    torch::nn::Module& model, torch::optim::Optimizer& optimizer) const {
  const auto p = read_checkpoint(model, optimizer);
  // Without a checkpoint (interrupted before its first one) the run starts
  // from its beginning, keeping no metrics row of an epoch it redoes.
  if (fs::exists(metrics_path())) {
    trim_metrics(metrics_path(), p.position.epoch);
  }
  return p;
}

ResumePoint RunFolder::read_checkpoint(
    torch::nn::Module& model, torch::optim::Optimizer& optimizer) const {
  if (!fs::exists(path_ / kCheckpointFile) &&
      !fs::is_symlink(path_ / kCheckpointFile)) {
    return ResumePoint();
  }
  auto archive = load_archive(path_ / kCheckpointFile, model, "checkpoint");
  torch::serialize::InputArchive optimizer_archive;
  archive.read("optimizer", optimizer_archive);
  optimizer.load(optimizer_archive);
  torch::Tensor position, sums, loss_scale;
  archive.read("position", position);
  archive.read("sums", sums);
  ResumePoint point;
  RunPosition& p = point.position;
  p.epoch = position[0].item<int64_t>();
  p.batch = position[1].item<int64_t>();
  p.step = position[2].item<int64_t>();
  EpochTally& t = point.tally;
  t.loss_sum = sums[0].item<double>();
  t.correct = sums[1].item<double>();
  t.seen = sums[2].item<double>();
  t.seconds = sums[3].item<double>();
  if (archive.try_read("loss_scale", loss_scale)) {
    p.loss_scale = loss_scale[0].item<double>();
    p.loss_scale_good_steps =
        static_cast<int64_t>(loss_scale[1].item<double>());
  }
  return point;
}

void RunFolder::save_model(const torch::nn::Module& model) const {
  save_archive(path_ / kModelFile, model, nullptr, nullptr);
  // The same weights as a PyTorch state dict (name -> tensor) that Python's
  // torch.load reads and the Python package's ResNet loads.
  c10::Dict<std::string, at::Tensor> state;
  for (const auto& parameter : model.named_parameters()) {
    state.insert(parameter.key(), parameter.value().detach().cpu());
  }
  for (const auto& buffer : model.named_buffers()) {
    state.insert(buffer.key(), buffer.value().detach().cpu());
  }
  detail::replace_file(path_ / kStateDictFile, python_tensor_dict(state));
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
  load_archive(file, model, "checkpoint or model");
}

}  // namespace diffstride
