// The Meta kernels of diffstride::_spectral_crop and its backward: the
// outputs' shapes and dtypes, no data. They read sizes as SymInts, so that
// FakeTensor tracing (torch.compile, torch.export) also works with symbolic
// sizes; with plain sizes they are the checks of ops/spectral_crop.h.

#include "ops/spectral_crop.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace diffstride {
namespace ops {

namespace {

// check_spectral_crop_arguments on SymInt sizes (its messages, without the
// sizes, which may be symbolic).
void check_meta_arguments(const at::Tensor& input,
                          const at::Tensor& row_matrix,
                          const at::Tensor& column_matrix,
                          const char* op) {
  TORCH_CHECK(
      input.dim() == 4 && row_matrix.dim() == 2 && column_matrix.dim() == 2,
      op,
      ": expected a 4-D N x C x H x W input and 2-D matrices, got ",
      input.dim(),
      "-D, ",
      row_matrix.dim(),
      "-D and ",
      column_matrix.dim(),
      "-D");
  TORCH_CHECK(row_matrix.sym_size(1) == input.sym_size(2) * 2 &&
                  row_matrix.sym_size(0) > 0 &&
                  column_matrix.sym_size(0) == input.sym_size(3) &&
                  column_matrix.sym_size(1) > 0 &&
                  column_matrix.sym_size(1) % 2 == 0,
              op,
              ": expected row_matrix of shape (H', 2H) and column_matrix of "
              "shape (W, 2W') with H', W' > 0 for an N x C x H x W input");
  check_spectral_crop_types(input, row_matrix, column_matrix, op);
}

at::Tensor spectral_crop_meta(const at::Tensor& input,
                              const at::Tensor& row_matrix,
                              const at::Tensor& column_matrix) {
  check_meta_arguments(input, row_matrix, column_matrix, "_spectral_crop");
  return at::empty_symint(
      {input.sym_size(0),
       input.sym_size(1),
       row_matrix.sym_size(0),
       column_matrix.sym_size(1) / 2},
      input.options().memory_format(input.suggest_memory_format()));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward_meta(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask) {
  check_meta_arguments(
      input, row_matrix, column_matrix, "_spectral_crop_backward");
  TORCH_CHECK(grad_output.dim() == 4 &&
                  grad_output.sym_size(0) == input.sym_size(0) &&
                  grad_output.sym_size(1) == input.sym_size(1) &&
                  grad_output.sym_size(2) == row_matrix.sym_size(0) &&
                  grad_output.sym_size(3) * 2 == column_matrix.sym_size(1),
              "_spectral_crop_backward: expected grad_output of the output's "
              "shape N x C x H' x W'");
  const auto like = [](bool wanted, const at::Tensor& tensor) {
    return wanted ? at::empty_symint(tensor.sym_sizes(),
                                     tensor.options().memory_format(
                                         tensor.suggest_memory_format()))
                  : at::Tensor();
  };
  return {like(output_mask[0], input),
          like(output_mask[1], row_matrix),
          like(output_mask[2], column_matrix)};
}

}  // namespace

}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_IMPL(diffstride, Meta, m) {
  m.impl("_spectral_crop", TORCH_FN(diffstride::ops::spectral_crop_meta));
  m.impl("_spectral_crop_backward",
         TORCH_FN(diffstride::ops::spectral_crop_backward_meta));
}
