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
  if (is_reduced_precision(input.scalar_type())) {
    return spectral_crop_in_float32(
        spectral_crop_cpu, input, row_matrix, column_matrix);
  }
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
  return y.contiguous(input.suggest_memory_format());
}

// The small matrices hold a real and an imaginary half side by side:
// rows x [2][cols]. stack_halves puts the halves one under the other,
// [2][rows] x cols; interleave_halves undoes that; transpose_halves gives
// cols x [2][rows], each half transposed.
template <typename T>
void stack_halves(const T* m, int64_t rows, int64_t cols, T* out) {
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t part = 0; part < 2; ++part) {
      for (int64_t n = 0; n < cols; ++n) {
        out[(part * rows + j) * cols + n] = m[(j * 2 + part) * cols + n];
      }
    }
  }
}

template <typename T>
void interleave_halves(const T* stacked, int64_t rows, int64_t cols, T* out) {
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t part = 0; part < 2; ++part) {
      for (int64_t n = 0; n < cols; ++n) {
        out[(j * 2 + part) * cols + n] = stacked[(part * rows + j) * cols + n];
      }
    }
  }
}

template <typename T>
void transpose_halves(const T* m, int64_t rows, int64_t cols, T* out) {
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t part = 0; part < 2; ++part) {
      for (int64_t n = 0; n < cols; ++n) {
        out[(n * 2 + part) * rows + j] = m[(j * 2 + part) * cols + n];
      }
    }
  }
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
  if (is_reduced_precision(input.scalar_type())) {
    return spectral_crop_backward_in_float32(spectral_crop_backward_cpu,
                                             grad_output,
                                             input,
                                             row_matrix,
                                             column_matrix,
                                             output_mask);
  }
  const auto shape = shape_of(input, row_matrix, column_matrix);
  const int64_t H = shape.height, W = shape.width;
  const int64_t Hp = shape.out_height, Wp = shape.out_width;
  const auto x = input.contiguous();
  const auto dy = grad_output.contiguous().to(x.scalar_type());
  const auto rows = row_matrix.contiguous();
  const auto columns = column_matrix.contiguous();
  const bool matrices = output_mask[1] || output_mask[2];
  at::Tensor dx, d_rows, d_columns;
  if (output_mask[0]) {
    dx = empty_output(x.sizes(), x.options());
  }
  // The rearrangements, and the stacked gradients, in one buffer each:
  // plain loops over a few thousand numbers cost less than the tensor
  // operations that would copy them.
  const int64_t a_count = 2 * Hp * H, g_count = 2 * W * Wp;
  auto layouts = at::empty({2 * a_count + g_count}, x.options());
  at::Tensor stacked;
  if (matrices) {
    stacked = at::empty({a_count + g_count}, x.options());
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "_spectral_crop_backward", [&] {
    scalar_t* a_stack = layouts.data_ptr<scalar_t>();  // [2][Hp] x H
    scalar_t* a_cat_t = a_stack + a_count;             // H x [2][Hp]
    scalar_t* g_cat_t = a_cat_t + a_count;             // Wp x [2][W]
    stack_halves(rows.data_ptr<scalar_t>(), Hp, H, a_stack);
    transpose_halves(rows.data_ptr<scalar_t>(), Hp, H, a_cat_t);
    transpose_halves(columns.data_ptr<scalar_t>(), W, Wp, g_cat_t);
    scalar_t* da_stack = matrices ? stacked.data_ptr<scalar_t>() : nullptr;
    scalar_t* dg_stack = matrices ? da_stack + a_count : nullptr;
    cpu::spectral_crop_backward<scalar_t>(x.data_ptr<scalar_t>(),
                                          dy.data_ptr<scalar_t>(),
                                          a_cat_t,
                                          g_cat_t,
                                          a_stack,
                                          data_or_null<scalar_t>(dx),
                                          da_stack,
                                          dg_stack,
                                          shape);
    // Back into the arguments' layouts: [dA_r ; dA_i] -> Hp x [2][H], and
    // [dG_r ; dG_i] -> W x [2][Wp].
    if (output_mask[1]) {
      d_rows = at::empty({Hp, 2 * H}, x.options());
      interleave_halves(da_stack, Hp, H, d_rows.data_ptr<scalar_t>());
    }
    if (output_mask[2]) {
      d_columns = at::empty({W, 2 * Wp}, x.options());
      interleave_halves(dg_stack, W, Wp, d_columns.data_ptr<scalar_t>());
    }
  });
  if (dx.defined()) {
    dx = dx.contiguous(input.suggest_memory_format());
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
