// The operators registered in namespace `diffstride`, called through the
// dispatcher as TorchScript and Python call them.

#include "ops/generic/spectral_crop_kernel.h"
#include "ops/spectral_crop.h"
#include "support/plain_fft_reference.h"
#include "test_helpers.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace ref = diffstride_reference;
using diffstride_test::relative_error;

namespace {

c10::OperatorHandle find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

}  // namespace

TEST(Ops, SchemasAreExactlyTheDocumentedOnes) {
  const auto schema = [](const char* name) {
    std::ostringstream stream;
    stream << find_op(name).schema();
    return stream.str();
  };
  EXPECT_EQ(schema("diffstride::diffstride"),
            "diffstride::diffstride(Tensor input, Tensor strides, float "
            "smoothness_factor=4., bool cropping=True) -> Tensor");
  EXPECT_EQ(schema("diffstride::fixed_spectral_pooling"),
            "diffstride::fixed_spectral_pooling(Tensor input, float[] strides) "
            "-> Tensor");
  EXPECT_EQ(
      schema("diffstride::spatial_pooling"),
      "diffstride::spatial_pooling(Tensor input, int[] strides) -> Tensor");
}

TEST(Ops, DiffStrideOpMatchesReferenceAndDifferentiatesStrides) {
  const auto op =
      find_op("diffstride::diffstride")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, double, bool)>();
  const auto x = torch::randn({2, 3, 20, 17}, torch::kDouble);
  const auto strides =
      torch::tensor({2.5, 1.5}, torch::kDouble).requires_grad_();
  const auto y = op.call(x, strides, 2.0, true);
  EXPECT_LE(relative_error(y, ref::diffstride(x, 2.5, 1.5, 2.0, true)), 1e-10);
  y.pow(2).sum().backward();
  ASSERT_TRUE(strides.grad().defined());
  EXPECT_GT(strides.grad().abs().min().item<double>(), 0.0);
}

TEST(Ops, PoolingOpsAcceptOneOrTwoStrides) {
  const auto x = torch::randn({1, 2, 12, 12}, torch::kDouble);
  const auto spectral =
      find_op("diffstride::fixed_spectral_pooling")
          .typed<at::Tensor(const at::Tensor&, c10::ArrayRef<double>)>();
  EXPECT_LE(relative_error(spectral.call(x, {2.0}),
                           ref::fixed_spectral_pooling(x, 2.0, 2.0)),
            1e-10);
  EXPECT_EQ(spectral.call(x, {2.0, 3.0}).sizes(),
            torch::IntArrayRef({1, 2, 6, 4}));
  const auto spatial =
      find_op("diffstride::spatial_pooling")
          .typed<at::Tensor(const at::Tensor&, c10::ArrayRef<int64_t>)>();
  EXPECT_EQ(spatial.call(x, {3}).sizes(), torch::IntArrayRef({1, 2, 4, 4}));
  EXPECT_THROW(spatial.call(x, {1, 2, 3}), c10::Error);
}

// The layers on the meta device: shapes and dtypes without data, equal to
// those of the reference formulation; the internal op's Meta kernel is what
// runs there.
TEST(Ops, LayersOnMetaInputsGiveTheReferenceShapes) {
  const auto op =
      find_op("diffstride::diffstride")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, double, bool)>();
  const auto x = torch::randn({2, 3, 21, 18}, torch::kDouble);
  const auto on_meta = x.to(torch::kMeta);
  for (const auto& [s_h, s_w] : {std::pair{2.5, 1.5}, std::pair{1.0, 7.0}}) {
    const auto strides = torch::tensor({s_h, s_w}, torch::kDouble);
    const auto y = op.call(on_meta, strides, 2.0, true);
    EXPECT_TRUE(y.is_meta());
    EXPECT_EQ(y.scalar_type(), torch::kDouble);
    EXPECT_EQ(y.sizes(), ref::diffstride(x, s_h, s_w, 2.0, true).sizes());
  }
  EXPECT_THROW(
      {
        try {
          op.call(on_meta, torch::full({2}, 2.0, torch::kMeta), 2.0, true);
        } catch (const c10::Error& error) {
          EXPECT_NE(std::string(error.what())
                        .find("output size depends on the strides' values"),
                    std::string::npos);
          throw;
        }
      },
      c10::Error);
  const auto crop =
      find_op("diffstride::_spectral_crop")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  const auto meta = [](at::IntArrayRef size) {
    return torch::empty(size, torch::dtype(torch::kFloat).device(torch::kMeta));
  };
  EXPECT_EQ(
      crop.call(meta({2, 3, 21, 18}), meta({8, 42}), meta({18, 12})).sizes(),
      at::IntArrayRef({2, 3, 8, 6}));
  EXPECT_THROW(crop.call(meta({2, 3, 21, 18}), meta({8, 40}), meta({18, 12})),
               c10::Error);
}

