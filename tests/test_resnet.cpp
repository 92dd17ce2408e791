// The ResNet family and the complexity penalty (docs/resnet.md):
// the reference's shape cases, the documented parameter counts, training-mode
// behaviour and hand computations.

#include <diffstride/models/complexity_penalty.h>
#include <diffstride/models/resnet.h>

#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

using diffstride::DiffStride;
using diffstride::DiffStrideOptions;
using diffstride::Pooling;
using diffstride::ResidualLayer;
using diffstride::ResidualLayerOptions;
using diffstride::ResNet;
using diffstride_test::expect_error_containing;

namespace {

const Pooling kAllPoolings[] = {Pooling::kNone,
                                Pooling::kSpatial,
                                Pooling::kSpectral,
                                Pooling::kDiffStride};

}  // namespace

TEST(ResidualLayer, ProjectingLayerWithStride2HalvesTheInput) {
  for (const auto pooling :
       {Pooling::kNone, Pooling::kSpatial, Pooling::kSpectral}) {
    ResidualLayer layer(
        ResidualLayerOptions(3, 7).strides(2.0).project(true).pooling(pooling));
    EXPECT_EQ(layer(torch::randn({2, 3, 32, 32})).sizes(),
              torch::IntArrayRef({2, 7, 16, 16}))
        << diffstride::pooling_name(pooling);
  }
  // DiffStride's own output size at stride 2 on 32 (docs/layers.md): 24.
  ResidualLayer learned(
      ResidualLayerOptions(3, 7).strides(2.0).project(true).pooling(
          Pooling::kDiffStride));
  EXPECT_EQ(learned(torch::randn({2, 3, 32, 32})).sizes(),
            torch::IntArrayRef({2, 7, 24, 24}));
}

TEST(ResidualLayer, BlockOfTenLayersWithStrides2And4) {
  for (const auto pooling :
       {Pooling::kNone, Pooling::kSpatial, Pooling::kSpectral}) {
    auto x = torch::randn({1, 4, 64, 64});
    for (int l = 0; l < 10; ++l) {
      ResidualLayer layer(ResidualLayerOptions(l == 0 ? 4 : 6, 6)
                              .strides({2.0, 4.0})
                              .project(l == 0)
                              .pooling(pooling));
      x = layer(x);
    }
    EXPECT_EQ(x.sizes(), torch::IntArrayRef({1, 6, 32, 16}))
        << diffstride::pooling_name(pooling);
  }
}

TEST(ResidualLayer, IdentityLayerKeepsShapeAndHasNoPoolingOrShortcut) {
  ResidualLayer layer(
      ResidualLayerOptions(5, 5).strides(2.0).pooling(Pooling::kDiffStride));
  EXPECT_EQ(layer(torch::randn({2, 5, 9, 11})).sizes(),
            torch::IntArrayRef({2, 5, 9, 11}));
  EXPECT_TRUE(layer->pooling.is_empty());
  EXPECT_TRUE(layer->shortcut.is_empty());
  expect_error_containing(
      [] { ResidualLayer(ResidualLayerOptions(5, 6)); },
      "an identity layer keeps the channel count, got 5 -> 6");
}

TEST(ResNet, TrainableParameterCountsMatchTheSpec) {
  EXPECT_EQ(ResNet(diffstride::resnet18_options())->trainable_parameter_count(),
            11172170);
  EXPECT_EQ(ResNet(diffstride::resnet18_options().pooling(Pooling::kDiffStride))
                ->trainable_parameter_count(),
            11172178);
  EXPECT_EQ(ResNet(diffstride::resnet56_options().pooling(Pooling::kDiffStride))
                ->trainable_parameter_count(),
            855842);
}

TEST(ResNet, EveryPoolingRunsForwardAndBackwardOnBothFactories) {
  torch::manual_seed(0);
  for (const auto& options :
       {diffstride::resnet18_options(), diffstride::resnet56_options()}) {
    for (const auto pooling : kAllPoolings) {
      auto opts = options;
      ResNet model(opts.pooling(pooling));
      const auto logits = model(torch::randn({2, 3, 32, 32}));
      SCOPED_TRACE(diffstride::pooling_name(pooling));
      ASSERT_EQ(logits.sizes(), torch::IntArrayRef({2, 10}));
      logits.logsumexp(1).sum().backward();
      for (const auto& p : model->named_parameters()) {
        ASSERT_TRUE(p.value().grad().defined()) << p.key();
        EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>())
            << p.key();
      }
    }
  }
}

