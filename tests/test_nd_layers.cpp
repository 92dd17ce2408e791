// DiffStride1d/3d and FixedSpectralPooling1d/3d against the plain FFT
// formulation of tests/support, float64 finite differences for gradients,
// and the modules' contract over one and three spatial axes.

#include <diffstride/nn/diff_stride.h>
#include <diffstride/nn/fixed_spectral_pooling.h>

#include "support/plain_fft_reference.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <random>
#include <sstream>

namespace F = diffstride::functional;
namespace ref = diffstride_reference;
using diffstride_test::central_difference;
using diffstride_test::expect_error_containing;
using diffstride_test::expect_second_derivatives_match;
using diffstride_test::relative_error;
using diffstride_test::run;

namespace {

// The strides of step 1 of docs/layers.md, computed here: each raised to
// the floor size / (size - R) of its axis; a shared stride to the largest.
std::vector<double> floored(const torch::Tensor& x,
                            const std::vector<double>& strides,
                            double smoothness_factor) {
  const int64_t rank = x.dim() - 2;
  std::vector<double> floors;
  for (int64_t axis = 0; axis < rank; ++axis) {
    floors.push_back(ref::stride_floor(x.size(2 + axis), smoothness_factor));
  }
  const bool shared = strides.size() == 1;
  const double largest = *std::max_element(floors.begin(), floors.end());
  std::vector<double> out;
  for (int64_t axis = 0; axis < rank; ++axis) {
    out.push_back(
        std::max(strides[shared ? 0 : axis], shared ? largest : floors[axis]));
  }
  return out;
}

torch::Tensor reference(const torch::Tensor& x,
                        const std::vector<double>& strides,
                        double smoothness_factor,
                        bool cropping) {
  return ref::diffstride_nd(
      x, torch::tensor(strides, torch::kDouble), smoothness_factor, cropping);
}

struct Case {
  std::vector<int64_t> spatial;
  double smoothness;
};

// Values of the functional form against the reference at 1e-10 over the
// given sizes, each with and without cropping, per-axis and shared strides.
int expect_values_match(const std::vector<Case>& cases, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> stride(1.0, 4.0);
  int checked = 0;
  for (const auto& c : cases) {
    std::vector<int64_t> shape = {2, 3};
    shape.insert(shape.end(), c.spatial.begin(), c.spatial.end());
    const auto x = torch::randn(shape, torch::kDouble);
    for (const bool cropping : {true, false}) {
      for (const bool shared : {false, true}) {
        std::vector<double> strides;
        for (size_t axis = 0; axis < (shared ? 1 : c.spatial.size()); ++axis) {
          strides.push_back(stride(rng));
        }
        const auto y = run(x, strides, c.smoothness, cropping);
        const auto expected = reference(
            x, floored(x, strides, c.smoothness), c.smoothness, cropping);
        SCOPED_TRACE(::testing::Message()
                     << torch::IntArrayRef(c.spatial) << " strides "
                     << torch::ArrayRef<double>(strides) << " R "
                     << c.smoothness << " cropping " << cropping);
        EXPECT_EQ(y.sizes(), expected.sizes());
        if (y.sizes() == expected.sizes()) {
          EXPECT_LE(relative_error(y, expected), 1e-10);
          ++checked;
        }
      }
    }
  }
  return checked;
}

}  // namespace

TEST(DiffStrideNd, OneDimensionalMatchesPlainFftFormulation) {
  torch::manual_seed(41);
  std::vector<Case> cases;
  for (const int64_t length : {5, 6, 9, 16, 17, 64, 127, 128, 1000}) {
    for (const double smoothness : {1.0, 2.5, 4.0}) {
      if (length > smoothness) {
        cases.push_back({{length}, smoothness});
      }
    }
  }
  EXPECT_EQ(expect_values_match(cases, 1), 4 * static_cast<int>(cases.size()));
}

TEST(DiffStrideNd, ThreeDimensionalMatchesPlainFftFormulation) {
  torch::manual_seed(42);
  const std::vector<Case> cases = {{{5, 6, 7}, 2.0},
                                   {{8, 9, 10}, 4.0},
                                   {{11, 8, 6}, 4.0},
                                   {{12, 12, 12}, 2.5},
                                   {{7, 13, 9}, 1.0},
                                   {{16, 15, 17}, 4.0}};
  EXPECT_EQ(expect_values_match(cases, 2), 4 * static_cast<int>(cases.size()));
}

