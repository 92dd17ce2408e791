#include "train/checkpoint_file.h"

#include "train/checked_file.h"

#include <c10/util/safe_numerics.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/storage_context.h>
#include <torch/csrc/jit/serialization/unpickler.h>
#include <torch/nn/module.h>
#include <torch/optim/sgd.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace diffstride {
namespace detail {

namespace {

namespace fs = std::filesystem;

using NamedTensors = c10::Dict<std::string, at::Tensor>;

// The names of the file's entries: the model's tensors under their
// state-dict names, the optimiser's momentum under its parameter's name.
const std::string kModelPrefix = "model.";
const std::string kMomentumPrefix = "momentum.";
// A checkpoint's other entries: where the run is (ResumePoint).
const char* const kPositionEntry = "position";
const char* const kSumsEntry = "sums";
const char* const kLossScaleEntry = "loss_scale";

// LibTorch 1.13 keys an optimiser's state by the address of the parameter's
// TensorImpl written as text; LibTorch 2 by the address itself.
using StateKey = std::decay_t<
    decltype(std::declval<torch::optim::SGD&>().state())>::key_type;

[[maybe_unused]] std::string state_key(const at::Tensor& parameter,
                                       const std::string*) {
  std::ostringstream text;
  text << parameter.unsafeGetTensorImpl();
  return text.str();
}

[[maybe_unused]] void* state_key(const at::Tensor& parameter, void* const*) {
  return parameter.unsafeGetTensorImpl();
}

StateKey state_key(const at::Tensor& parameter) {
  return state_key(parameter, static_cast<const StateKey*>(nullptr));
}

void check_finite(const torch::nn::Module& model, const fs::path& path) {
  // A checkpoint is a state to go back to: never one that cannot train.
  for (const auto& parameter : model.named_parameters()) {
    TORCH_CHECK(parameter.value().isfinite().all().item<bool>(),
                path.string(),
                ": not written: parameter ",
                parameter.key(),
                " holds non-finite values; the previous file, if any, is "
                "unchanged");
  }
}

void add_momentum(const torch::nn::Module& model,
                  const torch::optim::SGD& optimizer,
                  NamedTensors& tensors) {
  for (const auto& parameter : model.named_parameters()) {
    const auto found = optimizer.state().find(state_key(parameter.value()));
    if (found == optimizer.state().end()) {
      continue;  // no step has reached this parameter yet
    }
    const auto& state =
        static_cast<const torch::optim::SGDParamState&>(*found->second);
    if (state.momentum_buffer().defined()) {
      tensors.insert(kMomentumPrefix + parameter.key(),
                     state.momentum_buffer().detach().cpu());
    }
  }
}

void add_point(const ResumePoint& point, NamedTensors& tensors) {
  const RunPosition& p = point.position;
  const EpochTally& t = point.tally;
  tensors.insert(kPositionEntry,
                 torch::tensor({p.epoch, p.batch, p.step}, torch::kLong));
  tensors.insert(kSumsEntry,
                 torch::tensor({t.loss_sum, t.correct, t.seen, t.seconds},
                               torch::kDouble));
  tensors.insert(kLossScaleEntry,
                 torch::tensor({p.loss_scale,
                                static_cast<double>(p.loss_scale_good_steps)},
                               torch::kDouble));
}

[[noreturn]] void fail_not_ours(const fs::path& file,
                                const char* what,
                                const std::string& why) {
  TORCH_CHECK(
      false, file.string(), ": not a diffstride ", what, " (", why, ")");
}

// An unpickled tensor's sizes, strides and offset come from the file: they
// must stay within the storage the file gave it before anything reads it.
// Unsigned arithmetic with overflow checks: a crafted stride can make any
// plain sum wrap round into range.
bool within_storage(const at::Tensor& tensor) {
  if (tensor.layout() != at::kStrided || !tensor.has_storage() ||
      tensor.storage_offset() < 0) {
    return false;
  }
  if (tensor.numel() == 0) {
    return true;
  }
  const uint64_t capacity = tensor.storage().nbytes() / tensor.element_size();
  uint64_t last = static_cast<uint64_t>(tensor.storage_offset());
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    uint64_t span = 0;
    if (tensor.stride(d) < 0 ||
        c10::mul_overflows(static_cast<uint64_t>(tensor.size(d) - 1),
                           static_cast<uint64_t>(tensor.stride(d)),
                           &span) ||
        c10::add_overflows(last, span, &last)) {
      return false;
    }
  }
  return last < capacity;
}

// The dict in `content`. LibTorch's unpickler sizes each storage by the
// element count the pickle claims, not by its record: the records are read
// here first, so that every storage has the size the file really holds.
c10::IValue unpickle(const std::string& content) {
  std::istringstream stream(content);
  caffe2::serialize::PyTorchStreamReader reader(&stream);
  auto storages = std::make_shared<torch::jit::DeserializationStorageContext>();
  const std::string folder = "data/";
  for (const auto& name : reader.getAllRecords()) {
    if (name.rfind(folder, 0) == 0) {
      auto record = reader.getRecord(name);
      storages->addStorage(name.substr(folder.size()),
                           c10::Storage(c10::Storage::use_byte_size_t(),
                                        std::get<1>(record),
                                        std::move(std::get<0>(record))));
    }
  }
  return torch::jit::readArchiveAndTensors(
      "data",
      /*pickle_prefix=*/"",
      /*tensor_prefix=*/"",
      /*type_resolver=*/{},
      /*obj_loader=*/{},
      /*device=*/{},
      reader,
      torch::jit::Unpickler::defaultTypeParser,
      storages);
}

// The named tensors of `file`, checked (header, checksum, layout) before
// LibTorch's unpickler reads a byte, then each tensor checked against the
// storage it was given.
NamedTensors read_tensors(const fs::path& file, const char* what) {
  const auto content = verified_content(file, what);
  c10::IValue value;
  std::optional<std::string> failure;
  try {
    value = unpickle(content);
  } catch (const c10::Error& error) {
    failure = error.what_without_backtrace();
  } catch (const std::exception& error) {
    // The unpickler throws other exceptions too, such as std::out_of_range
    // for a tensor whose storage the file lacks.
    failure = std::string("damaged content: ") + error.what();
  }
  if (failure) {
    fail_not_ours(file, what, *failure);
  }
  if (!value.isGenericDict()) {
    fail_not_ours(file, what, "expected a dict of named tensors");
  }
  NamedTensors tensors;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString() || !entry.value().isTensor()) {
      fail_not_ours(file, what, "expected a dict of named tensors");
    }
    const auto& tensor = entry.value().toTensor();
    const auto& name = entry.key().toStringRef();
    if (!tensor.device().is_cpu()) {
      // Every file of this tool holds CPU tensors.
      fail_not_ours(file, what, "tensor " + name + " is not on the CPU");
    }
    if (!within_storage(tensor)) {
      fail_not_ours(
          file,
          what,
          "damaged content: tensor " + name + " reaches beyond its storage");
    }
    tensors.insert(name, tensor);
  }
  return tensors;
}

