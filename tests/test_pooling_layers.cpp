// FixedSpectralPooling and SpatialPooling against direct computations.

#include <diffstride/nn/fixed_spectral_pooling.h>
#include <diffstride/nn/spatial_pooling.h>

#include "support/plain_fft_reference.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

namespace F = diffstride::functional;
namespace ref = diffstride_reference;
using diffstride::FixedSpectralPooling;
using diffstride::FixedSpectralPoolingOptions;
using diffstride::SpatialPooling;
using diffstride::SpatialPoolingOptions;
using diffstride_test::expect_error_containing;
using diffstride_test::relative_error;

TEST(FixedSpectralPooling, SpecShapeExample) {
  FixedSpectralPooling pool(FixedSpectralPoolingOptions({2.0, 4.0}));
  EXPECT_EQ(pool(torch::randn({2, 3, 64, 64})).sizes(),
            torch::IntArrayRef({2, 3, 32, 16}));
}

TEST(FixedSpectralPooling, ShapesAndValuesMatchPlainFftFormulation) {
  torch::manual_seed(0);
  for (const int64_t height : {5, 8, 13, 32, 33}) {
    for (const int64_t width : {4, 7, 16, 31}) {
      for (const auto& strides : std::vector<std::array<double, 2>>{
               {1.0, 1.0}, {2.0, 2.0}, {1.5, 3.2}, {3.7, 1.3}, {10.0, 10.0}}) {
        const auto x = torch::randn({2, 3, height, width}, torch::kDouble);
        const auto y = F::fixed_spectral_pooling(
            x, F::FixedSpectralPoolingFuncOptions({strides[0], strides[1]}));
        // Output size written out from docs/layers.md: even floor(H/s_h) >= 2,
        // floor(W/s_w) >= 2.
        int64_t out_height = static_cast<int64_t>(height / strides[0]);
        out_height = std::max<int64_t>(out_height - out_height % 2, 2);
        const int64_t out_width =
            std::max<int64_t>(static_cast<int64_t>(width / strides[1]), 2);
        SCOPED_TRACE(::testing::Message()
                     << height << "x" << width << " s=(" << strides[0] << ", "
                     << strides[1] << ")");
        ASSERT_EQ(y.sizes(), torch::IntArrayRef({2, 3, out_height, out_width}));
        EXPECT_LE(
            relative_error(
                y, ref::fixed_spectral_pooling(x, strides[0], strides[1])),
            1e-10);
      }
    }
  }
}

TEST(FixedSpectralPooling, StrideOneOnEvenSizesIsIdentity) {
  const auto x = torch::randn({1, 2, 8, 10}, torch::kDouble);
  EXPECT_LE(
      relative_error(
          F::fixed_spectral_pooling(x, FixedSpectralPoolingOptions(1.0)), x),
      1e-12);
}

TEST(FixedSpectralPooling, Float32ChannelsLastAndGradient) {
  const auto x = torch::randn({2, 4, 16, 18})
                     .contiguous(torch::MemoryFormat::ChannelsLast);
  const auto y = F::fixed_spectral_pooling(x, FixedSpectralPoolingOptions(2.0));
  EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_LE(relative_error(
                y, ref::fixed_spectral_pooling(x.to(torch::kDouble), 2.0, 2.0)),
            1e-5);
  // The map is linear: the gradient of sum(y * w) is the adjoint applied to w,
  // checked here by <y(x), w> = <x, grad>.
  const auto input =
      torch::randn({1, 2, 16, 18}, torch::kDouble).requires_grad_();
  const auto output =
      F::fixed_spectral_pooling(input, FixedSpectralPoolingOptions(2.0));
  const auto weights = torch::randn_like(output);
  (output * weights).sum().backward();
  EXPECT_NEAR((output * weights).sum().item<double>(),
              (input.detach() * input.grad()).sum().item<double>(),
              1e-10);
}