// The output and the input's gradient come in the input's memory format
// from the CPU kernel, the generic kernel and the Meta kernel alike (what
// FakeTensor and torch.compile assume), with the values of the NCHW call.
TEST(Ops, SpectralCropKeepsTheInputsMemoryFormatOnEveryKernel) {
  const auto x = torch::randn({2, 5, 9, 7}, torch::kDouble);
  const auto rows = torch::randn({4, 18}, torch::kDouble);
  const auto columns = torch::randn({7, 6}, torch::kDouble);
  const auto grad = torch::randn({2, 5, 4, 3}, torch::kDouble);
  const auto reference = diffstride::ops::spectral_crop(x, rows, columns);
  const auto reference_dx = std::get<0>(diffstride::ops::spectral_crop_backward(
      grad, x, rows, columns, {true, false, false}));
  for (const auto format :
       {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    const auto input = x.contiguous(format);
    const auto meta = input.to(torch::kMeta);
    const auto on_meta = [](const at::Tensor& t) { return t.to(torch::kMeta); };
    const std::vector<std::pair<at::Tensor, at::Tensor>> outputs = {
        {diffstride::ops::spectral_crop(input, rows, columns),
         diffstride::ops::spectral_crop(meta, on_meta(rows), on_meta(columns))},
        {diffstride::ops::generic::spectral_crop_generic(input, rows, columns),
         reference},
        {std::get<0>(diffstride::ops::spectral_crop_backward(
             grad, input, rows, columns, {true, false, false})),
         std::get<0>(
             diffstride::ops::spectral_crop_backward(on_meta(grad),
                                                     meta,
                                                     on_meta(rows),
                                                     on_meta(columns),
                                                     {true, false, false}))},
        {std::get<0>(diffstride::ops::generic::spectral_crop_backward_generic(
             grad, input, rows, columns, {true, false, false})),
         reference_dx}};
    for (const auto& [real, other] : outputs) {
      EXPECT_TRUE(real.is_contiguous(format)) << format;
      if (other.is_meta()) {
        EXPECT_EQ(real.strides(), other.strides()) << format;
      }
    }
    EXPECT_LE(relative_error(outputs[0].first, reference), 1e-12);
    EXPECT_LE(relative_error(outputs[1].first, reference), 1e-12);
    EXPECT_LE(relative_error(outputs[2].first, reference_dx), 1e-12);
    EXPECT_LE(relative_error(outputs[3].first, reference_dx), 1e-12);
  }
}

// float16 and bfloat16 data goes into the op as it is, with float32
// matrices: the output and the input's gradient come back in the data's
// dtype, the matrices' gradients in float32, all within the data's rounding
// of the float64 map y = A_r x G_r + A_i x G_i.
TEST(Ops, SpectralCropTakesHalfPrecisionDataWithFloat32Matrices) {
  torch::manual_seed(24);
  const int64_t h = 10, w = 9, hp = 5, wp = 4;
  const auto rows = torch::randn({hp, 2 * h});
  const auto columns = torch::randn({w, 2 * wp});
  const auto a_r = rows.narrow(1, 0, h).to(torch::kDouble);
  const auto a_i = rows.narrow(1, h, h).to(torch::kDouble);
  const auto g_r = columns.narrow(1, 0, wp).to(torch::kDouble);
  const auto g_i = columns.narrow(1, wp, wp).to(torch::kDouble);
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    const auto x = torch::randn({2, 3, h, w}).to(dtype);
    const auto dy = torch::randn({2, 3, hp, wp}).to(dtype);
    const auto xd = x.to(torch::kDouble), dyd = dy.to(torch::kDouble);
    const auto y = diffstride::ops::spectral_crop(x, rows, columns);
    const auto [dx, d_rows, d_columns] =
        diffstride::ops::spectral_crop_backward(
            dy, x, rows, columns, {true, true, true});
    SCOPED_TRACE(::testing::Message() << dtype);
    EXPECT_EQ(y.scalar_type(), dtype);
    EXPECT_EQ(dx.scalar_type(), dtype);
    EXPECT_EQ(d_rows.scalar_type(), torch::kFloat);
    EXPECT_EQ(d_columns.scalar_type(), torch::kFloat);
    const double tolerance = dtype == torch::kHalf ? 2e-3 : 1e-2;
    EXPECT_LE(relative_error(
                  y, a_r.matmul(xd).matmul(g_r) + a_i.matmul(xd).matmul(g_i)),
              tolerance);
    EXPECT_LE(relative_error(dx,
                             a_r.t().matmul(dyd).matmul(g_r.t()) +
                                 a_i.t().matmul(dyd).matmul(g_i.t())),
              tolerance);
    const auto d_rows_r =
        dyd.matmul(xd.matmul(g_r).transpose(2, 3)).sum(at::IntArrayRef{0, 1});
    const auto d_rows_i =
        dyd.matmul(xd.matmul(g_i).transpose(2, 3)).sum(at::IntArrayRef{0, 1});
    EXPECT_LE(relative_error(d_rows, torch::cat({d_rows_r, d_rows_i}, 1)),
              1e-5);
    const auto d_columns_r = xd.transpose(2, 3).matmul(a_r.t()).matmul(dyd).sum(
        at::IntArrayRef{0, 1});
    const auto d_columns_i = xd.transpose(2, 3).matmul(a_i.t()).matmul(dyd).sum(
        at::IntArrayRef{0, 1});
    EXPECT_LE(
        relative_error(d_columns, torch::cat({d_columns_r, d_columns_i}, 1)),
        1e-5);
    diffstride_test::expect_error_containing(
        [&] { diffstride::ops::spectral_crop(x, rows.to(dtype), columns); },
        "_spectral_crop: expected the matrices in the input's compute dtype "
        "and "
        "device (Float, cpu)");
  }
}

