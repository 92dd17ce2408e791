// DiffStride against the plain FFT formulation of tests/support, float64
// finite differences for gradients, and the module's contract.

#include <diffstride/nn/diff_stride.h>
#include <diffstride/nn/fixed_spectral_pooling.h>

#include "ops/generic/spectral_crop_kernel.h"
#include "support/plain_fft_reference.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/library.h>
#include <torch/torch.h>

#include <memory>
#include <random>
#include <sstream>
#include <thread>

namespace F = diffstride::functional;
namespace ref = diffstride_reference;
using diffstride::DiffStride;
using diffstride::DiffStrideOptions;
using diffstride_test::central_difference;
using diffstride_test::expect_error_containing;
using diffstride_test::expect_second_derivatives_match;
using diffstride_test::relative_error;
using diffstride_test::right_difference;
using diffstride_test::run;

namespace {

// The generic kernels registered for CPU too, for as long as the returned
// library lives: the dispatcher then sends CPU tensors down the path other
// devices take. Checks through the dispatcher that the override is in place.
std::unique_ptr<torch::Library> generic_kernels_on_cpu() {
  auto library = std::make_unique<torch::Library>(torch::Library::IMPL,
                                                  "diffstride",
                                                  c10::DispatchKey::CPU,
                                                  __FILE__,
                                                  __LINE__);
  diffstride::ops::generic::register_spectral_crop_kernels(*library);
  const auto kernels = c10::Dispatcher::singleton()
                           .findSchemaOrThrow("diffstride::_spectral_crop", "")
                           .dumpState();
  EXPECT_NE(kernels.find(__FILE__), std::string::npos) << kernels;
  return library;
}

torch::Tensor random_input(std::vector<int64_t> sizes) {
  return torch::randn(sizes, torch::kDouble);
}

double stride_finite_difference(const torch::Tensor& x,
                                const torch::Tensor& weights,
                                std::array<double, 2> strides,
                                int axis,
                                double smoothness,
                                bool cropping,
                                bool from_the_right = false);

}  // namespace