TEST(PoolingCuda, FixedSpectralAndSpatialPoolingMatchReferenceOnGpu) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  torch::manual_seed(5);
  const auto x = torch::randn({2, 3, 33, 16}, torch::kDouble);
  const auto x_gpu = x.to(torch::kCUDA).requires_grad_();
  const auto y =
      F::fixed_spectral_pooling(x_gpu, FixedSpectralPoolingOptions({2.0, 1.5}));
  EXPECT_TRUE(y.is_cuda());
  EXPECT_LE(relative_error(y.cpu(), ref::fixed_spectral_pooling(x, 2.0, 1.5)),
            1e-10);
  const auto weights = torch::randn_like(y);
  (y * weights).sum().backward();
  EXPECT_NEAR((y * weights).sum().item<double>(),
              (x_gpu.detach() * x_gpu.grad()).sum().item<double>(),
              1e-9);
  const auto sub =
      F::spatial_pooling(x_gpu.detach(), SpatialPoolingOptions({2, 3}));
  EXPECT_TRUE(sub.is_cuda());
  EXPECT_TRUE(torch::equal(sub.cpu(),
                           x.index({torch::indexing::Slice(),
                                    torch::indexing::Slice(),
                                    torch::indexing::Slice(0, 33, 2),
                                    torch::indexing::Slice(0, 16, 3)})));
}

TEST(FixedSpectralPooling, ErrorsNameTheProblem) {
  expect_error_containing(
      [] { FixedSpectralPooling{FixedSpectralPoolingOptions(0.5)}; },
      "FixedSpectralPooling: strides must be finite and >= 1, got 0.5");
  expect_error_containing(
      [] {
        F::fixed_spectral_pooling(torch::randn({1, 1, 1, 8}),
                                  FixedSpectralPoolingOptions(1.0));
      },
      "FixedSpectralPooling: expected every spatial size to be at least 2, got "
      "1x8");
  expect_error_containing(
      [] {
        F::fixed_spectral_pooling(torch::randn({8, 8}),
                                  FixedSpectralPoolingOptions(1.0));
      },
      "FixedSpectralPooling: expected a 3-D (N x C x L), 4-D (N x C x H x W) "
      "or "
      "5-D (N x C x D x H x W) input, got a 2-D tensor");
  std::ostringstream stream;
  stream << FixedSpectralPooling(FixedSpectralPoolingOptions({2.0, 1.5}));
  EXPECT_EQ(stream.str(), "diffstride::FixedSpectralPooling(strides=[2, 1.5])");
}

TEST(SpatialPooling, ShapesAreCeilOfSizeOverStrideAndValuesAreSubsamples) {
  for (const int64_t height : {1, 5, 8, 9}) {
    for (const int64_t width : {3, 8, 10}) {
      for (const auto& strides : std::vector<std::array<int64_t, 2>>{
               {1, 1}, {2, 2}, {3, 2}, {2, 4}}) {
        const auto x = torch::randn({2, 3, height, width});
        const auto y =
            SpatialPooling(SpatialPoolingOptions({strides[0], strides[1]}))(x);
        const int64_t out_height = (height + strides[0] - 1) / strides[0];
        const int64_t out_width = (width + strides[1] - 1) / strides[1];
        ASSERT_EQ(y.sizes(), torch::IntArrayRef({2, 3, out_height, out_width}));
        for (int64_t i = 0; i < out_height; ++i) {
          for (int64_t j = 0; j < out_width; ++j) {
            EXPECT_TRUE(torch::equal(
                y.select(2, i).select(2, j),
                x.select(2, i * strides[0]).select(2, j * strides[1])));
          }
        }
      }
    }
  }
}

TEST(SpatialPooling, OutputIsACopyInTheInputsMemoryFormat) {
  const auto x =
      torch::randn({1, 2, 6, 6}).contiguous(torch::MemoryFormat::ChannelsLast);
  auto y = F::spatial_pooling(x, SpatialPoolingOptions(1));
  EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast));
  y.fill_(0);
  EXPECT_GT(x.abs().sum().item<double>(), 0.0);
}

TEST(SpatialPooling, ErrorsNameTheProblem) {
  expect_error_containing(
      [] { SpatialPooling{SpatialPoolingOptions(0)}; },
      "SpatialPooling: strides must be integers >= 1, got 0");
  expect_error_containing(
      [] {
        F::spatial_pooling(torch::randn({4, 4}), SpatialPoolingOptions(2));
      },
      "SpatialPooling: expected a 4-D NCHW input, got 2-D");
  std::ostringstream stream;
  stream << SpatialPooling(SpatialPoolingOptions({2, 3}));
  EXPECT_EQ(stream.str(), "diffstride::SpatialPooling(strides=[2, 3])");
}