// The N-D reference over two axes is the 2-D layer: the 1-D and 3-D layers
// apply the 2-D semantics to each axis.
TEST(DiffStrideNd, TwoDimensionalLayerIsThePerAxisFormulation) {
  torch::manual_seed(43);
  const std::vector<Case> cases = {{{9, 10}, 4.0}, {{16, 17}, 2.0}};
  EXPECT_EQ(expect_values_match(cases, 3), 8);
}

TEST(DiffStrideNd, GradientsMatchFiniteDifferences) {
  torch::manual_seed(44);
  for (const auto& spatial :
       std::vector<std::vector<int64_t>>{{37}, {64}, {9, 12, 11}}) {
    SCOPED_TRACE(torch::IntArrayRef(spatial));
    std::vector<int64_t> shape = {2, 3};
    shape.insert(shape.end(), spatial.begin(), spatial.end());
    const std::vector<double> s0 = spatial.size() == 1
                                       ? std::vector<double>{2.3}
                                       : std::vector<double>{2.3, 1.7, 2.6};
    const double smoothness = 2.5;
    const auto x = torch::randn(shape, torch::kDouble).requires_grad_();
    const auto strides = torch::tensor(s0, torch::kDouble).requires_grad_();
    const auto y = F::diffstride(
        x, strides, F::DiffStrideFuncOptions().smoothness_factor(smoothness));
    const auto weights = torch::randn_like(y);
    (y * weights).sum().backward();
    const auto loss = [&](const torch::Tensor& input,
                          const std::vector<double>& s) {
      return (reference(input, s, smoothness, true) * weights)
          .sum()
          .item<double>();
    };
    std::mt19937 rng(6);
    std::uniform_int_distribution<int64_t> element(0, x.numel() - 1);
    for (int trial = 0; trial < 8; ++trial) {
      const int64_t index = element(rng);
      const double numeric = central_difference(
          [&](double h) {
            auto shifted = x.detach().clone();
            shifted.view(-1)[index] += h;
            return loss(shifted, s0);
          },
          1e-3);
      EXPECT_NEAR(x.grad().view(-1)[index].item<double>(),
                  numeric,
                  1e-8 * std::max(1.0, std::abs(numeric)));
    }
    for (size_t axis = 0; axis < s0.size(); ++axis) {
      const double numeric = central_difference(
          [&](double h) {
            auto s = s0;
            s[axis] += h;
            return loss(x.detach(), s);
          },
          1e-6);
      EXPECT_GT(std::abs(numeric), 1e-3);
      EXPECT_NEAR(strides.grad()[axis].item<double>(),
                  numeric,
                  1e-6 * std::abs(numeric));
    }
  }
}

// Second derivatives against finite differences of first derivatives
// (test_helpers.h).
TEST(DiffStrideNd, SecondDerivativesMatchFiniteDifferencesOfGradient) {
  torch::manual_seed(45);
  for (const auto& spatial :
       std::vector<std::vector<int64_t>>{{29}, {8, 10, 9}}) {
    SCOPED_TRACE(torch::IntArrayRef(spatial));
    std::vector<int64_t> shape = {2, 2};
    shape.insert(shape.end(), spatial.begin(), spatial.end());
    expect_second_derivatives_match(
        [](const torch::Tensor& x, const torch::Tensor& s) {
          return F::diffstride(
              x, s, F::DiffStrideFuncOptions().smoothness_factor(2.0));
        },
        torch::randn(shape, torch::kDouble),
        spatial.size() == 1 ? std::vector<double>{2.3}
                            : std::vector<double>{2.3, 1.7, 2.6},
        4);
  }
}

