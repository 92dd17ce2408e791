#pragma once

// What every pooling layer needs of its input. Internal to the library.

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <string>

namespace diffstride {
namespace detail {

/// The layout of an input with `spatial_rank` (1, 2 or 3) spatial axes, for
/// messages.
inline const char* input_layout(int64_t spatial_rank) {
  switch (spatial_rank) {
    case 1:
      return "N x C x L";
    case 2:
      return "N x C x H x W";
    default:
      return "N x C x D x H x W";
  }
}

/// `layer` with the suffix of its spatial rank: the 2-D layers carry none
/// ("DiffStride", "DiffStride1d", "DiffStride3d").
inline std::string layer_name(const char* layer, int64_t spatial_rank) {
  return spatial_rank == 2 ? std::string(layer)
                           : layer + std::to_string(spatial_rank) + "d";
}

/// Checks that `input` is a defined tensor of float16, bfloat16, float32 or
/// float64. `layer` names the caller in the error message.
inline void check_pooling_dtype(const at::Tensor& input,
                                const std::string& layer) {
  TORCH_CHECK(input.defined(), layer, ": expected an input tensor, got none");
  const auto type = input.scalar_type();
  TORCH_CHECK(type == at::kFloat || type == at::kDouble || type == at::kHalf ||
                  type == at::kBFloat16,
              layer,
              ": expected a float16, bfloat16, float32 or float64 input, got ",
              type);
}

/// Checks `input` for a layer over `spatial_rank` spatial axes: its rank and
/// dtype.
inline void check_pooling_input(const at::Tensor& input,
                                const std::string& layer,
                                int64_t spatial_rank) {
  check_pooling_dtype(input, layer);
  TORCH_CHECK(input.dim() == spatial_rank + 2,
              layer,
              ": expected a ",
              spatial_rank + 2,
              "-D ",
              input_layout(spatial_rank),
              " input, got a ",
              input.dim(),
              "-D tensor of shape ",
              input.sizes());
}

/// The number of spatial axes (1, 2 or 3) of an input to a functional form
/// that takes every rank, after checking its dtype.
inline int64_t pooling_spatial_rank(const at::Tensor& input,
                                    const char* layer) {
  check_pooling_dtype(input, layer);
  TORCH_CHECK(input.dim() >= 3 && input.dim() <= 5,
              layer,
              ": expected a 3-D (N x C x L), 4-D (N x C x H x W) or 5-D "
              "(N x C x D x H x W) input, got a ",
              input.dim(),
              "-D tensor of shape ",
              input.sizes());
  return input.dim() - 2;
}

}  // namespace detail
}  // namespace diffstride
