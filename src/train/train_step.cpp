#include <diffstride/train/train_step.h>

#include <diffstride/models/complexity_penalty.h>
#include <diffstride/train/distributed.h>
#include <diffstride/train/mixed_precision.h>

#include <torch/nn/functional/activation.h>
#include <torch/optim/sgd.h>

namespace diffstride {

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

StepResult train_step(ResNet& model,
                      torch::optim::SGD& optimizer,
                      const Batch& batch,
                      const TrainConfig::Loss& loss,
                      double learning_rate,
                      const StepOptions& options) {
  for (auto& group : optimizer.param_groups()) {
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(learning_rate);
  }
  model->train();
  at::Tensor logits, data_loss, total;
  {
    // The penalties are sums of squares of float32 parameters: autocast
    // leaves them (and the float32 softmax of the loss) in float32.
    AutocastGuard autocast(batch.images.device(), options.precision);
    logits = model(batch.images);
    data_loss = soft_cross_entropy(logits.to(at::kFloat), batch.targets);
    total = data_loss + loss.weight_decay * l2_penalty(model);
    if (loss.complexity_lambda > 0) {
      total = total + loss.complexity_lambda * model->complexity_penalty();
    }
  }
  optimizer.zero_grad();
  if (options.scaler != nullptr) {
    total = options.scaler->scale_loss(total);
  }
  total.backward();
  // Every rank's gradient of its share of the batch, averaged: the gradient
  // of the global batch's mean loss (docs/training.md).
  if (options.averager != nullptr) {
    options.averager->finish();
  }
  StepResult result{data_loss.detach(),
                    logits.argmax(1).eq(batch.labels).sum()};
  if (options.scaler != nullptr) {
    result.stepped = options.scaler->unscale_and_update(model->parameters());
  }
  if (result.stepped) {
    optimizer.step();
    model->constrain_strides();
  }
  return result;
}

}  // namespace diffstride
