#pragma once

// The complexity penalty of docs/resnet.md.

#include <diffstride/nn/diff_stride.h>

#include <vector>

namespace diffstride {

/// sum over l of prod_{j <= l} 1 / (s_h^j s_w^j), over `layers` in forward
/// order: the downsampled area each layer leaves, relative to the input.
/// Differentiable in every layer's strides (a shared stride counts for both
/// axes); zero for no layers. Add lambda times it to the loss.
at::Tensor complexity_penalty(const std::vector<DiffStride>& layers);

/// The same over DiffStride1d layers: sum over l of prod_{j <= l} 1 / s^j.
at::Tensor complexity_penalty(const std::vector<DiffStride1d>& layers);

}  // namespace diffstride