TEST(ResNet, GradientReachesEveryStrideAndConstraintsApply) {
  torch::manual_seed(1);
  ResNet model(diffstride::resnet18_options().pooling(Pooling::kDiffStride));
  const auto layers = model->diffstride_layers();
  ASSERT_EQ(layers.size(), 4u);
  // Forward order: the stem (stride 1), then blocks 1-3 (stride 2).
  const auto initial = model->current_strides();
  EXPECT_EQ(initial[0][0], 1.0);
  EXPECT_EQ(initial[3][1], 2.0);
  model(torch::randn({2, 3, 32, 32})).logsumexp(1).sum().backward();
  for (const auto& layer : layers) {
    ASSERT_TRUE(layer->strides.grad().defined());
    EXPECT_GT(layer->strides.grad().abs().min().item<double>(), 0.0);
  }
  // The stem's stride 1 was floored at the forward: 32 / (32 - 4).
  EXPECT_NEAR(model->current_strides()[0][0], 32.0 / 28.0, 1e-6);
  {
    torch::NoGradGuard no_grad;
    layers[1]->strides.fill_(0.5);
  }
  model->constrain_strides();
  // Block 1's layer saw 32x32 inputs too.
  EXPECT_NEAR(model->current_strides()[1][0], 32.0 / 28.0, 1e-6);
}

TEST(ResNet, TracedForwardGivesStageShapesDiffStrideSizesAndMultiplyAdds) {
  ResNet model(diffstride::resnet18_options().pooling(Pooling::kDiffStride));
  model->eval();
  diffstride::ForwardTrace trace;
  std::vector<std::vector<int64_t>> stages;
  torch::NoGradGuard no_grad;
  model->forward_traced(torch::zeros({1, 3, 32, 32}), &trace, &stages);
  ASSERT_EQ(stages.size(), 6u);  // stem, 4 blocks, logits
  // The stem's stride 1 is floored to 32/28, where nothing is cropped.
  EXPECT_EQ(stages[0], (std::vector<int64_t>{1, 64, 32, 32}));
  EXPECT_EQ(stages[5], (std::vector<int64_t>{1, 10}));
  ASSERT_EQ(trace.diffstride_outputs.size(), 4u);
  EXPECT_EQ(trace.diffstride_outputs.back(), (std::array<int64_t, 2>{18, 18}));

  // Strided convolutions: multiply-adds written out layer by layer,
  // H' W' C_out C_in k^2 per convolution, plus the dense layer.
  ResNet strided(diffstride::resnet18_options());
  diffstride::ForwardTrace strided_trace;
  strided->forward_traced(
      torch::zeros({1, 3, 32, 32}), &strided_trace, nullptr);
  int64_t expected = 32 * 32 * 64 * 3 * 9;      // stem
  expected += 2 * 2 * (32 * 32 * 64 * 64 * 9);  // block 0: 2 layers
  int64_t size = 32, channels = 64;
  for (const int64_t filters : {128, 256, 512}) {
    size /= 2;
    const int64_t area = size * size;
    expected += area * filters * channels * 9;     // conv0, strided
    expected += area * filters * filters * 9;      // conv1
    expected += area * filters * channels;         // 1x1 shortcut
    expected += 2 * area * filters * filters * 9;  // identity layer
    channels = filters;
  }
  expected += 512 * 10;  // dense
  EXPECT_EQ(strided_trace.multiply_adds, expected);
}

TEST(ResNet, TrainModeUpdatesBatchNormStatisticsAndEvalModeUsesThem) {
  torch::manual_seed(2);
  ResNet model(diffstride::resnet56_options().pooling(Pooling::kSpectral));
  const auto x = torch::randn({4, 3, 16, 16}) * 3 + 1;
  const auto before = model->head_bn->running_mean.clone();
  model->train();
  model(x);
  EXPECT_FALSE(torch::equal(before, model->head_bn->running_mean));
  model->eval();
  const auto stats = model->head_bn->running_mean.clone();
  const auto full = model(x);
  EXPECT_TRUE(torch::equal(stats, model->head_bn->running_mean));
  // In eval mode each example's logits do not depend on the rest of the
  // batch; in train mode they do.
  EXPECT_TRUE(torch::allclose(
      full.slice(0, 0, 1), model(x.slice(0, 0, 1)), 1e-5, 1e-5));
  model->train();
  EXPECT_FALSE(torch::allclose(model(x).slice(0, 0, 1),
                               model(x.slice(0, 0, 2)).slice(0, 0, 1),
                               1e-3,
                               1e-3));
}

TEST(ResNet, BadOptionsNameTheProblem) {
  expect_error_containing([] { diffstride::resnet_options("resnet50"); },
                          "unknown model 'resnet50': expected one of "
                          "resnet18, resnet56");
  expect_error_containing([] { diffstride::parse_pooling("max"); },
                          "unknown pooling 'max': expected one of none, "
                          "spatial, spectral, diffstride");
  expect_error_containing(
      [] {
        ResNet(
            diffstride::resnet18_options().strides({1.0, 1.0, 1.5, 2.0, 2.0}));
      },
      "strided convolutions (pooling 'none') need whole strides >= 1, got 1.5");
  expect_error_containing(
      [] {
        ResNet(diffstride::resnet18_options().strides({1.0, 2.0}));
      },
      "expected one stride per stage, got 5 filters and 2 strides");
  ResNet model(diffstride::resnet18_options());
  expect_error_containing(
      [&] {
        model(torch::randn({1, 1, 32, 32}));
      },
      "expected an N x 3 x H x W input, got shape [1, 1, "
      "32, 32]");
}

