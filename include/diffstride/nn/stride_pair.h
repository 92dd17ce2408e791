#pragma once

#include <torch/expanding_array.h>

#include <cstdint>

namespace diffstride {

/// Strides (height, width); a single number sets both.
using StridePair = torch::ExpandingArray<2, double>;
/// Integer strides (height, width); a single number sets both.
using IntStridePair = torch::ExpandingArray<2, int64_t>;

}  // namespace diffstride