TEST(DiffStrideValues, MatchPlainFftFormulationAcrossSizesStridesAndOptions) {
  const std::vector<int64_t> sizes = {
      5, 6, 7, 8, 11, 16, 17, 24, 31, 32, 33, 48, 63, 64};
  std::mt19937 rng(20261126);
  std::uniform_real_distribution<double> stride(1.0, 4.0);
  torch::manual_seed(0);
  int cases = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t height = sizes[i];
    const int64_t width = sizes[(i * 5 + 3) % sizes.size()];
    for (const double smoothness : {1.0, 2.0, 4.0}) {
      for (const bool cropping : {true, false}) {
        for (const bool shared : {false, true}) {
          const double stride_height = stride(rng);
          const double stride_width = shared ? stride_height : stride(rng);
          const auto x = random_input({2, 3, height, width});
          const auto y =
              shared
                  ? run(x, {stride_height}, smoothness, cropping)
                  : run(x, {stride_height, stride_width}, smoothness, cropping);
          // Step 1 of docs/layers.md, computed here: the floor size / (size -
          // R), the larger of the two for a shared stride.
          double floor_height = ref::stride_floor(height, smoothness);
          double floor_width = ref::stride_floor(width, smoothness);
          if (shared) {
            floor_height = floor_width = std::max(floor_height, floor_width);
          }
          const auto expected =
              ref::diffstride(x,
                              std::max(stride_height, floor_height),
                              std::max(stride_width, floor_width),
                              smoothness,
                              cropping);
          SCOPED_TRACE(::testing::Message()
                       << height << "x" << width << " s=(" << stride_height
                       << ", " << stride_width << ") R=" << smoothness
                       << " cropping=" << cropping << " shared=" << shared);
          ASSERT_EQ(y.sizes(), expected.sizes());
          EXPECT_LE(relative_error(y, expected), 1e-10);
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 14 * 3 * 2 * 2);
}

// The generic path (batched ATen matrix products, what CUDA runs) on CPU:
// values and both gradients against the reference.
TEST(DiffStrideValues, GenericDevicePathMatchesReferenceToo) {
  const auto generic = generic_kernels_on_cpu();
  torch::manual_seed(7);
  for (const auto& size :
       std::vector<std::array<int64_t, 2>>{{32, 32}, {17, 24}, {9, 7}}) {
    const auto x = random_input({2, 3, size[0], size[1]}).requires_grad_();
    const auto strides =
        torch::tensor({2.2, 1.9}, torch::kDouble).requires_grad_();
    const auto y = F::diffstride(
        x, strides, F::DiffStrideFuncOptions().smoothness_factor(2.0));
    const auto expected = ref::diffstride(x.detach(), 2.2, 1.9, 2.0, true);
    ASSERT_EQ(y.sizes(), expected.sizes());
    EXPECT_LE(relative_error(y, expected), 1e-10);
    const auto weights = torch::randn_like(y);
    (y * weights).sum().backward();
    // Linear in x: <y, w> = <x, dL/dx>.
    EXPECT_NEAR((y * weights).sum().item<double>(),
                (x.detach() * x.grad()).sum().item<double>(),
                1e-9);
    const double numeric =
        stride_finite_difference(x.detach(), weights, {2.2, 1.9}, 0, 2.0, true);
    EXPECT_NEAR(
        strides.grad()[0].item<double>(), numeric, 1e-6 * std::abs(numeric));
  }
}

TEST(DiffStrideValues, SpecShapeExamples) {
  struct Case {
    int64_t height, width;
    double stride_height, stride_width;
    int64_t out_height, out_width;
  };
  for (const auto& c : std::vector<Case>{{64, 64, 2, 4, 40, 24},
                                         {32, 32, 2, 2, 24, 24},
                                         {28, 28, 2, 2, 22, 22},
                                         {28, 28, 3, 3, 18, 18}}) {
    const auto y = run(random_input({1, 2, c.height, c.width}),
                       {c.stride_height, c.stride_width});
    EXPECT_EQ(y.sizes(), torch::IntArrayRef({1, 2, c.out_height, c.out_width}));
  }
  // Without cropping the height is kept and the width is 2 floor(W/2).
  EXPECT_EQ(run(random_input({1, 1, 33, 33}), {2, 2}, 4.0, false).sizes(),
            torch::IntArrayRef({1, 1, 33, 32}));
}

TEST(DiffStrideValues, ConstantInputScalesByInputOverOutputArea) {
  const double c = 1.75;
  const auto x = torch::full({1, 1, 32, 32}, c, torch::kDouble);
  const auto y = run(x, {2.0, 2.0});
  ASSERT_EQ(y.sizes(), torch::IntArrayRef({1, 1, 24, 24}));
  const auto expected = torch::full_like(y, c * 1024.0 / 576.0);
  EXPECT_LE(relative_error(y, expected), 1e-12);
}

TEST(DiffStrideValues, Float32AgreesWithFloat64Reference) {
  const auto x = torch::randn({4, 8, 32, 32});
  const auto y = F::diffstride(x, torch::tensor({2.3f, 1.6f}));
  EXPECT_EQ(y.scalar_type(), torch::kFloat);
  EXPECT_LE(
      relative_error(
          y, ref::diffstride(x.to(torch::kDouble), 2.3f, 1.6f, 4.0, true)),
      1e-5);
}

TEST(DiffStrideValues, ChannelsLastInputGivesSameValuesAndKeepsFormat) {
  const auto x = random_input({2, 5, 17, 20});
  const auto channels_last = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const auto y = run(channels_last, {1.7, 2.2});
  EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_LE(relative_error(y, ref::diffstride(x, 1.7, 2.2, 4.0, true)), 1e-10);
}

TEST(DiffStrideValues, EmptyBatchGivesEmptyOutputAndZeroStrideGradient) {
  const auto x = torch::zeros({0, 3, 32, 32}, torch::kDouble);
  const auto strides =
      torch::tensor({2.0, 2.0}, torch::kDouble).requires_grad_();
  const auto y = F::diffstride(x, strides);
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({0, 3, 24, 24}));
  y.sum().backward();
  ASSERT_TRUE(strides.grad().defined());
  EXPECT_EQ(strides.grad().abs().sum().item<double>(), 0.0);
}

TEST(DiffStrideGradients, InputGradientMatchesFiniteDifferences) {
  torch::manual_seed(1);
  const auto x = random_input({2, 3, 13, 10}).requires_grad_();
  const auto y = run(x, {2.3, 1.7}, 2.0);
  const auto weights = torch::randn_like(y);
  (y * weights).sum().backward();
  const auto grad = x.grad();
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> element(0, x.numel() - 1);
  for (int trial = 0; trial < 12; ++trial) {
    const int64_t index = element(rng);
    const auto loss = [&](double h) {
      auto shifted = x.detach().clone();
      shifted.view(-1)[index] += h;
      return (ref::diffstride(shifted, 2.3, 1.7, 2.0, true) * weights)
          .sum()
          .item<double>();
    };
    const double numeric = central_difference(loss, 1e-3);
    EXPECT_NEAR(grad.view(-1)[index].item<double>(),
                numeric,
                1e-8 * std::max(1.0, std::abs(numeric)));
  }
}

namespace {

// d/ds_axis sum(reference(x, s) * weights) by central differences.
double stride_finite_difference(const torch::Tensor& x,
                                const torch::Tensor& weights,
                                std::array<double, 2> strides,
                                int axis,  // 0, 1, or -1 for both (shared)
                                double smoothness,
                                bool cropping,
                                bool from_the_right) {
  const auto loss = [&](double h) {
    auto s = strides;
    if (axis != 1)
      s[0] += h;
    if (axis != 0)
      s[1] += h;
    return (ref::diffstride(x, s[0], s[1], smoothness, cropping) * weights)
        .sum()
        .item<double>();
  };
  return from_the_right ? right_difference(loss, 1e-5)
                        : central_difference(loss, 1e-6);
}

// At the floor size/(size - R) one bin of each mask sits exactly on the
// ramp's upper kink (R + a - p = R), so only the right-hand derivative is
// defined there - and it is the one that matters: the stride can only rise.
// Autograd's clamp passes the gradient at the kink, which gives exactly that
// right-hand derivative.
constexpr bool kFromTheRight = true;

}  // namespace

// Second derivatives against finite differences of first derivatives
// (test_helpers.h), on the CPU kernel and on the generic path.
TEST(DiffStrideGradients, SecondDerivativesMatchFiniteDifferencesOfGradient) {
  torch::manual_seed(11);
  const auto x0 = random_input({2, 3, 13, 10});
  for (const bool generic_path : {false, true}) {
    SCOPED_TRACE(generic_path ? "generic path" : "CPU kernel");
    const auto generic = generic_path ? generic_kernels_on_cpu() : nullptr;
    expect_second_derivatives_match(
        [](const torch::Tensor& x, const torch::Tensor& s) {
          return F::diffstride(
              x, s, F::DiffStrideFuncOptions().smoothness_factor(2.0));
        },
        x0,
        {2.3, 1.7},
        6);
  }
}

TEST(DiffStrideGradients, StrideGradientMatchesFiniteDifferences) {
  torch::manual_seed(2);
  for (const bool cropping : {true, false}) {
    for (const auto& size :
         std::vector<std::array<int64_t, 2>>{{13, 10}, {32, 32}, {21, 28}}) {
      const auto x = random_input({3, 4, size[0], size[1]});
      const auto strides =
          torch::tensor({2.3, 1.7}, torch::kDouble).requires_grad_();
      const auto y = F::diffstride(
          x,
          strides,
          F::DiffStrideFuncOptions().smoothness_factor(2.5).cropping(cropping));
      const auto weights = torch::randn_like(y);
      (y * weights).sum().backward();
      for (const int axis : {0, 1}) {
        const double numeric = stride_finite_difference(
            x, weights, {2.3, 1.7}, axis, 2.5, cropping);
        SCOPED_TRACE(::testing::Message()
                     << size[0] << "x" << size[1] << " axis " << axis
                     << " cropping " << cropping);
        EXPECT_GT(std::abs(numeric), 1e-3);
        EXPECT_NEAR(strides.grad()[axis].item<double>(),
                    numeric,
                    1e-6 * std::abs(numeric));
      }
    }
  }
}

// Issue 3's accuracy contract for the fast kernels: at the ResNet-18/CIFAR
// layer sizes (fewer channels), strides about 2 (exactly 2 puts a bin on the
// crop's edge, where the output size jumps), R = 4: float32 output,
// input gradient and stride gradient within 1e-5 of float64 references: the
// plain FFT formulation, its autograd gradient, and central differences.
void expect_float32_matches_reference(const torch::Device& device) {
  torch::manual_seed(11);
  for (const auto& shape :
       std::vector<std::array<int64_t, 2>>{{16, 32}, {32, 24}, {64, 18}}) {
    const auto x64 =
        random_input({4, shape[0], shape[1], shape[1]}).requires_grad_();
    const auto x = x64.detach().to(device, torch::kFloat).requires_grad_();
    const auto strides =
        torch::tensor({2.1f, 1.9f}, torch::TensorOptions(device))
            .requires_grad_();
    const auto y = F::diffstride(x, strides);
    const auto expected = ref::diffstride(x64, 2.1f, 1.9f, 4.0, true);
    SCOPED_TRACE(::testing::Message() << shape[0] << "x" << shape[1] << "x"
                                      << shape[1] << " on " << device);
    ASSERT_EQ(y.sizes(), expected.sizes());
    EXPECT_EQ(y.device().type(), device.type());
    EXPECT_LE(relative_error(y.cpu(), expected), 1e-5);
    const auto weights = torch::randn_like(expected);
    (y * weights.to(y)).sum().backward();
    (expected * weights).sum().backward();
    EXPECT_LE(relative_error(x.grad().cpu(), x64.grad()), 1e-5);
    for (const int axis : {0, 1}) {
      const double numeric = stride_finite_difference(
          x64.detach(), weights, {2.1f, 1.9f}, axis, 4.0, true);
      EXPECT_NEAR(strides.grad()[axis].item<double>(),
                  numeric,
                  1e-5 * std::abs(numeric));
    }
  }
}

TEST(DiffStrideGradients, Float32MatchesReferenceAtResNetLayerSizes) {
  expect_float32_matches_reference(torch::kCPU);
}

// The same on a GPU, and float64 values and gradients to 1e-10 there.
TEST(DiffStrideCuda, Float32MatchesReferenceAtResNetLayerSizes) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  expect_float32_matches_reference(torch::kCUDA);
}