TEST(ComplexityPenalty, ValueAndGradientMatchHandComputation) {
  std::vector<DiffStride> layers = {
      DiffStride(DiffStrideOptions().strides({2.0, 2.0})),
      DiffStride(DiffStrideOptions().strides({1.5, 2.5})),
      DiffStride(DiffStrideOptions().strides(3.0).shared_stride(true))};
  const auto penalty = diffstride::complexity_penalty(layers);
  // a1 = 1/(2*2), a2 = a1/(1.5*2.5), a3 = a2/(3*3).
  const double a1 = 0.25, a2 = a1 / 3.75, a3 = a2 / 9.0;
  EXPECT_NEAR(penalty.item<double>(), a1 + a2 + a3, 1e-6);
  penalty.backward();
  // d/ds of each layer's strides: every term from that layer on has a 1/s.
  const auto grad = [&](int layer, int axis) {
    return layers[layer]->strides.grad()[axis].item<double>();
  };
  EXPECT_NEAR(grad(0, 0), -(a1 + a2 + a3) / 2.0, 1e-6);
  EXPECT_NEAR(grad(1, 0), -(a2 + a3) / 1.5, 1e-6);
  EXPECT_NEAR(grad(1, 1), -(a2 + a3) / 2.5, 1e-6);
  EXPECT_NEAR(grad(2, 0), -2.0 * a3 / 3.0, 1e-6);
  EXPECT_EQ(
      diffstride::complexity_penalty(std::vector<diffstride::DiffStride>{})
          .item<double>(),
      0.0);
}

// The waveform ResNet (docs/resnet.md, "Waveforms"): every pooling choice on
// N x C x L input; a 1 x k convolution on N x C x 1 x L is conv1d.
TEST(WaveformResNet, EveryPoolingRunsOnWaveformsAndStridesAlongTimeOnly) {
  torch::manual_seed(0);
  for (const auto pooling : kAllPoolings) {
    SCOPED_TRACE(diffstride::pooling_name(pooling));
    auto options = diffstride::resnet1d_options()
                       .filters({8, 8, 16})
                       .strides({4.0, 1.0, 4.0})
                       .in_channels(2)
                       .pooling(pooling);
    ResNet model(options);
    diffstride::ForwardTrace trace;
    std::vector<std::vector<int64_t>> stages;
    const auto waveform = torch::randn({3, 2, 4000});
    const auto logits = model->forward_traced(waveform, &trace, &stages);
    ASSERT_EQ(logits.sizes(), torch::IntArrayRef({3, 10}));
    // N x C x 1 x L is the same input.
    EXPECT_TRUE(torch::allclose(model(waveform.unsqueeze(2)), model(waveform)));
    // The stem and the last block divide the length by about 4 each (the
    // spectral poolings keep a few more samples, as in 2-D); height stays 1.
    ASSERT_EQ(stages.size(), 4u);
    for (const auto& shape : stages) {
      if (shape.size() == 4) {
        EXPECT_EQ(shape[2], 1);
      }
    }
    EXPECT_NEAR(static_cast<double>(stages[0][3]), 1000.0, 10.0);
    EXPECT_NEAR(static_cast<double>(stages[2][3]), 250.0, 10.0);
    logits.logsumexp(1).sum().backward();
    for (const auto& p : model->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
    }
    if (pooling == Pooling::kDiffStride) {
      const auto layers = model->diffstride1d_layers();
      ASSERT_EQ(layers.size(), 2u);  // the stem's and the last block's
      EXPECT_TRUE(model->diffstride_layers().empty());
      const auto strides = model->current_strides();
      ASSERT_EQ(strides.size(), 2u);
      EXPECT_EQ(strides[0][0], 1.0);
      EXPECT_DOUBLE_EQ(strides[0][1], 4.0);
      ASSERT_TRUE(layers[0]->strides.grad().defined());
      EXPECT_NE(layers[0]->strides.grad().item<double>(), 0.0);
      // Penalty: 1/s1 + 1/(s1 s2), by hand.
      const double s1 = layers[0]->strides.item<double>();
      const double s2 = layers[1]->strides.item<double>();
      EXPECT_NEAR(model->complexity_penalty().item<double>(),
                  1.0 / s1 + 1.0 / (s1 * s2),
                  1e-6);
    }
  }
}

TEST(WaveformResNet, OneByKConvolutionIsConv1dAlongTime) {
  torch::manual_seed(0);
  auto conv =
      diffstride::make_conv(3, 5, 9, diffstride::IntStridePair({1, 4}), 1);
  ASSERT_EQ(conv->weight.sizes(), torch::IntArrayRef({5, 3, 1, 9}));
  const auto x = torch::randn({2, 3, 1, 101});
  const auto expected = torch::conv1d(
      x.squeeze(2), conv->weight.squeeze(2), {}, /*stride=*/4, /*padding=*/4);
  EXPECT_TRUE(torch::allclose(conv(x).squeeze(2), expected, 1e-5, 1e-6));
}