TEST(DiffStrideNd, ModulesClampTrainAndPrint) {
  torch::manual_seed(46);
  // Length 20 at R = 4: the floor is 20 / 16 = 1.25.
  diffstride::DiffStride1d audio(
      diffstride::DiffStride1dOptions().strides(1.0));
  const auto x = torch::randn({2, 3, 20});
  const auto y = audio(x);
  EXPECT_EQ(audio->strides.sizes(), torch::IntArrayRef({1}));
  EXPECT_NEAR(audio->current_strides()[0], 1.25, 1e-7);
  EXPECT_LE(
      relative_error(y, reference(x.to(torch::kDouble), {1.25}, 4.0, true)),
      1e-5);
  y.square().sum().backward();
  ASSERT_TRUE(audio->strides.grad().defined());

  // Height 12: the floor 12 / 8 = 1.5 raises the second stride only.
  diffstride::DiffStride3d volume(
      diffstride::DiffStride3dOptions().strides({2.0, 1.0, 3.0}));
  const auto v = torch::randn({1, 2, 10, 12, 9});
  const auto out = volume(v);
  EXPECT_EQ(volume->current_strides(), (std::array<double, 3>{2.0, 1.5, 3.0}));
  EXPECT_LE(
      relative_error(
          out, reference(v.to(torch::kDouble), {2.0, 1.5, 3.0}, 4.0, true)),
      1e-5);
  out.square().sum().backward();
  EXPECT_GT(volume->strides.grad().abs().min().item<double>(), 0.0);
  std::ostringstream stream;
  stream << volume;
  EXPECT_EQ(stream.str(),
            "diffstride::DiffStride3d(strides=[2, 1.5, 3], "
            "smoothness_factor=4, cropping=true, trainable=true, "
            "shared_stride=false, lower_limit_stride=1, "
            "upper_limit_stride=none)");

  // A shared stride: one parameter, the largest floor (10 / 6) of the three.
  diffstride::DiffStride3d shared(
      diffstride::DiffStride3dOptions().strides(1.0).shared_stride(true));
  shared(torch::randn({1, 1, 10, 12, 16}));
  EXPECT_EQ(shared->strides.sizes(), torch::IntArrayRef({1}));
  for (const double s : shared->current_strides()) {
    EXPECT_NEAR(s, 10.0 / 6.0, 1e-6);
  }
  // The constraint after an optimiser step past the upper limit.
  diffstride::DiffStride1d limited(
      diffstride::DiffStride1dOptions().strides(2.0).upper_limit_stride(3.0));
  {
    torch::NoGradGuard no_grad;
    limited->strides.fill_(7.0);
  }
  limited->constrain_strides();
  EXPECT_EQ(limited->current_strides()[0], 3.0);
}

