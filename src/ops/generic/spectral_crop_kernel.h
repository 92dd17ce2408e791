#pragma once

// The generic kernels of the spectral crop op, for every device without a
// kernel of its own (CUDA among them). Made of differentiable ATen ops, so
// called directly with autograd on they are also the op's backward when a
// graph of the backward is wanted (second derivatives).

#include <ATen/core/Tensor.h>

#include <array>
#include <tuple>

namespace torch {
class Library;
}

namespace diffstride {
namespace ops {
namespace generic {

/// Registers the generic kernels of diffstride::_spectral_crop and its
/// backward with `library`, an IMPL library of namespace diffstride. The
/// library itself does so for CompositeExplicitAutograd; the tests also do
/// so for CPU, in a scope, to run the generic path there.
void register_spectral_crop_kernels(torch::Library& library);

/// The kernels themselves (arguments as in ops/spectral_crop.h).
at::Tensor spectral_crop_generic(const at::Tensor& input,
                                 const at::Tensor& row_matrix,
                                 const at::Tensor& column_matrix);
std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward_generic(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask);

}  // namespace generic
}  // namespace ops
}  // namespace diffstride