TEST(DiffStrideCuda, Float64ValuesAndGradientsMatchReference) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  torch::manual_seed(12);
  for (const bool cropping : {true, false}) {
    for (const auto& size :
         std::vector<std::array<int64_t, 2>>{{13, 10}, {32, 32}, {21, 28}}) {
      const auto x = random_input({3, 4, size[0], size[1]});
      const auto x_gpu = x.to(torch::kCUDA).requires_grad_();
      const auto strides =
          torch::tensor({2.3, 1.7},
                        torch::dtype(torch::kDouble).device(torch::kCUDA))
              .requires_grad_();
      const auto options =
          F::DiffStrideFuncOptions().smoothness_factor(2.5).cropping(cropping);
      const auto y = F::diffstride(x_gpu, strides, options);
      const auto expected = ref::diffstride(x, 2.3, 1.7, 2.5, cropping);
      SCOPED_TRACE(::testing::Message()
                   << size[0] << "x" << size[1] << " cropping " << cropping);
      EXPECT_TRUE(y.is_cuda());
      EXPECT_LE(relative_error(y.cpu(), expected), 1e-10);
      const auto weights = torch::randn_like(expected);
      (y * weights.to(y.device())).sum().backward();
      // Linear in x: <y, w> = <x, dL/dx>.
      EXPECT_NEAR((expected * weights).sum().item<double>(),
                  (x * x_gpu.grad().cpu()).sum().item<double>(),
                  1e-9);
      for (const int axis : {0, 1}) {
        const double numeric = stride_finite_difference(
            x, weights, {2.3, 1.7}, axis, 2.5, cropping);
        EXPECT_NEAR(strides.grad()[axis].item<double>(),
                    numeric,
                    1e-6 * std::abs(numeric));
      }
    }
  }
}

