// Reduced precision and memory layout in training: autocast, the float16
// loss scale, channels_last; on the CPU (bfloat16) and, where there is one,
// on a GPU (bfloat16 and float16).

#include <diffstride/train/mixed_precision.h>
#include <diffstride/train/trainer.h>

#include "support/tiny_run.h"
#include "test_helpers.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>

namespace {

using diffstride_test::expect_error_containing;

// The parameters after every step of a tiny run, and its epochs.
struct Trace {
  std::vector<std::vector<torch::Tensor>> parameters;
  std::vector<diffstride::EpochMetrics> epochs;
  bool weights_channels_last = true;
};

Trace trace_run(diffstride::TrainConfig config) {
  Trace trace;
  diffstride::TrainOptions options;
  options.after_step = [&](diffstride::ResNet& model, int64_t) {
    std::vector<torch::Tensor> copy;
    for (const auto& p : model->parameters()) {
      copy.push_back(p.detach().to(torch::kCPU, torch::kDouble).clone());
      EXPECT_EQ(p.scalar_type(), torch::kFloat);
      if (p.dim() == 4) {
        trace.weights_channels_last =
            trace.weights_channels_last &&
            p.is_contiguous(at::MemoryFormat::ChannelsLast);
      }
    }
    trace.parameters.push_back(copy);
  };
  trace.epochs = diffstride::train(config, options);
  return trace;
}

// The parameters a run starts from (train() seeds, then builds the model),
// for the tiny dataset (1 channel; 10 classes, as Fashion-MNIST declares).
std::vector<torch::Tensor> initial_parameters(
    const diffstride::TrainConfig& config) {
  torch::manual_seed(config.train.seed);
  std::vector<torch::Tensor> out;
  for (const auto& p : diffstride::build_model(config, 1, 10)->parameters()) {
    out.push_back(p.detach().to(torch::kDouble));
  }
  return out;
}

double largest_relative_change(const std::vector<torch::Tensor>& a,
                               const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, diffstride_test::relative_error(a[i], b[i]));
  }
  return worst;
}

// The relative error of a step's update (after - before) against the
// reference run's, over all parameters at once: the error of the gradient.
double update_error(const std::vector<torch::Tensor>& before,
                    const std::vector<torch::Tensor>& after,
                    const std::vector<torch::Tensor>& reference_after) {
  std::vector<torch::Tensor> update, reference_update;
  for (size_t i = 0; i < before.size(); ++i) {
    update.push_back((after[i] - before[i]).reshape({-1}));
    reference_update.push_back((reference_after[i] - before[i]).reshape({-1}));
  }
  const auto u = torch::cat(update), r = torch::cat(reference_update);
  return ((u - r).norm() / r.norm()).item<double>();
}

TEST(Precision, AutocastGuardCastsConvolutionsAndRestoresTheState) {
  auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 3, 3));
  const auto x = torch::randn({1, 2, 6, 6});
  {
    diffstride::AutocastGuard guard(torch::Device(torch::kCPU),
                                    torch::kBFloat16);
    EXPECT_EQ(conv(x).scalar_type(), torch::kBFloat16);
    {
      diffstride::AutocastGuard off(torch::Device(torch::kCPU), torch::kFloat);
      EXPECT_EQ(conv(x).scalar_type(), torch::kBFloat16);
    }
  }
  EXPECT_EQ(conv(x).scalar_type(), torch::kFloat);
}

TEST(Precision, NamesAndSupportAreChecked) {
  EXPECT_EQ(diffstride::parse_precision("bfloat16"), torch::kBFloat16);
  expect_error_containing([] { diffstride::parse_precision("float8"); },
                          "precision 'float8': expected one of float32, "
                          "bfloat16, float16");
  expect_error_containing(
      [] {
        diffstride::check_precision_supported(torch::kHalf,
                                              torch::Device(torch::kCPU));
      },
      "train.precision = \"float16\" needs a CUDA device");
  auto config = diffstride_test::tiny_run_config("float16_on_cpu");
  config.train.precision = "float16";
  expect_error_containing([&] { diffstride::train(config); },
                          "needs a CUDA device");
}

