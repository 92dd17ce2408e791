// The schemas of the spectral crop op and its backward (ops/spectral_crop.h),
// and the C++ entry points that call them through the dispatcher.

#include "ops/spectral_crop.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace diffstride {
namespace ops {

at::Tensor spectral_crop(const at::Tensor& input,
                         const at::Tensor& row_matrix,
                         const at::Tensor& column_matrix) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("diffstride::_spectral_crop", "")
          .typed<at::Tensor(
              const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(input, row_matrix, column_matrix);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("diffstride::_spectral_crop_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&,
              const at::Tensor&,
              const at::Tensor&,
              const at::Tensor&,
              std::array<bool, 3>)>();
  return op.call(grad_output, input, row_matrix, column_matrix, output_mask);
}

void check_spectral_crop_types(const at::Tensor& input,
                               const at::Tensor& row_matrix,
                               const at::Tensor& column_matrix,
                               const char* op) {
  const auto data = input.scalar_type();
  TORCH_CHECK(
      data == at::kFloat || data == at::kDouble || is_reduced_precision(data),
      op,
      ": expected a float16, bfloat16, float32 or float64 input, got ",
      data);
  const auto compute = is_reduced_precision(data) ? at::kFloat : data;
  for (const auto* matrix : {&row_matrix, &column_matrix}) {
    TORCH_CHECK(
        matrix->scalar_type() == compute && matrix->device() == input.device(),
        op,
        ": expected the matrices in the input's compute dtype and "
        "device (",
        compute,
        ", ",
        input.device(),
        "), got ",
        matrix->scalar_type(),
        ", ",
        matrix->device());
  }
}

at::Tensor spectral_crop_in_float32(SpectralCropKernel kernel,
                                    const at::Tensor& input,
                                    const at::Tensor& row_matrix,
                                    const at::Tensor& column_matrix) {
  return kernel(input.to(at::kFloat), row_matrix, column_matrix)
      .to(input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor>
spectral_crop_backward_in_float32(SpectralCropBackwardKernel kernel,
                                  const at::Tensor& grad_output,
                                  const at::Tensor& input,
                                  const at::Tensor& row_matrix,
                                  const at::Tensor& column_matrix,
                                  std::array<bool, 3> output_mask) {
  auto [dx, d_rows, d_columns] = kernel(grad_output.to(at::kFloat),
                                        input.to(at::kFloat),
                                        row_matrix,
                                        column_matrix,
                                        output_mask);
  return {dx.defined() ? dx.to(input.scalar_type()) : dx, d_rows, d_columns};
}

void check_spectral_crop_arguments(const at::Tensor& input,
                                   const at::Tensor& row_matrix,
                                   const at::Tensor& column_matrix,
                                   const char* op) {
  TORCH_CHECK(input.dim() == 4,
              op,
              ": expected a 4-D N x C x H x W input, got shape ",
              input.sizes());
  check_spectral_crop_types(input, row_matrix, column_matrix, op);
  TORCH_CHECK(row_matrix.dim() == 2 && row_matrix.size(0) > 0 &&
                  row_matrix.size(1) == 2 * input.size(2),
              op,
              ": expected row_matrix of shape (H', 2H) = (H', ",
              2 * input.size(2),
              ") with H' > 0, got ",
              row_matrix.sizes());
  TORCH_CHECK(column_matrix.dim() == 2 &&
                  column_matrix.size(0) == input.size(3) &&
                  column_matrix.size(1) > 0 && column_matrix.size(1) % 2 == 0,
              op,
              ": expected column_matrix of shape (W, 2W') = (",
              input.size(3),
              ", 2W') with W' > 0, got ",
              column_matrix.sizes());
}

void check_spectral_crop_backward_arguments(const at::Tensor& grad_output,
                                            const at::Tensor& input,
                                            const at::Tensor& row_matrix,
                                            const at::Tensor& column_matrix) {
  const char* op = "_spectral_crop_backward";
  check_spectral_crop_arguments(input, row_matrix, column_matrix, op);
  const std::array<int64_t, 4> expected = {input.size(0),
                                           input.size(1),
                                           row_matrix.size(0),
                                           column_matrix.size(1) / 2};
  TORCH_CHECK(grad_output.device() == input.device(),
              op,
              ": expected grad_output on the input's device (",
              input.device(),
              "), got ",
              grad_output.device());
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected),
              op,
              ": expected grad_output of the output's shape ",
              at::IntArrayRef(expected),
              ", got ",
              grad_output.sizes());
}

}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_FRAGMENT(diffstride, m) {
  m.def(
      "_spectral_crop(Tensor input, Tensor row_matrix, Tensor column_matrix) "
      "-> Tensor");
  m.def(
      "_spectral_crop_backward(Tensor grad_output, Tensor input, "
      "Tensor row_matrix, Tensor column_matrix, bool[3] output_mask) "
      "-> (Tensor, Tensor, Tensor)");
}