TEST(DiffStrideCuda, ModuleMovesToGpuTrainsAndClamps) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  DiffStride pool(
      DiffStrideOptions().strides({1.0, 2.4}).upper_limit_stride(2.5));
  pool->to(torch::kCUDA);
  const auto x = torch::randn({2, 3, 32, 32}, torch::kCUDA);
  const auto y = pool(x);
  EXPECT_TRUE(y.is_cuda());
  // The height stride is floored at the forward: 32 / (32 - 4).
  EXPECT_NEAR(pool->current_strides()[0], 32.0 / 28.0, 1e-6);
  y.square().mean().backward();
  ASSERT_TRUE(pool->strides.grad().defined());
  EXPECT_TRUE(pool->strides.grad().is_cuda());
  EXPECT_GT(pool->strides.grad().abs().min().item<double>(), 0.0);
  // An optimiser step past the upper limit, then the constraint.
  {
    torch::NoGradGuard no_grad;
    pool->strides.add_(torch::tensor({0.0f, 1.0f}, torch::kCUDA));
  }
  pool->constrain_strides();
  const auto strides = pool->current_strides();
  EXPECT_NEAR(strides[0], 32.0 / 28.0, 1e-6);
  EXPECT_NEAR(strides[1], 2.5, 1e-6);
}