// What keeps `stored` from being loaded into `expected`, or "" if nothing.
std::string difference(const std::string& name,
                       const at::Tensor& stored,
                       const at::Tensor& expected) {
  std::ostringstream text;
  if (stored.sizes() != expected.sizes()) {
    text << name << " has shape " << stored.sizes()
         << " where this run's config.toml gives " << expected.sizes();
  } else if (stored.scalar_type() != expected.scalar_type()) {
    text << name << " holds " << stored.scalar_type()
         << " where the model holds " << expected.scalar_type();
  }
  return text.str();
}

// Every tensor of `model` that `tensors` lacks or holds with another shape
// or type, the momentum of a parameter held with another shape, and every
// model tensor or momentum `tensors` holds that `model` lacks. (LibTorch's
// loader would silently take the file's shapes: a DiffStride's strides in a
// model of another pooling, say.)
std::vector<std::string> architecture_problems(const torch::nn::Module& model,
                                               const NamedTensors& tensors) {
  std::vector<std::string> problems;
  std::set<std::string> known;
  // Whether `key`, when there, fits `expected`; a problem listed if not.
  const auto fits = [&](const std::string& key,
                        const std::string& name,
                        const at::Tensor& expected,
                        bool required) {
    known.insert(key);
    const auto found = tensors.find(key);
    if (found == tensors.end()) {
      if (required) {
        problems.push_back("holds no " + name);
      }
      return !required;
    }
    const auto text = difference(name, found->value(), expected);
    if (!text.empty()) {
      problems.push_back(text);
    }
    return text.empty();
  };
  for (const auto& parameter : model.named_parameters()) {
    const auto& name = parameter.key();
    if (fits(kModelPrefix + name, name, parameter.value(), true)) {
      fits(kMomentumPrefix + name,
           "the momentum of " + name,
           parameter.value(),
           false);
    }
  }
  for (const auto& buffer : model.named_buffers()) {
    fits(kModelPrefix + buffer.key(), buffer.key(), buffer.value(), true);
  }
  const auto extra = [&](const std::string& shown) {
    problems.push_back("holds " + shown +
                       ", which the model this run's config.toml describes "
                       "does not have");
  };
  for (const auto& entry : tensors) {
    const auto& key = entry.key();
    if (key.rfind(kModelPrefix, 0) == 0) {
      if (known.count(key) == 0) {
        extra(key.substr(kModelPrefix.size()));
      }
    } else if (key.rfind(kMomentumPrefix, 0) == 0 &&
               known.count(kModelPrefix + key.substr(kMomentumPrefix.size())) ==
                   0) {
      extra(key);
    }
  }
  return problems;
}

