#pragma once

// The generic kernels of the spectral crop op, for every device without a
// kernel of its own (CUDA among them).

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

}  // namespace generic
}  // namespace ops
}  // namespace diffstride