TEST(DiffStrideGradients, SharedStrideGradientIsTheTotalDerivative) {
  torch::manual_seed(4);
  const auto x = random_input({2, 3, 20, 15});
  const auto stride = torch::tensor({2.6}, torch::kDouble).requires_grad_();
  const auto y = F::diffstride(x, stride);
  const auto weights = torch::randn_like(y);
  (y * weights).sum().backward();
  const double numeric =
      stride_finite_difference(x, weights, {2.6, 2.6}, -1, 4.0, true);
  EXPECT_NEAR(
      stride.grad()[0].item<double>(), numeric, 1e-6 * std::abs(numeric));
}

TEST(DiffStrideGradients,
     FunctionalLeavesStridesUntouchedAndPassesGradientAtFloor) {
  const auto x = random_input({2, 2, 32, 32});
  const auto strides =
      torch::tensor({1.0, 1.0}, torch::kDouble).requires_grad_();
  const auto y = F::diffstride(x, strides);
  EXPECT_EQ(strides[0].item<double>(), 1.0);
  EXPECT_EQ(strides[1].item<double>(), 1.0);
  const auto weights = torch::randn_like(y);
  (y * weights).sum().backward();
  // The value used is the floor 32/28; the gradient is that of the floor.
  const double floor = ref::stride_floor(32, 4.0);
  const double numeric = stride_finite_difference(
      x, weights, {floor, floor}, 0, 4.0, true, kFromTheRight);
  EXPECT_GT(std::abs(numeric), 1e-3);
  EXPECT_NEAR(
      strides.grad()[0].item<double>(), numeric, 1e-6 * std::abs(numeric));
}

TEST(DiffStrideModule, ClampsParameterAtFloorAndGradientStillReachesIt) {
  torch::manual_seed(5);
  DiffStride pool(DiffStrideOptions().strides(1.0));
  pool->to(torch::kDouble);
  const auto x = random_input({2, 3, 32, 32});
  const auto y = pool(x);
  const double floor = ref::stride_floor(32, 4.0);
  EXPECT_DOUBLE_EQ(pool->strides[0].item<double>(), floor);
  EXPECT_DOUBLE_EQ(pool->strides[1].item<double>(), floor);
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 3, 32, 32}));
  const auto weights = torch::randn_like(y);
  (y * weights).sum().backward();
  ASSERT_TRUE(pool->strides.grad().defined());
  for (const int axis : {0, 1}) {
    const double numeric = stride_finite_difference(
        x, weights, {floor, floor}, axis, 4.0, true, kFromTheRight);
    EXPECT_GT(std::abs(numeric), 1e-3);
    EXPECT_NEAR(pool->strides.grad()[axis].item<double>(),
                numeric,
                1e-6 * std::abs(numeric));
  }
}

// One module at 32 x 32 (strides stay 1.5) and at 8 x 8 (R = 3: the clamp
// moves them to the floor 8 / 5 = 1.6) in one graph: backward works, and the
// strides' gradient is the sum of the two uses' gradients, each at the
// strides it saw (no mask bin sits on a kink of its ramp there).
TEST(DiffStrideModule, OneModuleAtTwoSizesInOneGraphBackpropagatesBothUses) {
  torch::manual_seed(6);
  DiffStride pool(DiffStrideOptions().strides(1.5).smoothness_factor(3.0));
  pool->to(torch::kDouble);
  const auto big = random_input({2, 3, 32, 32});
  const auto small = random_input({2, 3, 8, 8});
  const auto y_big = pool(big);
  const auto y_small = pool(small);
  EXPECT_DOUBLE_EQ(pool->strides[0].item<double>(), 8.0 / 5.0);
  const auto w_big = torch::randn_like(y_big);
  const auto w_small = torch::randn_like(y_small);
  ((y_big * w_big).sum() + (y_small * w_small).sum()).backward();
  for (const int axis : {0, 1}) {
    const double numeric =
        stride_finite_difference(big, w_big, {1.5, 1.5}, axis, 3.0, true) +
        stride_finite_difference(
            small, w_small, {8.0 / 5.0, 8.0 / 5.0}, axis, 3.0, true);
    EXPECT_NEAR(pool->strides.grad()[axis].item<double>(),
                numeric,
                1e-6 * std::abs(numeric));
  }
}