void check_same_architecture(const torch::nn::Module& model,
                             const NamedTensors& tensors,
                             const fs::path& file) {
  const auto problems = architecture_problems(model, tensors);
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

// The file's tensors, once checked: the file, then its model part against
// `model`.
NamedTensors read_checked(const fs::path& file,
                          const torch::nn::Module& model,
                          const char* what) {
  auto tensors = read_tensors(file, what);
  check_same_architecture(model, tensors, file);
  return tensors;
}

// Onto the model's devices, in its tensors' memory formats.
void load_model_part(const NamedTensors& tensors, torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (const auto& parameter : model.named_parameters()) {
    parameter.value().copy_(tensors.at(kModelPrefix + parameter.key()));
  }
  for (const auto& buffer : model.named_buffers()) {
    buffer.value().copy_(tensors.at(kModelPrefix + buffer.key()));
  }
}

void load_momentum(const torch::nn::Module& model,
                   const NamedTensors& tensors,
                   torch::optim::SGD& optimizer) {
  torch::NoGradGuard no_grad;
  for (const auto& parameter : model.named_parameters()) {
    const auto found = tensors.find(kMomentumPrefix + parameter.key());
    if (found == tensors.end()) {
      // No step had reached it: neither has one of the resumed run.
      optimizer.state().erase(state_key(parameter.value()));
      continue;
    }
    auto state = std::make_unique<torch::optim::SGDParamState>();
    state->momentum_buffer(
        torch::empty_like(parameter.value()).copy_(found->value()));
    optimizer.state()[state_key(parameter.value())] = std::move(state);
  }
}

// Entry `name` of a checkpoint: `count` values of type `type`.
at::Tensor point_entry(const NamedTensors& tensors,
                       const std::string& name,
                       at::ScalarType type,
                       int64_t count,
                       const fs::path& file) {
  const auto found = tensors.find(name);
  if (found == tensors.end() || found->value().dim() != 1 ||
      found->value().numel() != count || found->value().scalar_type() != type) {
    fail_not_ours(
        file,
        "checkpoint",
        c10::str("expected ", name, ": ", count, " values of ", type));
  }
  return found->value();
}

}  // namespace

NamedTensors model_tensors(const torch::nn::Module& model,
                           const std::string& prefix) {
  NamedTensors tensors;
  for (const auto& parameter : model.named_parameters()) {
    tensors.insert(prefix + parameter.key(), parameter.value().detach().cpu());
  }
  for (const auto& buffer : model.named_buffers()) {
    tensors.insert(prefix + buffer.key(), buffer.value().detach().cpu());
  }
  return tensors;
}

void write_checkpoint_file(const fs::path& path,
                           const torch::nn::Module& model,
                           const torch::optim::SGD* optimizer,
                           const ResumePoint* point) {
  check_finite(model, path);
  auto tensors = model_tensors(model, kModelPrefix);
  if (optimizer != nullptr) {
    add_momentum(model, *optimizer, tensors);
  }
  if (point != nullptr) {
    add_point(*point, tensors);
  }
  replace_file(path, with_integrity_header(python_tensor_dict(tensors)));
}

void read_model_file(const fs::path& path,
                     torch::nn::Module& model,
                     const char* what) {
  load_model_part(read_checked(path, model, what), model);
}

ResumePoint read_checkpoint_file(const fs::path& path,
                                 torch::nn::Module& model,
                                 torch::optim::SGD& optimizer) {
  const auto tensors = read_checked(path, model, "checkpoint");
  const auto position =
      point_entry(tensors, kPositionEntry, at::kLong, 3, path);
  const auto sums = point_entry(tensors, kSumsEntry, at::kDouble, 4, path);
  const auto scale =
      point_entry(tensors, kLossScaleEntry, at::kDouble, 2, path);
  const auto p = position.accessor<int64_t, 1>();
  if (p[0] < 0 || p[1] < 0 || p[2] < 0) {
    fail_not_ours(path,
                  "checkpoint",
                  c10::str("a negative position: epoch ",
                           p[0],
                           ", batch ",
                           p[1],
                           ", step ",
                           p[2]));
  }
  const auto s = sums.accessor<double, 1>();
  const auto l = scale.accessor<double, 1>();
  if (!(l[0] >= 0 && l[0] <= std::numeric_limits<double>::max() && l[1] >= 0 &&
        l[1] < 1e15)) {
    fail_not_ours(
        path,
        "checkpoint",
        c10::str("loss scale ", l[0], " after ", l[1], " good steps"));
  }
  ResumePoint point;
  point.position =
      RunPosition{p[0], p[1], p[2], l[0], static_cast<int64_t>(l[1])};
  point.tally = EpochTally{s[0], s[1], s[2], s[3]};
  // Nothing is changed before the whole file is known good.
  load_model_part(tensors, model);
  load_momentum(model, tensors, optimizer);
  return point;
}

}  // namespace detail
}  // namespace diffstride
