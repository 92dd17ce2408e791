#pragma once

// What every pooling layer needs of its input. Internal to the library.

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace diffstride {
namespace detail {

/// Checks that `input` is a 4-D NCHW tensor of float16, bfloat16, float32 or
/// float64. `layer` names the caller in the error message.
inline void check_pooling_input(const at::Tensor& input, const char* layer) {
  TORCH_CHECK(input.defined(), layer, ": expected an input tensor, got none");
  TORCH_CHECK(input.dim() == 4,
              layer,
              ": expected a 4-D NCHW input, got a ",
              input.dim(),
              "-D tensor of shape ",
              input.sizes());
  const auto type = input.scalar_type();
  TORCH_CHECK(type == at::kFloat || type == at::kDouble || type == at::kHalf ||
                  type == at::kBFloat16,
              layer,
              ": expected a float16, bfloat16, float32 or float64 input, got ",
              type);
}

}  // namespace detail
}  // namespace diffstride
