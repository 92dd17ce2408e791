// The autograd kernel of diffstride::_spectral_crop: the forward goes on to
// the device's kernel through the dispatcher, the backward is the
// _spectral_crop_backward op (again the device's kernel).

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

}  // namespace

}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_IMPL(diffstride, Autograd, m) {
  m.impl("_spectral_crop", TORCH_FN(diffstride::ops::spectral_crop_autograd));
}
