#pragma once

#include <torch/expanding_array.h>

#include <cstddef>
#include <cstdint>

namespace diffstride {

/// Strides, one per spatial axis of a `D`-dimensional layer; a single number
/// sets them all.
template <size_t D>
using Strides = torch::ExpandingArray<D, double>;
/// Strides (height, width); a single number sets both.
using StridePair = Strides<2>;
/// Integer strides (height, width); a single number sets both.
using IntStridePair = torch::ExpandingArray<2, int64_t>;

}  // namespace diffstride
