#include "spectral_crop.h"

#include "ops/cpu/spectral_crop_kernel.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <utility>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace diffstride {
namespace detail {

namespace {

constexpr double kTwoPi = 6.28318530717958647692528676655900577;

// cos and sin of 2*pi*(a_i * b_j mod n)/n for every pair: the integer
// reduction keeps each angle exact, so large products lose no precision.
std::pair<at::Tensor, at::Tensor> unit_circle(const at::Tensor& a,
                                              const at::Tensor& b,
                                              int64_t n) {
  const auto turns = at::remainder(a.unsqueeze(1) * b.unsqueeze(0), n);
  const auto angle = turns.to(at::kDouble) * (kTwoPi / static_cast<double>(n));
  return {angle.cos(), angle.sin()};
}

// Row pipeline (complex, along H): A[j, n] = 1/H' sum_q m_q e^{2 pi i j q/H'}
// e^{-2 pi i k_q n/H}, split into real and imaginary parts.
std::pair<at::Tensor, at::Tensor> row_matrices(c10::ArrayRef<int64_t> kept_rows,
                                               const at::Tensor& mask,
                                               int64_t height,
                                               const at::TensorOptions& index) {
  const int64_t out_height = static_cast<int64_t>(kept_rows.size());
  const auto frequencies =
      at::tensor(kept_rows, at::TensorOptions().dtype(at::kLong))
          .to(index.device());
  const auto out_positions = at::arange(out_height, index);
  auto [cos_out, sin_out] =
      unit_circle(out_positions, out_positions, out_height);
  const auto [cos_in, sin_in] =
      unit_circle(frequencies, at::arange(height, index), height);
  if (mask.defined()) {
    cos_out = cos_out * mask.unsqueeze(0);
    sin_out = sin_out * mask.unsqueeze(0);
  }
  const double scale = 1.0 / static_cast<double>(out_height);
  auto real = (cos_out.mm(cos_in) + sin_out.mm(sin_in)) * scale;
  auto imag = (sin_out.mm(cos_in) - cos_out.mm(sin_in)) * scale;
  return {real, imag};
}

// Column pipeline (real to real, along W): rfft, mask, crop to the first K'
// bins, irfft to W' samples. A C2R transform counts bins 1..W'/2-1 twice
// (they stand for their conjugates too) and keeps only the real part of the
// DC and Nyquist bins, which the weights c_p below and the sine terms encode:
//   G_r[n, w] =  1/W' sum_p c_p m_p cos(2 pi p (w/W' - n/W))
//   G_i[n, w] = -1/W' sum_p c_p m_p sin(2 pi p (w/W' - n/W)).
std::pair<at::Tensor, at::Tensor> column_matrices(
    int64_t kept_columns,
    const at::Tensor& mask,
    int64_t width,
    int64_t out_width,
    const at::TensorOptions& index) {
  const auto bins = at::arange(kept_columns, index);
  const auto [cos_in, sin_in] =
      unit_circle(bins, at::arange(width, index), width);
  auto [cos_out, sin_out] =
      unit_circle(bins, at::arange(out_width, index), out_width);
  auto weights = at::full({kept_columns}, 2.0, index.dtype(at::kDouble));
  weights[0] = 1.0;
  if (out_width % 2 == 0 && out_width / 2 < kept_columns) {
    weights[out_width / 2] = 1.0;
  }
  if (mask.defined()) {
    weights = weights * mask;
  }
  cos_out = cos_out * weights.unsqueeze(1);
  sin_out = sin_out * weights.unsqueeze(1);
  const double scale = 1.0 / static_cast<double>(out_width);
  auto real = (cos_in.t().mm(cos_out) + sin_in.t().mm(sin_out)) * scale;
  auto imag = (sin_in.t().mm(cos_out) - cos_in.t().mm(sin_out)) * scale;
  return {real, imag};
}

// The kernels write their large outputs once, front to back, into freshly
// allocated memory, where every first touch of a 4 KiB page is a page fault
// (about a tenth of the op's time at ResNet-18 sizes). Where Linux offers
// transparent huge pages on request, ask for them: one fault per 2 MiB.
at::Tensor empty_output(at::IntArrayRef sizes,
                        const at::TensorOptions& options) {
  auto out = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + out.nbytes()) & ~(kHugePage - 1);
  if (last > first) {
    // Advice only: failure (THP disabled, say) changes nothing.
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

// y = A_r x G_r + A_i x G_i per plane with the CPU kernels of
// ops/cpu/spectral_crop_kernel.h, and their backward for x and for the four
// small matrices (from which autograd reaches the masks and the strides).
class FusedSpectralCrop : public torch::autograd::Function<FusedSpectralCrop> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx,
                            const at::Tensor& input,
                            const at::Tensor& a_real,
                            const at::Tensor& a_imag,
                            const at::Tensor& g_real,
                            const at::Tensor& g_imag) {
    const auto x = input.contiguous();
    const auto shape = shape_of(x, a_real, g_real);
    auto y = empty_output(
        {x.size(0), x.size(1), shape.out_height, shape.out_width}, x.options());
    const auto a_cat = at::cat({a_real, a_imag}, 1).contiguous();
    const auto g_cat = at::cat({g_real, g_imag}, 1).contiguous();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spectral_crop_forward", [&] {
      cpu::spectral_crop_forward<scalar_t>(x.data_ptr<scalar_t>(),
                                           y.data_ptr<scalar_t>(),
                                           a_cat.data_ptr<scalar_t>(),
                                           g_cat.data_ptr<scalar_t>(),
                                           shape);
    });
    ctx->save_for_backward({x, a_real, a_imag, g_real, g_imag});
    return y;
  }

  static torch::autograd::tensor_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& a_real = saved[1];
    const auto& a_imag = saved[2];
    const auto& g_real = saved[3];
    const auto& g_imag = saved[4];
    const auto dy = grad_outputs[0].contiguous();
    const auto shape = shape_of(x, a_real, g_real);
    at::Tensor dx, da_stack, dg_stack;
    if (ctx->needs_input_grad(0)) {
      dx = empty_output(x.sizes(), x.options());
    }
    bool matrices = false;
    for (int i = 1; i <= 4; ++i) {
      matrices = matrices || ctx->needs_input_grad(i);
    }
    if (matrices) {
      da_stack = at::empty({2 * shape.out_height, shape.height}, x.options());
      dg_stack = at::empty({2 * shape.width, shape.out_width}, x.options());
    }
    const auto a_cat_t = at::cat({a_real.t(), a_imag.t()}, 1).contiguous();
    const auto g_cat_t = at::cat({g_real.t(), g_imag.t()}, 1).contiguous();
    const auto a_stack = at::cat({a_real, a_imag}, 0).contiguous();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spectral_crop_backward", [&] {
      const auto ptr = [](const at::Tensor& t) {
        return t.defined() ? t.data_ptr<scalar_t>() : nullptr;
      };
      cpu::spectral_crop_backward<scalar_t>(ptr(x),
                                            ptr(dy),
                                            ptr(a_cat_t),
                                            ptr(g_cat_t),
                                            ptr(a_stack),
                                            ptr(dx),
                                            ptr(da_stack),
                                            ptr(dg_stack),
                                            shape);
    });
    if (!matrices) {
      return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    const auto da = da_stack.split(shape.out_height, 0);
    const auto dg = dg_stack.split(shape.width, 0);
    return {dx, da[0], da[1], dg[0], dg[1]};
  }

 private:
  static cpu::SpectralCropShape shape_of(const at::Tensor& x,
                                         const at::Tensor& a_real,
                                         const at::Tensor& g_real) {
    return {x.size(0) * x.size(1),
            x.size(2),
            x.size(3),
            a_real.size(0),
            g_real.size(1)};
  }
};

