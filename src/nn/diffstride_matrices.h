#pragma once

// DiffStride's ramp masks as functions of the strides, in closed form, and
// the 2-D layer's separable matrices built from them on the host in one pass
// (docs/layers.md, "How it is computed"). Internal to the library.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace diffstride {
namespace detail {

/// One spatial axis of DiffStride's crop (docs/layers.md, steps 1-3): the
/// kept bins and their positions on the ramp, fixed by the strides' values,
/// and what the mask weights m_q(s) = clip((R + a(s) - p_q) / R, 0, 1) with
/// a(s) = max(size / max(s, floor), 2) / 2 + offset depend on, with the
/// stride's value s read once on the host: the weights and all their
/// derivatives are evaluated there, with no further copy from the device.
struct RampAxis {
  std::vector<int64_t> bins;
  std::vector<double> positions;
  double size = 0;
  double offset = 0;         // 0 on two-sided axes, 1 on the last one
  double floor = 1;          // the stride floor size / (size - R)
  int64_t stride_index = 0;  // the element of the strides tensor
  double stride = 1;         // its value
};

/// The `order`-th derivative of the mask weights of `axis` with respect to
/// its stride, at axis.stride (order 0: the weights). The floor passes the
/// gradient straight through (d max(s, floor)/ds = 1) and the clips pass it
/// where their argument is inside, bounds included, as autograd's clamp does;
/// so for order >= 1 the weights inside the ramp have
///   d^k m/ds^k = (1/R) (size/2) (-1)^k k! / max(s, floor)^(k+1)
/// and all others 0.
std::vector<double> ramp_weights(const RampAxis& axis,
                                 double smoothness_factor,
                                 int64_t order);

/// The mask weights of `axis` (float64, on the host), differentiable in
/// `strides` to every order (the 1-D and 3-D layers, which multiply them
/// into the spectrum).
at::Tensor ramp_mask(const at::Tensor& strides,
                     const RampAxis& axis,
                     double smoothness_factor);

/// The 2-D layer's small matrices [A_r | A_i] and [G_r | G_i] for an input of
/// H x W = rows.size x columns.size and `output_width` columns, in
/// `options`' dtype on its device, differentiable in `strides` to every
/// order: each derivative is built in closed form on the host, copied in
/// one transfer, and contracted with the incoming gradient on the device.
std::tuple<at::Tensor, at::Tensor> diffstride_separable_matrices(
    const at::Tensor& strides,
    const RampAxis& rows,
    const RampAxis& columns,
    double smoothness_factor,
    int64_t output_width,
    const at::TensorOptions& options);

}  // namespace detail
}  // namespace diffstride
