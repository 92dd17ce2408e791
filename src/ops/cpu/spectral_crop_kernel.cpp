// The CPU kernels of diffstride::_spectral_crop and its backward: the fused
// plane loops of spectral_crop_planes.h on contiguous data.

#include "ops/cpu/spectral_crop_planes.h"
#include "ops/spectral_crop.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cstdint>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace diffstride {
namespace ops {

namespace {

// The loops write their large outputs once, front to back, into freshly
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

cpu::SpectralCropShape shape_of(const at::Tensor& input,
                                const at::Tensor& row_matrix,
                                const at::Tensor& column_matrix) {
  return {input.size(0) * input.size(1),
          input.size(2),
          input.size(3),
          row_matrix.size(0),
          column_matrix.size(1) / 2};
}

template <typename T>
T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

at::Tensor spectral_crop_cpu(const at::Tensor& input,
                             const at::Tensor& row_matrix,
                             const at::Tensor& column_matrix) {
  check_spectral_crop_arguments(
      input, row_matrix, column_matrix, "_spectral_crop");
  const auto x = input.contiguous();
  const auto rows = row_matrix.contiguous();
  const auto columns = column_matrix.contiguous();
  const auto shape = shape_of(x, rows, columns);
  auto y = empty_output(
      {x.size(0), x.size(1), shape.out_height, shape.out_width}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "_spectral_crop", [&] {
    cpu::spectral_crop_forward<scalar_t>(x.data_ptr<scalar_t>(),
                                         y.data_ptr<scalar_t>(),
                                         rows.data_ptr<scalar_t>(),
                                         columns.data_ptr<scalar_t>(),
                                         shape);
  });
  return y;
}

// The loops want, besides row_matrix = [A_r | A_i] and column_matrix =
// [G_r | G_i], three rearrangements of them (tiny copies):
//   a_cat_t (H x 2H') = [A_r^T | A_i^T], a_stack (2H' x H) = [A_r ; A_i],
//   g_cat_t (W' x 2W) = [G_r^T | G_i^T];
// (reshape may return a strided view: the loops need each contiguous). They
// return the matrices' gradients stacked, [dA_r ; dA_i] and
// [dG_r ; dG_i], which go back into the arguments' layout.
std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask) {
  check_spectral_crop_backward_arguments(
      grad_output, input, row_matrix, column_matrix);
  const auto shape = shape_of(input, row_matrix, column_matrix);
  const int64_t H = shape.height, W = shape.width;
  const int64_t Hp = shape.out_height, Wp = shape.out_width;
  const auto x = input.contiguous();
  const auto dy = grad_output.contiguous().to(x.scalar_type());
  const auto a_stack = row_matrix.contiguous()
                           .view({Hp, 2, H})
                           .permute({1, 0, 2})
                           .reshape({2 * Hp, H})
                           .contiguous();
  const auto a_cat_t = a_stack.view({2, Hp, H})
                           .permute({2, 0, 1})
                           .reshape({H, 2 * Hp})
                           .contiguous();
  const auto g_cat_t = column_matrix.contiguous()
                           .view({W, 2, Wp})
                           .permute({2, 1, 0})
                           .reshape({Wp, 2 * W})
                           .contiguous();
  const bool matrices = output_mask[1] || output_mask[2];
  at::Tensor dx, da_stack, dg_stack;
  if (output_mask[0]) {
    dx = empty_output(x.sizes(), x.options());
  }
  if (matrices) {
    da_stack = at::empty({2 * Hp, H}, x.options());
    dg_stack = at::empty({2 * W, Wp}, x.options());
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "_spectral_crop_backward", [&] {
    cpu::spectral_crop_backward<scalar_t>(x.data_ptr<scalar_t>(),
                                          dy.data_ptr<scalar_t>(),
                                          a_cat_t.data_ptr<scalar_t>(),
                                          g_cat_t.data_ptr<scalar_t>(),
                                          a_stack.data_ptr<scalar_t>(),
                                          data_or_null<scalar_t>(dx),
                                          data_or_null<scalar_t>(da_stack),
                                          data_or_null<scalar_t>(dg_stack),
                                          shape);
  });
  at::Tensor d_rows, d_columns;
  if (output_mask[1]) {
    d_rows = da_stack.view({2, Hp, H}).permute({1, 0, 2}).reshape({Hp, 2 * H});
  }
  if (output_mask[2]) {
    d_columns =
        dg_stack.view({2, W, Wp}).permute({1, 0, 2}).reshape({W, 2 * Wp});
  }
  return {dx, d_rows, d_columns};
}

}  // namespace

}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_IMPL(diffstride, CPU, m) {
  m.impl("_spectral_crop", TORCH_FN(diffstride::ops::spectral_crop_cpu));
  m.impl("_spectral_crop_backward",
         TORCH_FN(diffstride::ops::spectral_crop_backward_cpu));
}
