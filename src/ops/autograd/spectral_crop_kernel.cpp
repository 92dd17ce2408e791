// The autograd kernels of diffstride::_spectral_crop and its backward. The
// forward goes on to the device's kernel through the dispatcher; its backward
// is the _spectral_crop_backward op. That op is linear in each of its
// arguments: when a graph of it is wanted (create_graph, for second
// derivatives) it runs as the generic kernel's differentiable ATen ops, which
// autograd records to any order; otherwise it goes on to the device's fast
// kernel.

#include "ops/generic/spectral_crop_kernel.h"
#include "ops/spectral_crop.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace diffstride {
namespace ops {

namespace {

class SpectralCropFunction
    : public torch::autograd::Function<SpectralCropFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx,
                            const at::Tensor& input,
                            const at::Tensor& row_matrix,
                            const at::Tensor& column_matrix) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto output = spectral_crop(input, row_matrix, column_matrix);
    ctx->save_for_backward({input, row_matrix, column_matrix});
    return output;
  }

  static torch::autograd::tensor_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    auto [grad_input, grad_rows, grad_columns] =
        spectral_crop_backward(grad_outputs[0],
                               saved[0],
                               saved[1],
                               saved[2],
                               {ctx->needs_input_grad(0),
                                ctx->needs_input_grad(1),
                                ctx->needs_input_grad(2)});
    return {grad_input, grad_rows, grad_columns};
  }
};

at::Tensor spectral_crop_autograd(const at::Tensor& input,
                                  const at::Tensor& row_matrix,
                                  const at::Tensor& column_matrix) {
  return SpectralCropFunction::apply(input, row_matrix, column_matrix);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward_autograd(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask) {
  const bool graph =
      at::GradMode::is_enabled() &&
      (grad_output.requires_grad() || input.requires_grad() ||
       row_matrix.requires_grad() || column_matrix.requires_grad());
  if (graph) {
    return generic::spectral_crop_backward_generic(
        grad_output, input, row_matrix, column_matrix, output_mask);
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return spectral_crop_backward(
      grad_output, input, row_matrix, column_matrix, output_mask);
}

}  // namespace

}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_IMPL(diffstride, Autograd, m) {
  m.impl("_spectral_crop", TORCH_FN(diffstride::ops::spectral_crop_autograd));
  m.impl("_spectral_crop_backward",
         TORCH_FN(diffstride::ops::spectral_crop_backward_autograd));
}