// A device kernel reads grad_output's memory where it reads the input's:
// the backward's checks refuse one on another device.
TEST(Ops, SpectralCropBackwardRefusesGradOutputOnAnotherDevice) {
  const auto x = torch::randn({1, 2, 6, 5});
  const auto rows = torch::randn({3, 12});
  const auto columns = torch::randn({5, 4});
  const auto grad = torch::empty({1, 2, 3, 2}, torch::kMeta);
  diffstride_test::expect_error_containing(
      [&] {
        diffstride::ops::check_spectral_crop_backward_arguments(
            grad, x, rows, columns);
      },
      "_spectral_crop_backward: expected grad_output on the input's device "
      "(cpu), got meta");
}

// The fused CUDA kernels of the spectral crop (src/ops/cuda/) against the CPU
// kernel in float64: output and all three gradients, at the ResNet-18 layer
// sizes, odd sizes, batch 0 and 1, channels_last, planes past the fused
// kernel's shared memory (the generic path there), and second derivatives.
namespace {

struct CropCase {
  std::array<int64_t, 4> input;  // N, C, H, W
  int64_t out_height, out_width;
};

std::vector<CropCase> cuda_crop_cases() {
  return {{{2, 64, 32, 32}, 16, 16},
          {{2, 128, 32, 32}, 18, 14},
          {{2, 256, 24, 24}, 12, 13},
          {{2, 512, 18, 18}, 9, 10},
          {{3, 5, 7, 5}, 3, 2},
          {{1, 3, 3, 3}, 2, 3},
          {{0, 4, 16, 16}, 8, 8},
          {{1, 1, 13, 29}, 7, 15},
          {{2, 3, 80, 80}, 40, 40},
          {{1, 2, 224, 224}, 112, 112}};
}

// The output, the input's gradient and the two matrices' gradients for a
// random output gradient, computed on `device` in `dtype`, as float64 CPU.
std::vector<torch::Tensor> crop_and_gradients(const torch::Tensor& x,
                                              const torch::Tensor& rows,
                                              const torch::Tensor& columns,
                                              const torch::Tensor& grad,
                                              torch::Device device,
                                              torch::Dtype dtype,
                                              bool channels_last) {
  const auto on = [&](const torch::Tensor& t) { return t.to(device, dtype); };
  // float16 and bfloat16 data has float32 matrices.
  const auto compute = dtype == torch::kHalf || dtype == torch::kBFloat16
                           ? torch::kFloat
                           : dtype;
  const auto on_matrix = [&](const torch::Tensor& t) {
    return t.to(device, compute);
  };
  auto input = on(x);
  if (channels_last) {
    input = input.contiguous(at::MemoryFormat::ChannelsLast);
  }
  const auto y = diffstride::ops::spectral_crop(
      input, on_matrix(rows), on_matrix(columns));
  const auto [dx, d_rows, d_columns] = diffstride::ops::spectral_crop_backward(
      on(grad), input, on_matrix(rows), on_matrix(columns), {true, true, true});
  if (channels_last && x.size(0) > 0) {
    EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(dx.is_contiguous(at::MemoryFormat::ChannelsLast));
  }
  const auto cpu = [](const at::Tensor& t) {
    return t.to(torch::kCPU, torch::kDouble);
  };
  return {cpu(y), cpu(dx), cpu(d_rows), cpu(d_columns)};
}

void expect_cuda_crop_matches_cpu(torch::Dtype dtype, double tolerance) {
  torch::manual_seed(21);
  const auto f64 = torch::kDouble;
  for (const auto& c : cuda_crop_cases()) {
    for (const bool channels_last : {false, true}) {
      const auto x = torch::randn(c.input, f64);
      const auto rows = torch::randn({c.out_height, 2 * c.input[2]}, f64);
      const auto columns = torch::randn({c.input[3], 2 * c.out_width}, f64);
      const auto grad = torch::randn(
          {c.input[0], c.input[1], c.out_height, c.out_width}, f64);
      const auto expected =
          crop_and_gradients(x, rows, columns, grad, torch::kCPU, f64, false);
      const auto actual = crop_and_gradients(
          x, rows, columns, grad, torch::kCUDA, dtype, channels_last);
      for (size_t i = 0; i < expected.size(); ++i) {
        SCOPED_TRACE(::testing::Message()
                     << at::IntArrayRef(c.input) << " -> " << c.out_height
                     << "x" << c.out_width << " channels_last " << channels_last
                     << ", result " << i);
        ASSERT_EQ(actual[i].sizes(), expected[i].sizes());
        if (expected[i].numel() > 0 &&
            expected[i].abs().max().item<double>() > 0) {
          EXPECT_LE(relative_error(actual[i], expected[i]), tolerance);
        } else {
          EXPECT_EQ(actual[i].abs().max().item<double>(), 0.0);
        }
      }
    }
  }
}

}  // namespace

