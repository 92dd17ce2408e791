// The CUDA kernels of diffstride::_spectral_crop and its backward
// (docs/layers.md, "On CUDA"). A persistent grid of blocks walks the planes a
// tile at a time, with both small matrices in shared memory: the forward
// reads each plane once and writes its output once; the backward likewise
// for the input gradient, and sums the two small-matrix gradients per block
// in a fixed order (each thread owns its entries), then over blocks in block
// order: no float atomics, so a launch shape gives one result. Planes too
// large for shared memory go to the generic kernels (cuBLAS products).

#include "ops/cuda/spectral_crop_planes.cuh"
#include "ops/generic/spectral_crop_kernel.h"
#include "ops/spectral_crop.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace diffstride {
namespace ops {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxPlanesPerTile = 8;
// Tiles up to this size leave room for several blocks per multiprocessor;
// one plane larger than this gets a block of its own, up to the device's
// limit.
constexpr int64_t kTileBytes = 48 * 1024;

/// y (count x H' x W') = [A_r | A_i] [t_r ; t_i] for t = x [G_r | G_i] in
/// shared memory, written to the output.
template <typename scalar_t, typename acc_t>
__device__ void store_output(const acc_t* a,
                             const acc_t* t,
                             int count,
                             const CropSizes& s,
                             scalar_t* __restrict__ y,
                             const PlaneLayout& layout,
                             int64_t first) {
  const int t_cols = 2 * s.out_width;
  const int t_stride = padded(s.height * t_cols);
  const int total = count * s.out_height * s.out_width;
  for (int e = threadIdx.x; e < total; e += blockDim.x) {
    const auto at =
        tile_index(e, count, s.out_height, s.out_width, layout.planes_fastest);
    const acc_t* a_row = a + at.row * 2 * s.height;
    const acc_t* t_plane = t + at.plane * t_stride + at.col;
    acc_t sum = 0;
    for (int h = 0; h < s.height; ++h) {
      sum += a_row[h] * t_plane[h * t_cols] +
             a_row[s.height + h] * t_plane[h * t_cols + s.out_width];
    }
    y[layout.offset(first + at.plane, at.row, at.col)] =
        static_cast<scalar_t>(sum);
  }
}

/// dx (count x H x W) = [v_r | v_i] [G_r | G_i]^T, written to the gradient.
template <typename scalar_t, typename acc_t>
__device__ void store_input_gradient(const acc_t* v,
                                     const acc_t* g,
                                     int count,
                                     const CropSizes& s,
                                     scalar_t* __restrict__ dx,
                                     const PlaneLayout& layout,
                                     int64_t first) {
  const int cols = 2 * s.out_width;
  const int v_stride = padded(s.height * cols);
  const int total = count * s.height * s.width;
  for (int e = threadIdx.x; e < total; e += blockDim.x) {
    const auto at =
        tile_index(e, count, s.height, s.width, layout.planes_fastest);
    const acc_t* v_row = v + at.plane * v_stride + at.row * cols;
    const acc_t* g_row = g + at.col * cols;
    acc_t sum = 0;
    for (int k = 0; k < cols; ++k) {
      sum += v_row[k] * g_row[k];
    }
    dx[layout.offset(first + at.plane, at.row, at.col)] =
        static_cast<scalar_t>(sum);
  }
}

/// da (H' x 2H) += sum over the tile's planes of dy [t_r | t_i]^T, in the
/// row matrix's layout; each thread owns the entries it writes.
template <typename acc_t>
__device__ void accumulate_rows_gradient(
    const acc_t* dy, const acc_t* t, int count, const CropSizes& s, acc_t* da) {
  const int t_cols = 2 * s.out_width;
  const int dy_stride = padded(s.out_height * s.out_width);
  const int t_stride = padded(s.height * t_cols);
  for (int e = threadIdx.x; e < s.out_height * 2 * s.height; e += blockDim.x) {
    const int i = e / (2 * s.height);
    const int part = (e % (2 * s.height)) / s.height;
    const int h = e % s.height;
    acc_t sum = 0;
    for (int q = 0; q < count; ++q) {
      const acc_t* dy_row = dy + q * dy_stride + i * s.out_width;
      const acc_t* t_row = t + q * t_stride + h * t_cols + part * s.out_width;
      for (int j = 0; j < s.out_width; ++j) {
        sum += dy_row[j] * t_row[j];
      }
    }
    da[e] += sum;
  }
}

/// dg (W x 2W') += sum over the tile's planes of x^T [v_r | v_i], in the
/// column matrix's layout; each thread owns the entries it writes.
template <typename acc_t>
__device__ void accumulate_columns_gradient(
    const acc_t* x, const acc_t* v, int count, const CropSizes& s, acc_t* dg) {
  const int cols = 2 * s.out_width;
  const int x_stride = padded(s.height * s.width);
  const int v_stride = padded(s.height * cols);
  for (int e = threadIdx.x; e < s.width * cols; e += blockDim.x) {
    const int w = e / cols;
    const int k = e % cols;
    acc_t sum = 0;
    for (int q = 0; q < count; ++q) {
      for (int h = 0; h < s.height; ++h) {
        sum +=
            x[q * x_stride + h * s.width + w] * v[q * v_stride + h * cols + k];
      }
    }
    dg[e] += sum;
  }
}

/// Shared memory of the forward: both matrices, then a tile of inputs and a
/// tile of t = x [G_r | G_i].
int64_t forward_shared_count(const CropSizes& s, int tile) {
  return int64_t{2} * s.out_height * s.height +
         int64_t{2} * s.width * s.out_width +
         tile *
             (padded(s.height * s.width) + padded(2 * s.height * s.out_width));
}

/// Shared memory of the backward: the forward's, a tile of output
/// gradients, and the two matrices' gradient sums.
int64_t backward_shared_count(const CropSizes& s, int tile) {
  return forward_shared_count(s, tile) +
         tile * padded(s.out_height * s.out_width) +
         int64_t{2} * s.out_height * s.height +
         int64_t{2} * s.width * s.out_width;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    spectral_crop_forward_kernel(const scalar_t* __restrict__ x,
                                 PlaneLayout x_layout,
                                 const acc_t* __restrict__ rows,
                                 const acc_t* __restrict__ columns,
                                 scalar_t* __restrict__ y,
                                 PlaneLayout y_layout,
                                 CropSizes s) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* a = reinterpret_cast<acc_t*>(shared_bytes);
  acc_t* g = a + 2 * s.out_height * s.height;
  acc_t* x_tile = g + 2 * s.width * s.out_width;
  acc_t* t_tile = x_tile + s.planes_per_tile * padded(s.height * s.width);
  load_matrix(rows, 2 * s.out_height * s.height, a);
  load_matrix(columns, 2 * s.width * s.out_width, g);
  const int64_t tiles = (s.planes + s.planes_per_tile - 1) / s.planes_per_tile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * s.planes_per_tile;
    const int count = static_cast<int>(s.planes - first < s.planes_per_tile
                                           ? s.planes - first
                                           : s.planes_per_tile);
    __syncthreads();  // the matrices are in; the last tile's reads are done
    load_tile(x, x_layout, first, count, s.height, s.width, x_tile);
    __syncthreads();
    times_columns(x_tile, g, count, s, t_tile);
    __syncthreads();
    store_output(a, t_tile, count, s, y, y_layout, first);
  }
}

