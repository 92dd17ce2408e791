#pragma once

// One optimiser step of the training recipe (docs/training.md), and the
// loss it minimises.

#include <diffstride/data/batches.h>
#include <diffstride/models/resnet.h>
#include <diffstride/train/config.h>

namespace torch {
namespace optim {
class SGD;
}
}  // namespace torch

namespace diffstride {

class GradientAverager;
class LossScaler;

/// Soft-target cross-entropy, mean over the batch: -sum t log softmax(z).
at::Tensor soft_cross_entropy(const at::Tensor& logits,
                              const at::Tensor& targets);

/// Keras-style L2 of the recipe: sum of squares of every convolution kernel
/// and of the dense layer's kernel and bias (not batch norm, not strides).
at::Tensor l2_penalty(const ResNet& model);

/// What a step reports: the batch's data loss (without the penalties) and
/// its correct predictions, as scalar tensors on the model's device (reading
/// them waits for the step to finish), and whether the optimiser stepped (a
/// float16 step with non-finite gradients is skipped).
struct StepResult {
  at::Tensor data_loss;
  at::Tensor correct;
  bool stepped = true;
};

/// What surrounds a step besides the model: the autocast precision, the
/// float16 loss scale, and the averaging of gradients across processes.
struct StepOptions {
  /// Forward and loss under autocast to this dtype (float32: off).
  c10::ScalarType precision = c10::kFloat;
  /// float16: the dynamic loss scale (null: none).
  LossScaler* scaler = nullptr;
  /// Several processes: averages the gradients after backward (null: one).
  GradientAverager* averager = nullptr;
};

/// One step on `batch` at `learning_rate`: forward in training mode, data
/// loss + weight decay + complexity penalty (as `loss` says), backward,
/// gradients averaged across processes, SGD step, then the stride
/// constraints of every DiffStride layer.
StepResult train_step(ResNet& model,
                      torch::optim::SGD& optimizer,
                      const Batch& batch,
                      const TrainConfig::Loss& loss,
                      double learning_rate,
                      const StepOptions& options = {});

}  // namespace diffstride
