#pragma once

// What the plane loops (spectral_crop_planes.cpp) and the per-instruction-set
// translation units (spectral_crop_ranges_<isa>.cpp) share: the arguments of
// one worker's range of planes, the padding both sides agree on, and the
// entry points per instruction set.

#include "spectral_crop_planes.h"

#include <cstdint>

namespace diffstride {
namespace cpu {

// Elements per 64-byte vector, the unit every buffer is padded to.
template <typename T>
constexpr int64_t kLanes = 64 / sizeof(T);

// Rows that the row-blocked buffers are padded to: a multiple of every
// instruction set's register block (spectral_crop_ranges_impl.h).
constexpr int kBlockRows = 6;

// The helpers below are `static`: each translation unit keeps its own copy,
// compiled for its instruction set, instead of sharing one by name.
static inline int64_t round_up(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// Planes per chunk: about 48 KiB of float input, so that a chunk's
// intermediates stay in the L2 cache; no more than there are planes, so
// that a call on a few small planes sizes (and zeroes) a few planes'
// scratch.
static inline int64_t chunk_planes(int64_t height,
                                   int64_t width,
                                   int64_t planes) {
  const int64_t fit =
      12288 / (height * width) > 1 ? 12288 / (height * width) : 1;
  return planes >= 1 && planes < fit ? planes : fit;
}

// The sizes a pass works with.
struct PassDims {
  int64_t in_height, in_width, out_height, out_width, planes;
};

// One worker's scratch for the forward, as offsets into one allocation of
// `total` elements: t (2 in_height x ld), y_buf (out_height x ld), block
// (kBlockRows x np).
struct ForwardWorkspace {
  int64_t chunk, ld, t, y_buf, block, total;
};

static inline ForwardWorkspace forward_workspace(const PassDims& d,
                                                 int64_t np,
                                                 int64_t lanes) {
  ForwardWorkspace ws{};
  ws.chunk = chunk_planes(d.in_height, d.in_width, d.planes);
  // One extra vector: readers may run a few elements past the last plane.
  ws.ld = round_up(ws.chunk * d.out_width, lanes) + lanes;
  ws.t = 0;
  ws.y_buf = ws.t + 2 * d.in_height * ws.ld;
  ws.block = ws.y_buf + d.out_height * ws.ld;
  ws.total = ws.block + kBlockRows * np;
  return ws;
}

// One worker's scratch for the backward (see backward_range), and the padded
// sizes of its gradient accumulators: da (da_rows x da_cols vectors of
// partial sums) and dg (2 dg_rows x dg_cols): dG_c (W x W') as it is, or
// transposed (dg_transposed) when W fills whole vectors and W' does not, so
// that the accumulation runs over whole vectors.
struct BackwardWorkspace {
  int64_t chunk, ld, da_rows, da_cols, dg_rows, dg_cols, ldw;
  bool dg_transposed;
  int64_t s_buf, dx_buf, block, x_t, u, dy_pad, total;
};

static inline BackwardWorkspace backward_workspace(const SpectralCropShape& s,
                                                   int64_t np,
                                                   int64_t lanes) {
  BackwardWorkspace ws{};
  ws.chunk = chunk_planes(s.height, s.width, s.planes);
  ws.ld = round_up(ws.chunk * s.width, lanes) + lanes;
  ws.da_rows = round_up(2 * s.out_height, 4);
  ws.da_cols = round_up(s.height, 4);
  ws.ldw = round_up(s.out_width, lanes);
  ws.dg_transposed = s.width % lanes == 0 && s.out_width % lanes != 0;
  ws.dg_rows = round_up(ws.dg_transposed ? s.out_width : s.width, kBlockRows);
  ws.dg_cols = ws.dg_transposed ? s.width : ws.ldw;
  ws.s_buf = 0;
  ws.dx_buf = ws.s_buf + ws.da_rows * ws.ld;
  ws.block = ws.dx_buf + s.height * ws.ld;
  ws.x_t = ws.block + kBlockRows * np;
  ws.u = ws.x_t + ws.da_cols * ws.ld;
  ws.dy_pad = ws.u + 2 * s.out_height * ws.ld;
  ws.total = ws.dy_pad + ws.chunk * s.out_height * ws.ldw;
  return ws;
}

template <typename T>
struct ForwardArgs {
  const T* x;
  T* y;
  const T* a_cat;
  const T* g_pad;  // g_cat padded with zero columns to np
  int64_t np;
  PassDims dims;
  T* workspace;  // forward_workspace(dims, np, kLanes<T>).total elements
};

template <typename T>
struct BackwardArgs {
  const T* x;
  const T* dy;
  const T* a_cat_t;
  const T* gt_pad;  // g_cat_t padded with zero columns to np
  int64_t np;
  const T* a_stack;
  T* dx;
  // Gradients of the small matrices, this worker's share, padded (layout in
  // BackwardWorkspace): da (room for da_rows x da_cols x kLanes partial
  // sums, one vector of the instruction set's width per element while the
  // range runs; at its end, the first da_rows x da_cols elements hold the
  // sums), dg (2 dg_rows x dg_cols). Null when not wanted.
  T* da;
  T* dg;
  SpectralCropShape s;
  T* workspace;  // backward_workspace(s, np, kLanes<T>).total elements
};

// One worker's planes [begin, end), per instruction set.
#define DIFFSTRIDE_DECLARE_RANGES(isa)                         \
  template <typename T>                                        \
  void forward_range_##isa(                                    \
      const ForwardArgs<T>& args, int64_t begin, int64_t end); \
  template <typename T>                                        \
  void backward_range_##isa(                                   \
      const BackwardArgs<T>& args, int64_t begin, int64_t end);
DIFFSTRIDE_DECLARE_RANGES(baseline)
DIFFSTRIDE_DECLARE_RANGES(avx2)
DIFFSTRIDE_DECLARE_RANGES(avx512)
#undef DIFFSTRIDE_DECLARE_RANGES

}  // namespace cpu
}  // namespace diffstride
