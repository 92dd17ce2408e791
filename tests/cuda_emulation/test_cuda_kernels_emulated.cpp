// The fused CUDA kernels' device code (src/ops/cuda/spectral_crop_planes.cuh)
// run on the CPU through cuda_shim.h: one host thread per CUDA thread,
// __syncthreads() a barrier, blocks one after another. Where there is no GPU
// this checks what the kernels compute (the tiling, the shared-memory
// layout, both memory layouts, the per-block sums and their reduction)
// against plain loops in float64; the GPU tests (SpectralCropCuda.*) check
// the same kernels on the device.

#include "cuda_shim.h"

#include "ops/cuda/spectral_crop_planes.cuh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace diffstride {
namespace ops {
namespace cuda {
alignas(16) unsigned char shared_bytes[1 << 21];
}  // namespace cuda
}  // namespace ops
}  // namespace diffstride

namespace {

using diffstride::ops::cuda::CropSizes;
using diffstride::ops::cuda::PlaneLayout;
using Planes = std::vector<std::vector<double>>;  // [plane][row * cols + col]

struct Problem {
  int n, c, h, w, hp, wp;
  int planes() const {
    return n * c;
  }
};

PlaneLayout layout_of(const Problem& p,
                      int rows,
                      int cols,
                      bool channels_last) {
  const int64_t c = p.c, plane = int64_t{rows} * cols;
  if (channels_last) {
    return {c, plane * c, 1, int64_t{cols} * c, c, true};
  }
  return {c, c * plane, plane, cols, 1, false};
}

Planes random_planes(int count, int size, std::mt19937& random) {
  std::normal_distribution<double> normal;
  Planes planes(count, std::vector<double>(size));
  for (auto& plane : planes) {
    for (auto& value : plane) {
      value = normal(random);
    }
  }
  return planes;
}

template <typename T>
std::vector<T> to_memory(const Planes& planes,
                         const PlaneLayout& layout,
                         int cols) {
  std::vector<T> memory(planes.size() * planes[0].size());
  for (size_t p = 0; p < planes.size(); ++p) {
    for (size_t e = 0; e < planes[p].size(); ++e) {
      memory[layout.offset(p, e / cols, e % cols)] =
          static_cast<T>(planes[p][e]);
    }
  }
  return memory;
}

template <typename T>
Planes from_memory(const std::vector<T>& memory,
                   const PlaneLayout& layout,
                   int count,
                   int rows,
                   int cols) {
  Planes planes(count, std::vector<double>(rows * cols));
  for (int p = 0; p < count; ++p) {
    for (int e = 0; e < rows * cols; ++e) {
      planes[p][e] = memory[layout.offset(p, e / cols, e % cols)];
    }
  }
  return planes;
}

struct Results {
  Planes y, dx;
  std::vector<double> d_rows, d_columns;
};

// Every result as a sum over all index tuples of the bilinear map
// y[i][j] = sum over (part, h, w) of A_part[i][h] x[h][w] G_part[w][j], with
// rows = [A_r | A_i] (H' x 2H) and columns = [G_r | G_i] (W x 2W').
Results reference(const Problem& p,
                  const Planes& x,
                  const Planes& dy,
                  const std::vector<double>& rows,
                  const std::vector<double>& columns) {
  Results r{Planes(p.planes(), std::vector<double>(p.hp * p.wp)),
            Planes(p.planes(), std::vector<double>(p.h * p.w)),
            std::vector<double>(2 * p.hp * p.h),
            std::vector<double>(2 * p.w * p.wp)};
  for (int q = 0; q < p.planes(); ++q) {
    for (int part = 0; part < 2; ++part) {
      for (int i = 0; i < p.hp; ++i) {
        for (int j = 0; j < p.wp; ++j) {
          for (int h = 0; h < p.h; ++h) {
            for (int w = 0; w < p.w; ++w) {
              const double a = rows[i * 2 * p.h + part * p.h + h];
              const double g = columns[w * 2 * p.wp + part * p.wp + j];
              const double xv = x[q][h * p.w + w], dyv = dy[q][i * p.wp + j];
              r.y[q][i * p.wp + j] += a * xv * g;
              r.dx[q][h * p.w + w] += a * dyv * g;
              r.d_rows[i * 2 * p.h + part * p.h + h] += dyv * xv * g;
              r.d_columns[w * 2 * p.wp + part * p.wp + j] += a * xv * dyv;
            }
          }
        }
      }
    }
  }
  return r;
}

double max_relative_difference(const Planes& actual, const Planes& expected) {
  double scale = 0, difference = 0;
  for (size_t p = 0; p < expected.size(); ++p) {
    for (size_t e = 0; e < expected[p].size(); ++e) {
      scale = std::max(scale, std::abs(expected[p][e]));
      difference =
          std::max(difference, std::abs(actual[p][e] - expected[p][e]));
    }
  }
  return difference / std::max(scale, 1e-300);
}

}  // namespace

