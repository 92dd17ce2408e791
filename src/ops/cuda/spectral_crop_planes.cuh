#pragma once

// Device code of the fused CUDA spectral crop (docs/layers.md, "On CUDA"):
// the pieces each kernel of spectral_crop_kernel.cu is made of. A block
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

}  // namespace cuda
}  // namespace ops
}  // namespace diffstride