/// The backward of one tile: the rows' gradient needs t = x G, the input's
/// and the columns' need v = A^T dy; v overwrites t.
template <typename scalar_t, typename acc_t>
__device__ void backward_tile(const acc_t* a,
                              const acc_t* g,
                              const acc_t* x_tile,
                              const acc_t* dy_tile,
                              acc_t* tv_tile,
                              acc_t* da,
                              acc_t* dg,
                              int count,
                              const CropSizes& s,
                              scalar_t* __restrict__ dx,
                              const PlaneLayout& dx_layout,
                              int64_t first) {
  if (da != nullptr) {
    times_columns(x_tile, g, count, s, tv_tile);
    __syncthreads();
    accumulate_rows_gradient(dy_tile, tv_tile, count, s, da);
    __syncthreads();
  }
  rows_transposed_times(a, dy_tile, count, s, tv_tile);
  __syncthreads();
  if (dx != nullptr) {
    store_input_gradient(tv_tile, g, count, s, dx, dx_layout, first);
  }
  if (dg != nullptr) {
    accumulate_columns_gradient(x_tile, tv_tile, count, s, dg);
  }
}

/// `partials` (gridDim.x x (2H'H + 2WW')): each block's sums of the rows'
/// and the columns' gradients, when `want_matrices`.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    spectral_crop_backward_kernel(const scalar_t* __restrict__ dy,
                                  PlaneLayout dy_layout,
                                  const scalar_t* __restrict__ x,
                                  PlaneLayout x_layout,
                                  const acc_t* __restrict__ rows,
                                  const acc_t* __restrict__ columns,
                                  scalar_t* __restrict__ dx,
                                  PlaneLayout dx_layout,
                                  acc_t* __restrict__ partials,
                                  bool want_matrices,
                                  CropSizes s) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int a_count = 2 * s.out_height * s.height;
  const int g_count = 2 * s.width * s.out_width;
  acc_t* a = reinterpret_cast<acc_t*>(shared_bytes);
  acc_t* g = a + a_count;
  acc_t* x_tile = g + g_count;
  acc_t* tv_tile = x_tile + s.planes_per_tile * padded(s.height * s.width);
  acc_t* dy_tile =
      tv_tile + s.planes_per_tile * padded(2 * s.height * s.out_width);
  acc_t* sums =
      dy_tile + s.planes_per_tile * padded(s.out_height * s.out_width);
  load_matrix(rows, a_count, a);
  load_matrix(columns, g_count, g);
  for (int e = threadIdx.x; want_matrices && e < a_count + g_count;
       e += blockDim.x) {
    sums[e] = 0;
  }
  const int64_t tiles = (s.planes + s.planes_per_tile - 1) / s.planes_per_tile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * s.planes_per_tile;
    const int count = static_cast<int>(s.planes - first < s.planes_per_tile
                                           ? s.planes - first
                                           : s.planes_per_tile);
    __syncthreads();
    load_tile(dy, dy_layout, first, count, s.out_height, s.out_width, dy_tile);
    if (want_matrices) {
      load_tile(x, x_layout, first, count, s.height, s.width, x_tile);
    }
    __syncthreads();
    backward_tile(a,
                  g,
                  x_tile,
                  dy_tile,
                  tv_tile,
                  want_matrices ? sums : nullptr,
                  want_matrices ? sums + a_count : nullptr,
                  count,
                  s,
                  dx,
                  dx_layout,
                  first);
  }
  __syncthreads();
  for (int e = threadIdx.x; want_matrices && e < a_count + g_count;
       e += blockDim.x) {
    partials[blockIdx.x * int64_t{a_count + g_count} + e] = sums[e];
  }
}