TEST(FixedSpectralPoolingNd, MatchPlainFftFormulationAndModules) {
  torch::manual_seed(47);
  int checked = 0;
  for (const auto& spatial : std::vector<std::vector<int64_t>>{
           {2}, {3}, {7}, {16}, {33}, {5, 6, 7}, {8, 9, 2}, {12, 11, 16}}) {
    std::vector<int64_t> shape = {2, 3};
    shape.insert(shape.end(), spatial.begin(), spatial.end());
    const auto x = torch::randn(shape, torch::kDouble).requires_grad_();
    for (const auto& strides : std::vector<std::vector<double>>{
             {1.0}, {2.0}, {1.5, 3.3, 2.0}, {2.7, 1.0, 1.2}}) {
      if (strides.size() != 1 && strides.size() != spatial.size()) {
        continue;
      }
      std::vector<double> per_axis = strides;
      per_axis.resize(spatial.size(), strides[0]);
      const auto y = F::fixed_spectral_pooling(x, strides);
      const auto expected =
          ref::fixed_spectral_pooling_nd(x.detach(), per_axis);
      SCOPED_TRACE(::testing::Message()
                   << torch::IntArrayRef(spatial) << " strides "
                   << torch::ArrayRef<double>(strides));
      ASSERT_EQ(y.sizes(), expected.sizes());
      EXPECT_LE(relative_error(y, expected), 1e-10);
      // Linear in x: <y, w> = <x, dL/dx>.
      const auto weights = torch::randn_like(y);
      const auto grad = torch::autograd::grad({(y * weights).sum()}, {x})[0];
      EXPECT_NEAR((expected * weights).sum().item<double>(),
                  (x.detach() * grad).sum().item<double>(),
                  1e-9 * std::max(1.0, expected.abs().sum().item<double>()));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 5 * 2 + 3 * 4);
  diffstride::FixedSpectralPooling1d audio(
      diffstride::FixedSpectralPooling1dOptions(4.0));
  const auto signal = torch::randn({2, 3, 50}, torch::kDouble);
  EXPECT_LE(relative_error(audio(signal),
                           ref::fixed_spectral_pooling_nd(signal, {4.0})),
            1e-10);
  diffstride::FixedSpectralPooling3d volume(
      diffstride::FixedSpectralPooling3dOptions({2.0, 1.0, 3.0}));
  std::ostringstream stream;
  stream << audio << " " << volume;
  EXPECT_EQ(stream.str(),
            "diffstride::FixedSpectralPooling1d(strides=[4]) "
            "diffstride::FixedSpectralPooling3d(strides=[2, 1, 3])");
}

// float16 and bfloat16, in 1-D, 2-D and 3-D: computed in float32, output in
// the input's dtype, within 1e-2 (relative to the largest value) of the
// float64 reference on the unrounded input; gradients reach the input (in
// its dtype) and the strides, within 1e-2 of the reference's.
TEST(DiffStrideHalfPrecision, WithinOnePercentOfFloat64InEveryRank) {
  torch::manual_seed(48);
  for (const auto& shape : std::vector<std::vector<int64_t>>{
           {4, 8, 400}, {4, 8, 32, 32}, {2, 4, 12, 16, 16}}) {
    const auto x64 = torch::randn(shape, torch::kDouble);
    const std::vector<double> s0 = shape.size() == 3 ? std::vector<double>{3.1}
                                   : shape.size() == 4
                                       ? std::vector<double>{2.3, 1.7}
                                       : std::vector<double>{1.8, 2.2, 2.3};
    const auto s64 = torch::tensor(s0, torch::kDouble).requires_grad_();
    const auto expected = ref::diffstride_nd(x64, s64, 4.0, true);
    const auto weights = torch::randn_like(expected);
    (expected * weights).sum().backward();
    for (const auto type : {torch::kHalf, torch::kBFloat16}) {
      SCOPED_TRACE(::testing::Message()
                   << torch::IntArrayRef(shape) << " " << type);
      const auto x = x64.to(type).requires_grad_();
      const auto s = torch::tensor(s0, torch::kFloat).requires_grad_();
      const auto y = F::diffstride(x, s);
      EXPECT_EQ(y.scalar_type(), type);
      EXPECT_LE(relative_error(y, expected), 1e-2);
      (y.to(torch::kDouble) * weights).sum().backward();
      ASSERT_TRUE(x.grad().defined() && s.grad().defined());
      EXPECT_EQ(x.grad().scalar_type(), type);
      EXPECT_LE(relative_error(s.grad(), s64.grad()), 1e-2);
      const auto pooled = F::fixed_spectral_pooling(x.detach(), 2.0);
      EXPECT_EQ(pooled.scalar_type(), type);
      std::vector<double> twos(shape.size() - 2, 2.0);
      EXPECT_LE(
          relative_error(pooled, ref::fixed_spectral_pooling_nd(x64, twos)),
          1e-2);
    }
  }
}

TEST(DiffStrideNd, ErrorsNameTheLayerAndWhatWasExpected) {
  diffstride::DiffStride1d audio;
  expect_error_containing(
      [&] {
        audio(torch::randn({1, 2, 8, 8}));
      },
      "DiffStride1d: expected a 3-D N x C x L input, got a 4-D tensor of "
      "shape [1, 2, 8, 8]");
  diffstride::DiffStride3d volume;
  expect_error_containing(
      [&] {
        volume(torch::randn({1, 2, 8, 8}));
      },
      "DiffStride3d: expected a 5-D N x C x D x H x W input, got a 4-D tensor");
  expect_error_containing(
      [&] {
        volume(torch::randn({1, 1, 8, 4, 8}));
      },
      "DiffStride3d: every spatial size of the input must exceed the "
      "smoothness factor R = 4 (the stride floor size/(size - R) is undefined "
      "otherwise), got 8x4x8");
  expect_error_containing(
      [&] {
        audio(torch::ones({1, 1, 16}, torch::kInt));
      },
      "DiffStride1d: expected a float16, bfloat16, float32 or float64 input, "
      "got Int");
  expect_error_containing(
      [] {
        F::diffstride(torch::randn({1, 1, 8, 8, 8}), torch::ones({2}));
      },
      "DiffStride3d: expected strides of shape (3,) [depth, height, width] or "
      "(1,) [shared] for an N x C x D x H x W input, got shape [2]");
  expect_error_containing(
      [] {
        F::diffstride(torch::randn({1, 1, 16}),
                      torch::tensor({std::numeric_limits<double>::infinity()}));
      },
      "DiffStride1d: strides must be finite and >= 1, got inf");
  expect_error_containing(
      [] {
        F::diffstride(torch::randn({1, 1, 16}),
                      torch::ones({1}),
                      F::DiffStrideFuncOptions().smoothness_factor(NAN));
      },
      "DiffStride1d: smoothness_factor must be a finite number > 0, got nan");
  expect_error_containing(
      [] {
        diffstride::DiffStride3d(diffstride::DiffStride3dOptions()
                                     .strides({2.0, 2.0, 3.0})
                                     .shared_stride(true));
      },
      "DiffStride3d: shared_stride needs equal initial strides, got (2, 2, 3)");
  expect_error_containing(
      [] {
        diffstride::DiffStride1d(
            diffstride::DiffStride1dOptions().strides(0.5));
      },
      "DiffStride1d: strides init must be finite and >= 1, got 0.5");
  expect_error_containing(
      [] {
        diffstride::DiffStride3d(
            diffstride::DiffStride3dOptions().strides({2.0, 3.0}));
      },
      "Expected 3 values, but instead got 2");
  expect_error_containing(
      [] {
        diffstride::FixedSpectralPooling1d()(torch::randn({1, 2, 8, 8}));
      },
      "FixedSpectralPooling1d: expected a 3-D N x C x L input, got a 4-D "
      "tensor");
  expect_error_containing(
      [] {
        F::fixed_spectral_pooling(torch::randn({1, 2, 8}), {2.0, 2.0});
      },
      "FixedSpectralPooling1d: expected 1 stride for an N x C x L input, got "
      "2");
  expect_error_containing(
      [] {
        diffstride::FixedSpectralPooling3d(
            diffstride::FixedSpectralPooling3dOptions({2.0, NAN, 2.0}));
      },
      "FixedSpectralPooling3d: strides must be finite and >= 1, got nan");
  expect_error_containing(
      [] {
        F::fixed_spectral_pooling(torch::randn({1, 2, 8, 1, 8}), 2.0);
      },
      "FixedSpectralPooling3d: expected every spatial size to be at least 2, "
      "got 8x1x8");
}

// On a GPU: float64 values and both gradients, and float32 values, against
// the float64 reference on the CPU.
TEST(DiffStrideNdCuda, ValuesAndGradientsMatchReference) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  torch::manual_seed(49);
  for (const auto& shape :
       std::vector<std::vector<int64_t>>{{3, 4, 1001}, {2, 3, 9, 12, 11}}) {
    SCOPED_TRACE(torch::IntArrayRef(shape));
    const std::vector<double> s0 = shape.size() == 3
                                       ? std::vector<double>{3.3}
                                       : std::vector<double>{2.3, 1.7, 2.6};
    const auto x = torch::randn(shape, torch::kDouble);
    const auto x_gpu = x.to(torch::kCUDA).requires_grad_();
    const auto strides =
        torch::tensor(s0, torch::dtype(torch::kDouble).device(torch::kCUDA))
            .requires_grad_();
    const auto y = F::diffstride(x_gpu, strides);
    EXPECT_TRUE(y.is_cuda());
    const auto expected = reference(x, s0, 4.0, true);
    EXPECT_LE(relative_error(y.cpu(), expected), 1e-10);
    const auto weights = torch::randn_like(expected);
    (y * weights.to(y.device())).sum().backward();
    EXPECT_NEAR((expected * weights).sum().item<double>(),
                (x * x_gpu.grad().cpu()).sum().item<double>(),
                1e-9 * expected.abs().sum().item<double>());
    for (size_t axis = 0; axis < s0.size(); ++axis) {
      const double numeric = central_difference(
          [&](double h) {
            auto s = s0;
            s[axis] += h;
            return (reference(x, s, 4.0, true) * weights).sum().item<double>();
          },
          1e-6);
      EXPECT_NEAR(strides.grad()[axis].item<double>(),
                  numeric,
                  1e-6 * std::abs(numeric));
    }
    const auto y32 = F::diffstride(
        x.to(torch::kCUDA, torch::kFloat),
        torch::tensor(s0, torch::dtype(torch::kFloat).device(torch::kCUDA)));
    EXPECT_LE(relative_error(y32.cpu(), expected), 1e-5);
    std::vector<double> twos(shape.size() - 2, 2.0);
    EXPECT_LE(
        relative_error(F::fixed_spectral_pooling(x.to(torch::kCUDA), 2.0).cpu(),
                       ref::fixed_spectral_pooling_nd(x, twos)),
        1e-10);
  }
}