TEST(DiffStrideModule, Float32ParameterAtFloorStillGetsGradient) {
  DiffStride pool(DiffStrideOptions().strides(1.0));
  const auto y = pool(torch::randn({2, 3, 32, 32}));
  y.pow(2).sum().backward();
  EXPECT_EQ(pool->strides.scalar_type(), torch::kFloat);
  EXPECT_NEAR(pool->strides[0].item<double>(), 32.0 / 28.0, 1e-6);
  EXPECT_GT(pool->strides.grad().abs().min().item<double>(), 0.0);
}

// The module sizes its crop from the values its clamp read on the host;
// those must be the values the float32 parameter then holds (the floor
// size / (size - R) rounded to float32, either way), so that the module
// computes exactly what the functional form computes from the parameter.
// A floor rounded up is the case that tells them apart (the mask takes
// max(stride, floor), which hides a floor rounded down).
TEST(DiffStrideModule,
     ClampedFloat32StridesSizeTheCropAsTheParameterHoldsThem) {
  torch::manual_seed(8);
  int64_t rounded_up = 0;
  for (const int64_t size : {7, 9, 10, 11, 13, 17, 19, 23, 26, 29, 31, 37}) {
    for (const double r : {2.0, 3.0, 4.0}) {
      DiffStride pool(DiffStrideOptions().strides(1.0).smoothness_factor(r));
      const auto x = torch::randn({1, 2, size, size + 3});
      const auto y = pool(x);
      const auto expected = diffstride::functional::diffstride(
          x,
          pool->strides.detach(),
          diffstride::functional::DiffStrideFuncOptions().smoothness_factor(r));
      ASSERT_EQ(y.sizes(), expected.sizes()) << size << " R " << r;
      EXPECT_TRUE(torch::equal(y, expected)) << size << " R " << r;
      const double floor = static_cast<double>(size) / (size - r);
      rounded_up += pool->strides[0].item<double>() > floor;
      // At rest on the floor, a further call writes nothing.
      const auto version = pool->strides._version();
      pool(x);
      EXPECT_EQ(pool->strides._version(), version) << size << " R " << r;
    }
  }
  EXPECT_GT(rounded_up, 0);
}

TEST(DiffStrideModule, ConstraintAppliesLimitsAndLastInputFloor) {
  DiffStride pool(
      DiffStrideOptions().strides({2.0, 3.0}).upper_limit_stride(3.5));
  const auto set = [&](double a, double b) {
    torch::NoGradGuard no_grad;
    pool->strides.copy_(torch::tensor({a, b}));
  };
  set(5.0, 0.5);
  pool->constrain_strides();  // no input seen yet: [lower, upper] = [1, 3.5]
  EXPECT_EQ(pool->current_strides(), (std::array<double, 2>{3.5, 1.0}));
  pool(torch::randn({1, 1, 16, 40}));  // floors 16/12 and 40/36
  set(1.0, 1.0);
  pool->constrain_strides();
  const auto strides = pool->current_strides();
  EXPECT_NEAR(strides[0], 16.0 / 12.0, 1e-6);
  EXPECT_NEAR(strides[1], 40.0 / 36.0, 1e-6);
}

TEST(DiffStrideModule, SharedStrideHasOneParameterFlooredByLargerBound) {
  DiffStride pool(DiffStrideOptions().strides(1.0).shared_stride(true));
  EXPECT_EQ(pool->strides.sizes(), torch::IntArrayRef({1}));
  const auto x = random_input({1, 2, 16, 32});
  pool->to(torch::kDouble);
  const auto y = pool(x);
  const double floor = 16.0 / 12.0;  // larger than 32/28
  EXPECT_DOUBLE_EQ(pool->current_strides()[0], floor);
  EXPECT_DOUBLE_EQ(pool->current_strides()[1], floor);
  EXPECT_LE(relative_error(y, ref::diffstride(x, floor, floor, 4.0, true)),
            1e-10);
}