namespace {

namespace kernels = diffstride::ops::cuda;

struct Launch {
  bool channels_last;
  int tile, grid, block;
};

// The forward, then the backward and the reduction of its per-block sums, as
// spectral_crop_kernel.cu launches them: data in T, matrices and sums in Acc.
template <typename T, typename Acc = T>
Results run_kernels(const Problem& p,
                    const Planes& x,
                    const Planes& dy,
                    const std::vector<double>& rows_in,
                    const std::vector<double>& columns_in,
                    const Launch& l,
                    bool want_dx,
                    bool want_matrices) {
  const CropSizes s{p.h, p.w, p.hp, p.wp, p.planes(), l.tile};
  EXPECT_LE(kernels::backward_shared_count(s, l.tile) * sizeof(Acc),
            sizeof(kernels::shared_bytes));
  const auto x_layout = layout_of(p, p.h, p.w, l.channels_last);
  const auto y_layout = layout_of(p, p.hp, p.wp, l.channels_last);
  const std::vector<Acc> rows(rows_in.begin(), rows_in.end());
  const std::vector<Acc> columns(columns_in.begin(), columns_in.end());
  const auto x_memory = to_memory<T>(x, x_layout, p.w);
  const auto dy_memory = to_memory<T>(dy, y_layout, p.wp);
  std::vector<T> y(p.planes() * p.hp * p.wp, T(-7)), dx(x_memory.size(), T(-7));
  emulated_launch(&kernels::spectral_crop_forward_kernel<T, Acc>,
                  l.grid,
                  l.block,
                  x_memory.data(),
                  x_layout,
                  rows.data(),
                  columns.data(),
                  y.data(),
                  y_layout,
                  s);
  const int a_count = 2 * p.hp * p.h, g_count = 2 * p.w * p.wp;
  std::vector<Acc> partials(l.grid * (a_count + g_count), Acc(-7));
  emulated_launch(&kernels::spectral_crop_backward_kernel<T, Acc>,
                  l.grid,
                  l.block,
                  dy_memory.data(),
                  y_layout,
                  x_memory.data(),
                  x_layout,
                  rows.data(),
                  columns.data(),
                  want_dx ? dx.data() : nullptr,
                  x_layout,
                  want_matrices ? partials.data() : nullptr,
                  want_matrices,
                  s);
  std::vector<Acc> d_rows(a_count, Acc(-7)), d_columns(g_count, Acc(-7));
  if (want_matrices) {
    emulated_launch(&kernels::sum_partials_kernel<Acc>,
                    (a_count + g_count + l.block - 1) / l.block,
                    l.block,
                    static_cast<const Acc*>(partials.data()),
                    l.grid,
                    a_count,
                    g_count,
                    d_rows.data(),
                    d_columns.data());
  }
  return {from_memory(y, y_layout, p.planes(), p.hp, p.wp),
          from_memory(dx, x_layout, p.planes(), p.h, p.w),
          std::vector<double>(d_rows.begin(), d_rows.end()),
          std::vector<double>(d_columns.begin(), d_columns.end())};
}

std::vector<Problem> problems() {
  return {{2, 3, 7, 5, 3, 2},
          {1, 4, 8, 8, 4, 4},
          {2, 2, 6, 9, 5, 3},
          {1, 1, 3, 3, 2, 3}};
}

template <typename T, typename Acc = T>
void expect_kernels_match_reference(const Launch& launch,
                                    double tolerance,
                                    bool want_dx = true,
                                    bool want_matrices = true) {
  std::mt19937 random(31);
  for (const auto& p : problems()) {
    const auto x = random_planes(p.planes(), p.h * p.w, random);
    const auto dy = random_planes(p.planes(), p.hp * p.wp, random);
    const auto rows = random_planes(1, 2 * p.hp * p.h, random)[0];
    const auto columns = random_planes(1, 2 * p.w * p.wp, random)[0];
    const auto expected = reference(p, x, dy, rows, columns);
    const auto actual = run_kernels<T, Acc>(
        p, x, dy, rows, columns, launch, want_dx, want_matrices);
    SCOPED_TRACE(::testing::Message()
                 << p.n << "x" << p.c << "x" << p.h << "x" << p.w << " -> "
                 << p.hp << "x" << p.wp << " channels_last "
                 << launch.channels_last << " tile " << launch.tile << " grid "
                 << launch.grid << " block " << launch.block);
    EXPECT_LE(max_relative_difference(actual.y, expected.y), tolerance);
    if (want_dx) {
      EXPECT_LE(max_relative_difference(actual.dx, expected.dx), tolerance);
    }
    if (want_matrices) {
      EXPECT_LE(max_relative_difference({actual.d_rows}, {expected.d_rows}),
                tolerance);
      EXPECT_LE(
          max_relative_difference({actual.d_columns}, {expected.d_columns}),
          tolerance);
    }
  }
}

}  // namespace

TEST(CudaKernelsEmulated, Float64MatchesPlainLoopsForEveryTilingAndLayout) {
  for (const bool channels_last : {false, true}) {
    for (const int tile : {1, 2, 3, 8}) {
      for (const int grid : {1, 2, 5}) {
        expect_kernels_match_reference<double>({channels_last, tile, grid, 32},
                                               1e-13);
      }
    }
  }
}

TEST(CudaKernelsEmulated, BlockSizeAndWhichGradientsChangeNothingElse) {
  expect_kernels_match_reference<double>({false, 2, 3, 64}, 1e-13);
  expect_kernels_match_reference<double>({true, 3, 2, 7}, 1e-13);
  expect_kernels_match_reference<double>({false, 2, 3, 32}, 1e-13, true, false);
  expect_kernels_match_reference<double>({true, 2, 3, 32}, 1e-13, false, true);
}

TEST(CudaKernelsEmulated, Float32MatchesPlainLoops) {
  expect_kernels_match_reference<float>({true, 2, 2, 32}, 1e-5);
}

// Reduced-precision data with float32 sums, as the CUDA kernels take float16
// and bfloat16: here float data with double sums, which exercises the same
// two-type path.
TEST(CudaKernelsEmulated, DataAndSumsInTwoTypesMatchPlainLoops) {
  expect_kernels_match_reference<float, double>({false, 2, 2, 32}, 1e-6);
  expect_kernels_match_reference<float, double>({true, 3, 1, 32}, 1e-6);
}
