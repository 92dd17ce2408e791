// The operators registered in namespace `diffstride`, called through the
// dispatcher as TorchScript and Python call them.

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
