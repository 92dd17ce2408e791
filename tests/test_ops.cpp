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
