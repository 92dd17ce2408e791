// The spectral crop as two plain matrix products over all planes at once, in
// ATen ops that every device has. Each product is one 2-D product, and so is
// each of the backward's, whose small-matrix gradients are then one product
// each rather than a per-plane batch summed afterwards:
//   t         (N, C, H, 2W')  = x [G_r | G_i]
//   rows_last (N, C, W', 2H)  = t with its (H, 2) axes moved last, as (2, H)
//   y^T       (N, C, W', H')  = rows_last [A_r | A_i]^T

#include "ops/generic/spectral_crop_kernel.h"

#include "ops/spectral_crop.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace diffstride {
namespace ops {
namespace generic {

namespace {

// (N, C, a, 2b) as (N, C, b, 2a): the (a, 2, b) axes reversed. With
// (a, b) = (H, W') it takes t = x [G_r | G_i] to rows_last; with (W', H) it
// takes a gradient of rows_last back to t's layout.
at::Tensor exchange_axes(const at::Tensor& t, int64_t a, int64_t b) {
  return t.view({t.size(0), t.size(1), a, 2, b})
      .permute({0, 1, 4, 3, 2})
      .reshape({t.size(0), t.size(1), b, 2 * a});
}

}  // namespace

at::Tensor spectral_crop_generic(const at::Tensor& input,
                                 const at::Tensor& row_matrix,
                                 const at::Tensor& column_matrix) {
  check_spectral_crop_arguments(
      input, row_matrix, column_matrix, "_spectral_crop");
  if (is_reduced_precision(input.scalar_type())) {
    return spectral_crop_in_float32(
        spectral_crop_generic, input, row_matrix, column_matrix);
  }
  const int64_t height = input.size(2);
  const int64_t out_width = column_matrix.size(1) / 2;
  const auto t = at::matmul(input.contiguous(), column_matrix);
  return at::matmul(exchange_axes(t, height, out_width), row_matrix.t())
      .transpose(2, 3)
      .contiguous(input.suggest_memory_format());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward_generic(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask) {
  check_spectral_crop_backward_arguments(
      grad_output, input, row_matrix, column_matrix);
  if (is_reduced_precision(input.scalar_type())) {
    return spectral_crop_backward_in_float32(spectral_crop_backward_generic,
                                             grad_output,
                                             input,
                                             row_matrix,
                                             column_matrix,
                                             output_mask);
  }
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  const int64_t out_height = row_matrix.size(0);
  const int64_t out_width = column_matrix.size(1) / 2;
  const auto x = input.contiguous();
  // dy^T (N, C, W', H')
  const auto dy_t = grad_output.transpose(2, 3);
  at::Tensor dx, d_rows, d_columns;
  if (output_mask[1]) {
    const auto u =
        exchange_axes(at::matmul(x, column_matrix), height, out_width);
    d_rows =
        at::mm(dy_t.reshape({-1, out_height}).t(), u.reshape({-1, 2 * height}));
  }
  if (output_mask[0] || output_mask[2]) {
    const auto dt =
        exchange_axes(at::matmul(dy_t, row_matrix), out_width, height);
    if (output_mask[0]) {
      dx = at::matmul(dt, column_matrix.t())
               .contiguous(input.suggest_memory_format());
    }
    if (output_mask[2]) {
      d_columns =
          at::mm(x.reshape({-1, width}).t(), dt.reshape({-1, 2 * out_width}));
    }
  }
  return {dx, d_rows, d_columns};
}

void register_spectral_crop_kernels(torch::Library& library) {
  library.impl("_spectral_crop", TORCH_FN(spectral_crop_generic));
  library.impl("_spectral_crop_backward",
               TORCH_FN(spectral_crop_backward_generic));
}

}  // namespace generic
}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_IMPL(diffstride, CompositeExplicitAutograd, m) {
  diffstride::ops::generic::register_spectral_crop_kernels(m);
}
