#include <diffstride/train/train_step.h>

#include <diffstride/models/complexity_penalty.h>

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
                      double learning_rate) {
  for (auto& group : optimizer.param_groups()) {
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(learning_rate);
  }
  model->train();
  const auto logits = model(batch.images);
  const auto data_loss = soft_cross_entropy(logits, batch.targets);
  auto total = data_loss + loss.weight_decay * l2_penalty(model);
  if (loss.complexity_lambda > 0) {
    total = total + loss.complexity_lambda *
                        complexity_penalty(model->diffstride_layers());
  }
  optimizer.zero_grad();
  total.backward();
  // Gradients are complete here: between backward and the optimiser step is
  // where several processes would average them.
  optimizer.step();
  model->constrain_strides();
  return {data_loss.detach(), logits.argmax(1).eq(batch.labels).sum()};
}

}  // namespace diffstride