bool fused_cpu_kernel_enabled = true;

}  // namespace

bool use_fused_cpu_kernel(bool enabled) {
  const bool previous = fused_cpu_kernel_enabled;
  fused_cpu_kernel_enabled = enabled;
  return previous;
}

void check_pooling_input(const at::Tensor& input, const char* layer) {
  TORCH_CHECK(input.defined(), layer, ": expected an input tensor, got none");
  TORCH_CHECK(input.dim() == 4,
              layer,
              ": expected a 4-D NCHW input, got a ",
              input.dim(),
              "-D tensor of shape ",
              input.sizes());
  TORCH_CHECK(
      input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
      layer,
      ": expected a float32 or float64 input, got ",
      input.scalar_type());
}

at::Tensor separable_spectral_crop(const at::Tensor& input,
                                   c10::ArrayRef<int64_t> kept_rows,
                                   const at::Tensor& row_mask,
                                   int64_t kept_columns,
                                   const at::Tensor& column_mask,
                                   int64_t output_width) {
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  TORCH_INTERNAL_ASSERT(!kept_rows.empty() && output_width > 0);
  TORCH_INTERNAL_ASSERT(kept_columns == output_width / 2 + 1 &&
                        kept_columns <= width / 2 + 1);
  // The small matrices are built on the host in float64 (masks are host
  // tensors too, see diff_stride.cpp) and moved to the input's device once.
  const auto index = at::TensorOptions().dtype(at::kLong);
  TORCH_INTERNAL_ASSERT(!row_mask.defined() || row_mask.is_cpu());
  TORCH_INTERNAL_ASSERT(!column_mask.defined() || column_mask.is_cpu());

  const auto [a_real, a_imag] =
      row_matrices(kept_rows, row_mask, height, index);
  const auto [g_real, g_imag] =
      column_matrices(kept_columns, column_mask, width, output_width, index);

  // The data-sized products run in the input's precision.
  const auto dtype = input.scalar_type();
  at::Tensor output;
  if (input.device().is_cpu() && fused_cpu_kernel_enabled) {
    output = FusedSpectralCrop::apply(input,
                                      a_real.to(dtype),
                                      a_imag.to(dtype),
                                      g_real.to(dtype),
                                      g_imag.to(dtype));
  } else {
    // Two matrix products over all planes at once, each one plain 2-D
    // product (so is its backward, whose small-matrix gradient is then one
    // product too rather than a per-plane batch summed afterwards):
    //   t  (N, C, H, 2W')  = x [G_r | G_i]
    //   y^T (N, C, W', H') = t rearranged to (N, C, W', 2H) [A_r | A_i]^T
    const int64_t out_width = g_real.size(1);
    const auto on_device = input.options().dtype(dtype);
    const auto g_cat = at::cat({g_real, g_imag}, 1).to(on_device);
    const auto a_cat = at::cat({a_real, a_imag}, 1).to(on_device);
    const auto t = at::matmul(input.contiguous(), g_cat);
    const auto rows_last =
        t.view({input.size(0), input.size(1), height, 2, out_width})
            .permute({0, 1, 4, 3, 2})
            .reshape({input.size(0), input.size(1), out_width, 2 * height});
    output = at::matmul(rows_last, a_cat.t()).transpose(2, 3);
  }
  return output.contiguous(input.suggest_memory_format());
}

}  // namespace detail
}  // namespace diffstride