// The rule of torch.cuda.amp.GradScaler, checked on hand-made gradients.
TEST(Precision, LossScalerSkipsNonFiniteStepsAndAdaptsItsScale) {
  diffstride::LossScaler scaler(true, 1024.0, 3);
  auto p = torch::zeros({2}, torch::requires_grad());
  const auto set_grad = [&](std::vector<float> g) {
    p.mutable_grad() = torch::tensor(g);
  };
  EXPECT_DOUBLE_EQ(scaler.scale_loss(torch::tensor(3.0)).item<double>(),
                   3.0 * 1024);
  set_grad({2048.0f, -512.0f});
  EXPECT_TRUE(scaler.unscale_and_update({p}));
  EXPECT_TRUE(torch::equal(p.grad(), torch::tensor({2.0f, -0.5f})));
  set_grad({INFINITY, 1.0f});
  EXPECT_FALSE(scaler.unscale_and_update({p}));
  EXPECT_DOUBLE_EQ(scaler.scale(), 512.0);
  set_grad({NAN, 1.0f});
  EXPECT_FALSE(scaler.unscale_and_update({p}));
  EXPECT_DOUBLE_EQ(scaler.scale(), 256.0);
  for (int good = 0; good < 3; ++good) {
    set_grad({1.0f, 1.0f});
    EXPECT_TRUE(scaler.unscale_and_update({p}));
  }
  EXPECT_DOUBLE_EQ(scaler.scale(), 512.0);
  EXPECT_EQ(scaler.good_steps(), 0);
  diffstride::LossScaler off(false);
  set_grad({INFINITY, 1.0f});
  EXPECT_TRUE(off.unscale_and_update({p}));
  EXPECT_DOUBLE_EQ(off.scale_loss(torch::tensor(3.0)).item<double>(), 3.0);
}

// bfloat16 on the CPU: float32 parameters, a loss that falls, and steps
// within bfloat16's precision of the float32 run's.
TEST(Precision, Bfloat16RunTracksTheFloat32Run) {
  auto config = diffstride_test::tiny_run_config("bfloat16_cpu");
  config.train.epochs = 3;
  const auto reference = trace_run(config);
  config.train.precision = "bfloat16";
  config.train.out = config.train.out + "_bf16";
  const auto reduced = trace_run(config);
  ASSERT_EQ(reduced.parameters.size(), reference.parameters.size());
  // The first step's update is lr x gradient: bfloat16 keeps 8 bits of
  // mantissa (relative rounding 2^-9 = 0.2%) in every convolution, and the
  // errors of a few layers add up.
  const double first = update_error(initial_parameters(config),
                                    reduced.parameters[0],
                                    reference.parameters[0]);
  std::cout << "bfloat16 first update: relative error " << first << "\n";
  EXPECT_LT(first, 0.05);
  EXPECT_GT(first, 1e-4);  // it did compute in bfloat16
  EXPECT_LT(reduced.epochs.back().train_loss,
            reduced.epochs.front().train_loss);
  EXPECT_NEAR(reduced.epochs.back().train_loss,
              reference.epochs.back().train_loss,
              0.05 * reference.epochs.back().train_loss);
}

// channels_last: the convolution weights stay NHWC through training and the
// run computes what the contiguous one computes, to float32 rounding.
TEST(Precision, ChannelsLastRunMatchesTheContiguousRun) {
  auto config = diffstride_test::tiny_run_config("channels_last");
  const auto reference = trace_run(config);
  EXPECT_FALSE(reference.weights_channels_last);
  config.train.channels_last = true;
  config.train.out = config.train.out + "_nhwc";
  const auto nhwc = trace_run(config);
  EXPECT_TRUE(nhwc.weights_channels_last);
  ASSERT_EQ(nhwc.parameters.size(), reference.parameters.size());
  for (size_t step = 0; step < nhwc.parameters.size(); ++step) {
    EXPECT_LT(largest_relative_change(nhwc.parameters[step],
                                      reference.parameters[step]),
              1e-4)
        << "step " << step + 1;
  }
}

// On a GPU: bfloat16 and float16 (with its loss scale) train like float32,
// in NHWC too.
TEST(PrecisionCuda, ReducedPrecisionRunsTrackTheFloat32Run) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  auto config = diffstride_test::tiny_run_config("precision_cuda");
  config.train.device = "cuda";
  config.train.epochs = 3;
  const auto reference = trace_run(config);
  for (const std::string precision : {"bfloat16", "float16"}) {
    for (const bool channels_last : {false, true}) {
      config.train.precision = precision;
      config.train.channels_last = channels_last;
      config.train.out =
          config.train.out + "_" + precision + (channels_last ? "_nhwc" : "");
      const auto reduced = trace_run(config);
      ASSERT_EQ(reduced.parameters.size(), reference.parameters.size());
      EXPECT_EQ(reduced.weights_channels_last, channels_last);
      EXPECT_LT(update_error(initial_parameters(config),
                             reduced.parameters[0],
                             reference.parameters[0]),
                0.05)
          << precision;
      EXPECT_NEAR(reduced.epochs.back().train_loss,
                  reference.epochs.back().train_loss,
                  0.05 * reference.epochs.back().train_loss)
          << precision;
    }
  }
}

}  // namespace
