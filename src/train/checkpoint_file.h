#pragma once

// checkpoint.pt and model.pt: the model's parameters and buffers (and, in a
// checkpoint, the optimiser's momentum and the run's position) as one flat
// dict of named tensors in torch.save's layout, behind the integrity header
// of checked_file.h. Reading needs LibTorch's unpickler only, never its
// TorchScript importer (docs/training.md, "Run folder").

#include <diffstride/train/run_folder.h>

#include <filesystem>
#include <string>

namespace torch {
namespace optim {
class SGD;
}
}  // namespace torch

namespace diffstride {
namespace detail {

/// `model`'s parameters and buffers, on the CPU, under their state-dict
/// names preceded by `prefix`.
c10::Dict<std::string, at::Tensor> model_tensors(
    const torch::nn::Module& model, const std::string& prefix = "");

/// Replaces `path` with `model`'s tensors, and with `optimizer`'s momentum
/// and `point` when they are given; an error, the old file unchanged, if a
/// parameter holds a non-finite value.
void write_checkpoint_file(const std::filesystem::path& path,
                           const torch::nn::Module& model,
                           const torch::optim::SGD* optimizer,
                           const ResumePoint* point);

/// Loads the model part of `path` into `model`, once the file is checked:
/// its header and checksum, then that it holds every parameter and buffer
/// of `model`, with the same shape and type, and no other. `what` names the
/// kind of file in errors ("checkpoint", "model").
void read_model_file(const std::filesystem::path& path,
                     torch::nn::Module& model,
                     const char* what);

/// As read_model_file, then the optimiser's momentum into `optimizer`
/// (built on `model`'s parameters); returns the run's position.
ResumePoint read_checkpoint_file(const std::filesystem::path& path,
                                 torch::nn::Module& model,
                                 torch::optim::SGD& optimizer);

}  // namespace detail
}  // namespace diffstride