TEST(DiffStrideModule, NonTrainableStridesGetNoGradient) {
  DiffStride pool(DiffStrideOptions().trainable(false));
  EXPECT_FALSE(pool->strides.requires_grad());
  const auto x = torch::randn({1, 2, 16, 16}).requires_grad_();
  pool(x).sum().backward();
  EXPECT_FALSE(pool->strides.grad().defined());
  EXPECT_TRUE(x.grad().defined());
}

TEST(DiffStrideModule, CloneIsDeepAndKeepsStridesAndOptions) {
  DiffStride pool(
      DiffStrideOptions().strides({2.5, 3.0}).smoothness_factor(2.0));
  auto copy =
      std::dynamic_pointer_cast<diffstride::DiffStrideImpl>(pool->clone());
  ASSERT_TRUE(copy);
  EXPECT_EQ(copy->current_strides(), pool->current_strides());
  EXPECT_EQ(copy->options.smoothness_factor(), 2.0);
  {
    torch::NoGradGuard no_grad;
    copy->strides.fill_(1.5);
  }
  EXPECT_EQ(pool->current_strides(), (std::array<double, 2>{2.5, 3.0}));
  EXPECT_EQ(copy->named_parameters().size(), 1u);
}

TEST(DiffStrideModule, SaveAndLoadRoundTripsStrides) {
  DiffStride pool(DiffStrideOptions().strides({2.25, 3.5}));
  const std::string path = ::testing::TempDir() + "diffstride_module.pt";
  torch::save(pool, path);
  DiffStride loaded{DiffStrideOptions()};
  torch::load(loaded, path);
  EXPECT_EQ(loaded->current_strides(), (std::array<double, 2>{2.25, 3.5}));
  std::remove(path.c_str());
}

TEST(DiffStrideModule, PrettyPrintShowsStridesAndOptions) {
  DiffStride pool(
      DiffStrideOptions().strides({2.5, 3.0}).upper_limit_stride(4.0));
  std::ostringstream stream;
  stream << pool;
  EXPECT_EQ(stream.str(),
            "diffstride::DiffStride(strides=[2.5, 3], smoothness_factor=4, "
            "cropping=true, trainable=true, shared_stride=false, "
            "lower_limit_stride=1, upper_limit_stride=4)");
}

TEST(DiffStrideErrors, BadInputsAndOptionsGiveClearMessages) {
  const auto strides = torch::tensor({2.0, 2.0});
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({8, 8}), strides);
      },
      "DiffStride: expected a 3-D (N x C x L), 4-D (N x C x H x W) or 5-D "
      "(N x C x D x H x W) input, got a 2-D tensor");
  expect_error_containing(
      [&] {
        F::diffstride(torch::ones({1, 1, 8, 8}, torch::kLong), strides);
      },
      "expected a float16, bfloat16, float32 or float64 input, got Long");
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({1, 1, 4, 9}), strides);
      },
      "must exceed the smoothness factor R = 4");
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({1, 1, 9, 8}), torch::tensor({0.5, 2.0}));
      },
      "strides must be finite and >= 1, got 0.5");
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({1, 1, 9, 8}),
                      torch::tensor({static_cast<double>(NAN), 2.0}));
      },
      "strides must be finite and >= 1, got nan");
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({1, 1, 9, 8}),
                      torch::tensor({static_cast<double>(INFINITY), 2.0}));
      },
      "strides must be finite and >= 1, got inf");
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({1, 1, 9, 8}),
                      torch::tensor({2.0, 2.0, 2.0}));
      },
      "DiffStride: expected strides of shape (2,) [height, width] or (1,) "
      "[shared] for an N x C x H x W input, got shape [3]");
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({1, 1, 9, 8}), torch::ones({2, 1}));
      },
      "got shape [2, 1]");
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({1, 1, 9, 8}), torch::tensor({2, 2}));
      },
      "expected floating-point strides, got Long");
  expect_error_containing(
      [&] {
        F::diffstride(torch::randn({1, 1, 9, 8}),
                      strides,
                      F::DiffStrideFuncOptions().smoothness_factor(0.0));
      },
      "smoothness_factor must be a finite number > 0, got 0");
  expect_error_containing(
      [&] { DiffStride{DiffStrideOptions().smoothness_factor(-1.0)}; },
      "smoothness_factor must be a finite number > 0, got -1");
  expect_error_containing(
      [&] {
        DiffStride{DiffStrideOptions().strides({2.0, 3.0}).shared_stride(true)};
      },
      "shared_stride needs equal initial strides, got (2, 3)");
  expect_error_containing([&] { DiffStride{DiffStrideOptions().strides(0.9)}; },
                          "strides init must be finite and >= 1, got 0.9");
  expect_error_containing(
      [&] {
        DiffStride{
            DiffStrideOptions().lower_limit_stride(2.0).upper_limit_stride(
                1.5)};
      },
      "upper_limit_stride must be >= lower_limit_stride (2), got 1.5");
  expect_error_containing(
      [&] {
        DiffStride{DiffStrideOptions().strides(5.0).upper_limit_stride(4.0)};
      },
      "strides init 5 lies outside [lower_limit_stride, upper_limit_stride]");
  DiffStride pool;
  expect_error_containing(
      [&] {
        pool(torch::randn({2, 3, 3, 32}));
      },
      "got 3x32");
}