TEST(SpectralCropCuda, KernelsAreRegisteredWhereBuilt) {
  const bool registered = find_op("diffstride::_spectral_crop")
                              .hasKernelForDispatchKey(c10::DispatchKey::CUDA);
#ifdef DIFFSTRIDE_CUDA_KERNELS_BUILT
  EXPECT_TRUE(registered);
#else
  EXPECT_FALSE(registered);  // CUDA takes the generic kernels
#endif
}

TEST(SpectralCropCuda, Float64MatchesTheCpuKernel) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  expect_cuda_crop_matches_cpu(torch::kDouble, 1e-12);
}

TEST(SpectralCropCuda, Float32MatchesTheCpuKernel) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  expect_cuda_crop_matches_cpu(torch::kFloat, 1e-5);
}

// The data in half precision, accumulated in float32: within its rounding.
TEST(SpectralCropCuda, HalfPrecisionDataMatchesTheCpuKernel) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  expect_cuda_crop_matches_cpu(torch::kBFloat16, 1e-2);
  expect_cuda_crop_matches_cpu(torch::kHalf, 1e-2);
}

TEST(SpectralCropCuda, MatrixGradientsAreTheSameOnEveryRun) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  torch::manual_seed(22);
  const auto options = torch::dtype(torch::kFloat).device(torch::kCUDA);
  const auto x = torch::randn({128, 64, 32, 32}, options);
  const auto rows = torch::randn({16, 64}, options);
  const auto columns = torch::randn({32, 32}, options);
  const auto grad = torch::randn({128, 64, 16, 16}, options);
  const auto run = [&] {
    const auto results = crop_and_gradients(
        x, rows, columns, grad, torch::kCUDA, torch::kFloat, false);
    return std::make_pair(results[2], results[3]);
  };
  const auto first = run();
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto again = run();
    EXPECT_TRUE(torch::equal(first.first, again.first));
    EXPECT_TRUE(torch::equal(first.second, again.second));
  }
}

// Second derivatives go through the differentiable path (ops/autograd/): the
// gradient of <dL/dx, v> with respect to both matrices, on the GPU and on
// the CPU in float64.
TEST(SpectralCropCuda, SecondDerivativesMatchTheCpu) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  torch::manual_seed(23);
  const auto f64 = torch::kDouble;
  const auto x = torch::randn({2, 3, 11, 9}, f64);
  const auto rows = torch::randn({5, 22}, f64);
  const auto columns = torch::randn({9, 8}, f64);
  const auto w = torch::randn({2, 3, 5, 4}, f64);
  const auto v = torch::randn({2, 3, 11, 9}, f64);
  const auto second = [&](torch::Device device) {
    const auto xd = x.to(device).requires_grad_();
    const auto rd = rows.to(device).requires_grad_();
    const auto cd = columns.to(device).requires_grad_();
    const auto y = diffstride::ops::spectral_crop(xd, rd, cd);
    const auto dx = torch::autograd::grad(
        {(y * w.to(device)).sum()}, {xd}, {}, true, true)[0];
    const auto g = torch::autograd::grad({(dx * v.to(device)).sum()}, {rd, cd});
    return std::make_pair(g[0].cpu(), g[1].cpu());
  };
  const auto expected = second(torch::kCPU);
  const auto actual = second(torch::kCUDA);
  EXPECT_LE(relative_error(actual.first, expected.first), 1e-12);
  EXPECT_LE(relative_error(actual.second, expected.second), 1e-12);
}