/// The blocks' partial sums, added in block order into the two gradients.
template <typename acc_t>
__global__ void sum_partials_kernel(const acc_t* __restrict__ partials,
                                    int blocks,
                                    int a_count,
                                    int g_count,
                                    acc_t* __restrict__ d_rows,
                                    acc_t* __restrict__ d_columns) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= a_count + g_count) {
    return;
  }
  acc_t sum = 0;
  for (int b = 0; b < blocks; ++b) {
    sum += partials[b * int64_t{a_count + g_count} + e];
  }
  if (e < a_count) {
    d_rows[e] = sum;
  } else {
    d_columns[e - a_count] = sum;
  }
}

PlaneLayout layout_of(const at::Tensor& t) {
  return {t.size(1),
          t.stride(0),
          t.stride(1),
          t.stride(2),
          t.stride(3),
          t.stride(1) == 1 && t.stride(3) != 1};
}

CropSizes sizes_of(const at::Tensor& input,
                   const at::Tensor& row_matrix,
                   const at::Tensor& column_matrix) {
  return {static_cast<int>(input.size(2)),
          static_cast<int>(input.size(3)),
          static_cast<int>(row_matrix.size(0)),
          static_cast<int>(column_matrix.size(1) / 2),
          input.size(0) * input.size(1),
          1};
}

struct Launch {
  int blocks = 0;
  size_t shared_bytes = 0;
};

/// Planes per tile, blocks and shared memory for `kernel`; no blocks when
/// one plane does not fit the device's shared memory (the caller then takes
/// the generic path).
template <typename Kernel, typename Count>
Launch plan_launch(Kernel kernel,
                   const Count& shared_count,
                   size_t element_bytes,
                   CropSizes& s) {
  const auto* device = at::cuda::getCurrentDeviceProperties();
  const auto bytes = [&](int tile) {
    return static_cast<size_t>(shared_count(s, tile)) * element_bytes;
  };
  if (bytes(1) > device->sharedMemPerBlockOptin) {
    return {};
  }
  int tile = 1;
  while (tile < kMaxPlanesPerTile && tile < s.planes &&
         bytes(tile + 1) <= static_cast<size_t>(kTileBytes)) {
    ++tile;
  }
  s.planes_per_tile = tile;
  Launch launch;
  launch.shared_bytes = bytes(tile);
  C10_CUDA_CHECK(
      cudaFuncSetAttribute(kernel,
                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(launch.shared_bytes)));
  int per_multiprocessor = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_multiprocessor, kernel, kThreads, launch.shared_bytes));
  const int64_t tiles = (s.planes + tile - 1) / tile;
  launch.blocks = static_cast<int>(std::min<int64_t>(
      tiles,
      int64_t{device->multiProcessorCount} * std::max(per_multiprocessor, 1)));
  return launch;
}

