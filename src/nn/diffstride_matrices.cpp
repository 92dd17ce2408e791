#include "nn/diffstride_matrices.h"

#include "nn/crop_matrices.h"
#include "nn/host_constants.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>

namespace diffstride {
namespace detail {

std::vector<double> ramp_weights(const RampAxis& axis,
                                 double smoothness_factor,
                                 int64_t order) {
  const double s = std::max(axis.stride, axis.floor);
  const double target = axis.size / s;
  const bool target_floored = target < 2.0;
  const double a = std::max(target, 2.0) / 2.0 + axis.offset;
  // (1/R) d^k a/ds^k = (1/R) (size/2) (-1)^k k! / s^(k+1), for k >= 1.
  double derivative = 0;
  if (order >= 1 && !target_floored) {
    derivative = axis.size / (2.0 * smoothness_factor) / s;
    for (int64_t k = 1; k <= order; ++k) {
      derivative *= -static_cast<double>(k) / s;
    }
  }
  std::vector<double> weights(axis.positions.size());
  for (size_t q = 0; q < weights.size(); ++q) {
    const double x =
        (smoothness_factor + a - axis.positions[q]) / smoothness_factor;
    if (order == 0) {
      weights[q] = std::min(std::max(x, 0.0), 1.0);
    } else {
      weights[q] = x >= 0.0 && x <= 1.0 ? derivative : 0.0;
    }
  }
  return weights;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Host values an autograd context keeps for backward, as one capsule (one
// IValue, no per-field copies).
template <typename Value>
struct Held : torch::CustomClassHolder {
  explicit Held(Value v) : value(std::move(v)) {}
  Value value;
};

template <typename Value>
void keep(AutogradContext* ctx, Value value) {
  ctx->saved_data["kept"] = c10::IValue::make_capsule(
      c10::make_intrusive<Held<Value>>(std::move(value)));
}

template <typename Value>
const Value& kept(AutogradContext* ctx) {
  return static_cast<const Held<Value>*>(
             ctx->saved_data["kept"].toCapsule().get())
      ->value;
}

// The `order`-th derivative of one axis' mask weights with respect to its
// stride; backward contracts the incoming gradient with the next.
struct RampMaskFunction : public torch::autograd::Function<RampMaskFunction> {
  struct Saved {
    RampAxis axis;
    double smoothness_factor;
    int64_t order;
  };

  static variable_list forward(AutogradContext* ctx,
                               const at::Tensor& strides,
                               const RampAxis& axis,
                               double smoothness_factor,
                               int64_t order) {
    ctx->save_for_backward({strides});
    keep(ctx, Saved{axis, smoothness_factor, order});
    return {host_constant([&] {
      return at::tensor(ramp_weights(axis, smoothness_factor, order),
                        at::kDouble);
    })};
  }

  static variable_list backward(AutogradContext* ctx, variable_list gradients) {
    const auto strides = ctx->get_saved_variables()[0];
    const auto& saved = kept<Saved>(ctx);
    const auto& axis = saved.axis;
    const auto next = RampMaskFunction::apply(
        strides, axis, saved.smoothness_factor, saved.order + 1)[0];
    auto gradient = at::zeros({strides.numel()}, at::kDouble);
    gradient = gradient.index_add(0,
                                  at::tensor({axis.stride_index}, at::kLong),
                                  (gradients[0] * next).sum().reshape({1}));
    return {gradient.to(strides.device(), strides.scalar_type()),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

// Weights whose nonzero values are all equal (a derivative's: see
// ramp_weights) as 0/1 indicators and that value.
double to_indicators(std::vector<double>& weights) {
  double value = 0.0;
  for (auto& w : weights) {
    if (w != 0.0) {
      value = w;
      w = 1.0;
    }
  }
  return value;
}

// Both matrices' `order`-th derivatives, in `options`' dtype on its device.
// For order >= 1 a derivative is a constant times the matrix of the ramp's
// indicator, which the host builder caches: no per-call fill.
std::tuple<at::Tensor, at::Tensor> derivative_matrices(
    const RampAxis& rows,
    const RampAxis& columns,
    double smoothness_factor,
    int64_t output_width,
    int64_t order,
    const at::TensorOptions& options) {
  auto row_weights = ramp_weights(rows, smoothness_factor, order);
  auto column_weights = ramp_weights(columns, smoothness_factor, order);
  const double row_scale = order >= 1 ? to_indicators(row_weights) : 1.0;
  const double column_scale = order >= 1 ? to_indicators(column_weights) : 1.0;
  return weighted_separable_matrices(rows.bins,
                                     row_weights.data(),
                                     static_cast<int64_t>(rows.size),
                                     static_cast<int64_t>(columns.bins.size()),
                                     column_weights.data(),
                                     static_cast<int64_t>(columns.size),
                                     output_width,
                                     options,
                                     row_scale,
                                     column_scale);
}

// The `order`-th derivatives of both matrices with respect to their axes'
// strides (each matrix depends on one stride). Backward contracts the
// incoming gradients with the next derivatives: a Function of the next
// order, so that every order of derivative is exact.
struct SeparableMatricesFunction
    : public torch::autograd::Function<SeparableMatricesFunction> {
  struct Saved {
    RampAxis rows, columns;
    double smoothness_factor;
    int64_t output_width;
    int64_t order;
    c10::ScalarType dtype;
    c10::Device device;
  };

  static variable_list forward(AutogradContext* ctx,
                               const at::Tensor& strides,
                               const RampAxis& rows,
                               const RampAxis& columns,
                               double smoothness_factor,
                               int64_t output_width,
                               int64_t order,
                               c10::ScalarType dtype,
                               c10::Device device) {
    const auto [on_row, on_column] =
        derivative_matrices(rows,
                            columns,
                            smoothness_factor,
                            output_width,
                            order,
                            at::TensorOptions().dtype(dtype).device(device));
    ctx->save_for_backward({strides});
    keep(ctx,
         Saved{rows,
               columns,
               smoothness_factor,
               output_width,
               order,
               dtype,
               device});
    return {on_row, on_column};
  }

  static variable_list backward(AutogradContext* ctx, variable_list gradients) {
    const auto strides = ctx->get_saved_variables()[0];
    const auto& saved = kept<Saved>(ctx);
    const auto& rows = saved.rows;
    const auto& columns = saved.columns;
    const auto none = at::Tensor();
    const bool on_cpu = std::all_of(
        gradients.begin(), gradients.end(), [](const at::Tensor& g) {
          return !g.defined() || g.is_cpu();
        });
    if (!at::GradMode::is_enabled() && on_cpu) {
      // No graph wanted (no second derivative) and everything on the host:
      // contract the next derivative's float64 matrices with the gradients
      // here, without building them in the data's dtype.
      return {host_stride_gradient(saved, strides, gradients),
              none,
              none,
              none,
              none,
              none,
              none,
              none};
    }
    const auto next = SeparableMatricesFunction::apply(strides,
                                                       rows,
                                                       columns,
                                                       saved.smoothness_factor,
                                                       saved.output_width,
                                                       saved.order + 1,
                                                       saved.dtype,
                                                       saved.device);
    // d L / d s_axis = <dL/dM, dM/ds_axis>, on the matrices' device; a shared
    // stride (one element) collects both.
    std::vector<at::Tensor> per_stride(static_cast<size_t>(strides.numel()));
    const auto add = [&](int64_t index,
                         const at::Tensor& gradient,
                         const at::Tensor& derivative) {
      if (!gradient.defined()) {
        return;
      }
      const auto term = (gradient * derivative).sum().to(at::kDouble);
      auto& slot = per_stride[static_cast<size_t>(index)];
      slot = slot.defined() ? slot + term : term;
    };
    add(rows.stride_index, gradients[0], next[0]);
    add(columns.stride_index, gradients[1], next[1]);
    for (auto& slot : per_stride) {
      if (!slot.defined()) {
        slot = at::zeros({}, next[0].options().dtype(at::kDouble));
      }
    }
    const auto gradient =
        at::stack(per_stride).to(strides.device(), strides.scalar_type());
    return {gradient, none, none, none, none, none, none, none};
  }

  // sum_i g_i d_i for a gradient g (float or double, any layout) and a
  // float64 derivative d of the same shape.
  static double contract(const at::Tensor& gradient,
                         const at::Tensor& derivative) {
    if (!gradient.defined()) {
      return 0.0;
    }
    const auto g = gradient.contiguous();
    const double* d = derivative.data_ptr<double>();
    // Four partial sums, so that the additions do not wait on each other.
    double partial[4] = {0, 0, 0, 0};
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "stride_gradient", [&] {
      const scalar_t* values = g.data_ptr<scalar_t>();
      const int64_t n = g.numel();
      int64_t i = 0;
      for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; ++k) {
          partial[k] += static_cast<double>(values[i + k]) * d[i + k];
        }
      }
      for (; i < n; ++i) {
        partial[0] += static_cast<double>(values[i]) * d[i];
      }
    });
    return (partial[0] + partial[1]) + (partial[2] + partial[3]);
  }

  static at::Tensor host_stride_gradient(const Saved& saved,
                                         const at::Tensor& strides,
                                         const variable_list& gradients) {
    const auto [row, column] =
        derivative_matrices(saved.rows,
                            saved.columns,
                            saved.smoothness_factor,
                            saved.output_width,
                            saved.order + 1,
                            at::TensorOptions().dtype(at::kDouble));
    std::vector<double> per_stride(static_cast<size_t>(strides.numel()), 0.0);
    per_stride[static_cast<size_t>(saved.rows.stride_index)] +=
        contract(gradients[0], row);
    per_stride[static_cast<size_t>(saved.columns.stride_index)] +=
        contract(gradients[1], column);
    return at::tensor(per_stride, at::kDouble)
        .to(strides.device(), strides.scalar_type());
  }
};

}  // namespace

at::Tensor ramp_mask(const at::Tensor& strides,
                     const RampAxis& axis,
                     double smoothness_factor) {
  return RampMaskFunction::apply(strides, axis, smoothness_factor, 0)[0];
}

std::tuple<at::Tensor, at::Tensor> diffstride_separable_matrices(
    const at::Tensor& strides,
    const RampAxis& rows,
    const RampAxis& columns,
    double smoothness_factor,
    int64_t output_width,
    const at::TensorOptions& options) {
  const auto matrices = SeparableMatricesFunction::apply(
      strides,
      rows,
      columns,
      smoothness_factor,
      output_width,
      0,
      c10::typeMetaToScalarType(options.dtype()),
      options.device());
  return {matrices[0], matrices[1]};
}

}  // namespace detail
}  // namespace diffstride
