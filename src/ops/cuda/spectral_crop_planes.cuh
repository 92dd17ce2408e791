#pragma once

// Device code of the fused CUDA spectral crop (docs/layers.md, "On CUDA"):
// the kernels that spectral_crop_kernel.cu launches, and their pieces. A block
// takes a few planes at a time into shared memory, with both small matrices,
// and works there: every plane is read from device memory once and every
// output written once. No LibTorch types: plain pointers and sizes.

#include <cstdint>

namespace diffstride {
namespace ops {
namespace cuda {

/// Where element (plane, h, w) of a 4-D tensor lies, for NCHW and
/// channels_last (or any other strides) alike. A plane is (n, c).
struct PlaneLayout {
  int64_t channels;
  int64_t stride_n, stride_c, stride_h, stride_w;
  // channels_last: neighbouring planes are neighbours in memory, so the
  // loops walk the plane index fastest to keep a warp's accesses together.
  bool planes_fastest;

  __device__ int64_t offset(int64_t plane, int h, int w) const {
    const int64_t n = plane / channels;
    const int64_t c = plane - n * channels;
    return n * stride_n + c * stride_c + h * stride_h + w * stride_w;
  }
};

/// The sizes of one call: H x W planes in, H' x W' out, and how many planes
/// a block holds at a time.
struct CropSizes {
  int height, width, out_height, out_width;
  int64_t planes;
  int planes_per_tile;
};

/// Element e of a tile of `count` planes of rows x cols: its plane, row and
/// column, walking planes fastest or within-plane fastest.
struct TileIndex {
  int plane, row, col;
};

__device__ inline TileIndex tile_index(
    int e, int count, int rows, int cols, bool planes_fastest) {
  const int per_plane = rows * cols;
  const int plane = planes_fastest ? e % count : e / per_plane;
  const int within = planes_fastest ? e / count : e % per_plane;
  return {plane, within / cols, within % cols};
}

/// A plane's stride in a shared-memory tile: one more than its size, so that
/// a warp walking planes fastest does not hit one bank 32 times.
__host__ __device__ inline int padded(int per_plane) {
  return per_plane + 1;
}

/// planes [first, first + count) of `src` into `dst` (count x rows x cols,
/// padded planes), converted to the accumulation type.
template <typename scalar_t, typename acc_t>
__device__ void load_tile(const scalar_t* __restrict__ src,
                          const PlaneLayout& layout,
                          int64_t first,
                          int count,
                          int rows,
                          int cols,
                          acc_t* dst) {
  const int stride = padded(rows * cols);
  for (int e = threadIdx.x; e < count * rows * cols; e += blockDim.x) {
    const auto at = tile_index(e, count, rows, cols, layout.planes_fastest);
    dst[at.plane * stride + at.row * cols + at.col] = static_cast<acc_t>(
        src[layout.offset(first + at.plane, at.row, at.col)]);
  }
}

template <typename acc_t>
__device__ void load_matrix(const acc_t* __restrict__ src,
                            int count,
                            acc_t* dst) {
  for (int e = threadIdx.x; e < count; e += blockDim.x) {
    dst[e] = src[e];
  }
}

/// t (count x H x 2W') = x (count x H x W) [G_r | G_i], g = [G_r | G_i]
/// (W x 2W') in shared memory.
template <typename acc_t>
__device__ void times_columns(
    const acc_t* x, const acc_t* g, int count, const CropSizes& s, acc_t* t) {
  const int cols = 2 * s.out_width;
  const int x_stride = padded(s.height * s.width);
  const int t_stride = padded(s.height * cols);
  for (int e = threadIdx.x; e < count * s.height * cols; e += blockDim.x) {
    const int q = e / (s.height * cols);
    const int h = (e / cols) % s.height;
    const int k = e % cols;
    const acc_t* row = x + q * x_stride + h * s.width;
    acc_t sum = 0;
    for (int w = 0; w < s.width; ++w) {
      sum += row[w] * g[w * cols + k];
    }
    t[q * t_stride + h * cols + k] = sum;
  }
}

/// v (count x H x 2W') = [A_r^T dy | A_i^T dy], a = [A_r | A_i] (H' x 2H),
/// dy (count x H' x W'), both in shared memory.
template <typename acc_t>
__device__ void rows_transposed_times(
    const acc_t* a, const acc_t* dy, int count, const CropSizes& s, acc_t* v) {
  const int cols = 2 * s.out_width;
  const int dy_stride = padded(s.out_height * s.out_width);
  const int v_stride = padded(s.height * cols);
  for (int e = threadIdx.x; e < count * s.height * cols; e += blockDim.x) {
    const int q = e / (s.height * cols);
    const int h = (e / cols) % s.height;
    const int k = e % cols;
    const int part = k / s.out_width;  // 0: A_r, 1: A_i
    const int j = k % s.out_width;
    const acc_t* column = a + part * s.height + h;
    const acc_t* dy_plane = dy + q * dy_stride + j;
    acc_t sum = 0;
    for (int i = 0; i < s.out_height; ++i) {
      sum += column[i * 2 * s.height] * dy_plane[i * s.out_width];
    }
    v[q * v_stride + h * cols + k] = sum;
  }
}

/// The kernels' block size; their loops stride by blockDim.x, so any block
/// size computes the same (the CPU emulation in tests/ uses smaller ones).
constexpr int kThreads = 256;

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
inline int64_t forward_shared_count(const CropSizes& s, int tile) {
  return int64_t{2} * s.out_height * s.height +
         int64_t{2} * s.width * s.out_width +
         tile *
             (padded(s.height * s.width) + padded(2 * s.height * s.out_width));
}

/// Shared memory of the backward: the forward's, a tile of output
/// gradients, and the two matrices' gradient sums.
inline int64_t backward_shared_count(const CropSizes& s, int tile) {
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

}  // namespace cuda
}  // namespace ops
}  // namespace diffstride