at::Tensor spectral_crop_cuda(const at::Tensor& input,
                              const at::Tensor& row_matrix,
                              const at::Tensor& column_matrix) {
  check_spectral_crop_arguments(
      input, row_matrix, column_matrix, "_spectral_crop");
  const c10::cuda::CUDAGuard guard(input.device());
  const auto rows = row_matrix.contiguous();
  const auto columns = column_matrix.contiguous();
  auto s = sizes_of(input, rows, columns);
  const auto format = input.suggest_memory_format();
  auto y = at::empty({input.size(0), input.size(1), s.out_height, s.out_width},
                     input.options().memory_format(format));
  if (s.planes == 0) {
    return y;
  }
  bool fused = true;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "_spectral_crop", [&] {
    const auto kernel = spectral_crop_forward_kernel<scalar_t, scalar_t>;
    const auto launch =
        plan_launch(kernel, forward_shared_count, sizeof(scalar_t), s);
    fused = launch.blocks > 0;
    if (fused) {
      kernel<<<launch.blocks,
               kThreads,
               launch.shared_bytes,
               at::cuda::getCurrentCUDAStream()>>>(input.data_ptr<scalar_t>(),
                                                   layout_of(input),
                                                   rows.data_ptr<scalar_t>(),
                                                   columns.data_ptr<scalar_t>(),
                                                   y.data_ptr<scalar_t>(),
                                                   layout_of(y),
                                                   s);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  if (!fused) {
    return generic::spectral_crop_generic(input, rows, columns)
        .contiguous(format);
  }
  return y;
}

/// The fused backward into dx (or none) and, when d_rows is defined, the
/// matrices' gradients; false when the planes are too large for it.
bool fused_backward(const at::Tensor& dy,
                    const at::Tensor& x,
                    const at::Tensor& rows,
                    const at::Tensor& columns,
                    CropSizes s,
                    at::Tensor& dx,
                    at::Tensor& d_rows,
                    at::Tensor& d_columns) {
  bool fused = true;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "_spectral_crop_backward", [&] {
    const auto kernel = spectral_crop_backward_kernel<scalar_t, scalar_t>;
    const auto launch =
        plan_launch(kernel, backward_shared_count, sizeof(scalar_t), s);
    fused = launch.blocks > 0;
    if (!fused) {
      return;
    }
    const int a_count = 2 * s.out_height * s.height;
    const int g_count = 2 * s.width * s.out_width;
    const bool matrices = d_rows.defined();
    at::Tensor partials;
    if (matrices) {
      partials = at::empty({launch.blocks, a_count + g_count}, rows.options());
    }
    const auto stream = at::cuda::getCurrentCUDAStream();
    kernel<<<launch.blocks, kThreads, launch.shared_bytes, stream>>>(
        dy.data_ptr<scalar_t>(),
        layout_of(dy),
        x.data_ptr<scalar_t>(),
        layout_of(x),
        rows.data_ptr<scalar_t>(),
        columns.data_ptr<scalar_t>(),
        dx.defined() ? dx.data_ptr<scalar_t>() : nullptr,
        dx.defined() ? layout_of(dx) : layout_of(x),
        matrices ? partials.data_ptr<scalar_t>() : nullptr,
        matrices,
        s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (matrices) {
      const int count = a_count + g_count;
      sum_partials_kernel<scalar_t>
          <<<(count + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
              partials.data_ptr<scalar_t>(),
              launch.blocks,
              a_count,
              g_count,
              d_rows.data_ptr<scalar_t>(),
              d_columns.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return fused;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward_cuda(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask) {
  check_spectral_crop_backward_arguments(
      grad_output, input, row_matrix, column_matrix);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto rows = row_matrix.contiguous();
  const auto columns = column_matrix.contiguous();
  const auto dy = grad_output.to(input.scalar_type());
  const auto s = sizes_of(input, rows, columns);
  // The fused kernel computes both matrices' gradients or neither.
  const bool matrices = output_mask[1] || output_mask[2];
  at::Tensor dx, d_rows, d_columns;
  if (!output_mask[0] && !matrices) {
    return {dx, d_rows, d_columns};
  }
  if (output_mask[0]) {
    dx = at::empty_like(input, input.suggest_memory_format());
  }
  if (matrices) {
    d_rows = at::zeros_like(rows);
    d_columns = at::zeros_like(columns);
  }
  if (s.planes > 0 &&
      !fused_backward(dy, input, rows, columns, s, dx, d_rows, d_columns)) {
    return generic::spectral_crop_backward_generic(
        grad_output, input, rows, columns, output_mask);
  }
  return {dx,
          output_mask[1] ? d_rows : at::Tensor(),
          output_mask[2] ? d_columns : at::Tensor()};
}

}  // namespace

}  // namespace cuda
}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_IMPL(diffstride, CUDA, m) {
  m.impl("_spectral_crop", TORCH_FN(diffstride::ops::cuda::spectral_crop_cuda));
  m.impl("_spectral_crop_backward",
         TORCH_FN(diffstride::ops::cuda::spectral_crop_backward_cuda));
}