// Calls from several threads at once, on one module (whose first forward
// clamps its strides in place) and on the op through the dispatcher, give
// what the same calls give one after another.
TEST(DiffStrideConcurrency, ThreadsGiveTheResultsOfSequentialCalls) {
  constexpr int kCalls = 8;
  torch::manual_seed(21);
  std::vector<torch::Tensor> inputs, weights;
  // Starts below the floor 20/16 of the height: the first forward clamps.
  const DiffStride prototype(DiffStrideOptions().strides({1.0, 2.5}));
  const auto output_sizes =
      std::dynamic_pointer_cast<diffstride::DiffStrideImpl>(prototype->clone())
          ->forward(random_input({2, 4, 20, 18}))
          .sizes()
          .vec();
  for (int i = 0; i < kCalls; ++i) {
    inputs.push_back(random_input({2, 4, 20, 18}));
    weights.push_back(torch::randn(output_sizes, torch::kDouble));
  }
  const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("diffstride::diffstride", "")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, double, bool)>();
  struct Result {
    torch::Tensor module_output, input_grad, stride_grad, op_output, op_grad;
  };
  const auto call = [&](DiffStride& pool, int i) {
    Result r;
    const auto x = inputs[i].clone().requires_grad_();
    r.module_output = pool(x);
    const auto grads = torch::autograd::grad(
        {(r.module_output * weights[i]).sum()}, {x, pool->strides});
    r.input_grad = grads[0];
    r.stride_grad = grads[1];
    const auto strides =
        torch::tensor({1.3 + 0.1 * i, 2.0}, torch::kDouble).requires_grad_();
    r.op_output = op.call(inputs[i], strides, 3.0, true);
    r.op_grad =
        torch::autograd::grad({r.op_output.square().sum()}, {strides})[0];
    return r;
  };
  auto sequential_pool =
      std::dynamic_pointer_cast<diffstride::DiffStrideImpl>(prototype->clone());
  DiffStride sequential_module(sequential_pool);
  std::vector<Result> expected;
  for (int i = 0; i < kCalls; ++i) {
    expected.push_back(call(sequential_module, i));
  }
  DiffStride shared_module(
      std::dynamic_pointer_cast<diffstride::DiffStrideImpl>(
          prototype->clone()));
  std::vector<Result> actual(kCalls);
  std::vector<std::string> errors(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      try {
        actual[i] = call(shared_module, i);
      } catch (const std::exception& error) {
        errors[i] = error.what();
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  for (int i = 0; i < kCalls; ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(errors[i], "");
    EXPECT_LE(
        relative_error(actual[i].module_output, expected[i].module_output),
        1e-12);
    EXPECT_LE(relative_error(actual[i].input_grad, expected[i].input_grad),
              1e-12);
    EXPECT_LE(relative_error(actual[i].stride_grad, expected[i].stride_grad),
              1e-12);
    EXPECT_LE(relative_error(actual[i].op_output, expected[i].op_output),
              1e-12);
    EXPECT_LE(relative_error(actual[i].op_grad, expected[i].op_grad), 1e-12);
  }
  EXPECT_EQ(shared_module->current_strides(),
            sequential_module->current_strides());
}
