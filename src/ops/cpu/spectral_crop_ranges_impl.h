#pragma once

// The passes of the CPU spectral crop as templates (see
// spectral_crop_planes.cpp for the layout). Included once per instruction
// set by spectral_crop_ranges_<isa>.cpp, each compiled with that set's flags;
// everything here has internal linkage, so the copies never mix.

#include "spectral_crop_ranges.h"

#include <type_traits>

namespace diffstride {
namespace cpu {
namespace {

// The vectors and register blocks of this instruction set, the size of its
// registers: GCC lowers a vector wider than the target's registers through
// the stack, so a 64-byte vector under AVX2 costs loads and stores on every
// operation. The accumulators (MR x NV vectors) and the vectors of B loaded
// per update (NV) must fit in the register file, or the compiler spills
// them: AVX-512 has 32 registers, 6 x 4 + 4 = 28; AVX2 and SSE have 16,
// 6 x 2 + 2 = 14. The transposed product (gemm_nt) keeps a square block of
// NB x NB accumulators and loads 2 NB vectors per step.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kRegisterRows = 6;
constexpr int kRegisterVectors = 4;
constexpr int kTransposedBlock = 4;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr int kRegisterRows = 6;
constexpr int kRegisterVectors = 2;
constexpr int kTransposedBlock = 2;
#else
constexpr int kVectorBytes = 16;
constexpr int kRegisterRows = 6;
constexpr int kRegisterVectors = 2;
constexpr int kTransposedBlock = 2;
#endif
static_assert(kBlockRows % kRegisterRows == 0,
              "register blocks tile the padded rows");

// Unaligned: loads and stores go to arbitrary element offsets.
template <typename T>
struct Simd {
  static constexpr int kLanes = kVectorBytes / sizeof(T);
  typedef T Vec __attribute__((vector_size(kVectorBytes), aligned(sizeof(T))));
};
static_assert(kLanes<float> % Simd<float>::kLanes == 0,
              "buffers padded to 64 bytes hold whole vectors");

// MR x NV vectors of accumulators, meant to live in registers: every product
// below is a sum of rank-1 updates into one of these blocks.
template <typename T, int MR, int NV>
struct RegisterBlock {
  using Vec = typename Simd<T>::Vec;
  static constexpr int L = Simd<T>::kLanes;
  Vec acc[MR][NV];

  RegisterBlock() {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        acc[i][v] = Vec{};
      }
    }
  }

  // acc[i] += a[i * a_step] * b[0 : NV lanes]: A's elements broadcast, B's
  // row loaded as vectors.
  void rank1(const T* __restrict a, int64_t a_step, const T* __restrict b) {
    Vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      bv[v] = *reinterpret_cast<const Vec*>(b + v * L);
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i * a_step];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        acc[i][v] += ai * bv[v];
      }
    }
  }

  void store(T* __restrict C, int64_t ldc) const {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        *reinterpret_cast<Vec*>(C + i * ldc + v * L) = acc[i][v];
      }
    }
  }

  void add_to(T* __restrict C, int64_t ldc) const {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        *reinterpret_cast<Vec*>(C + i * ldc + v * L) += acc[i][v];
      }
    }
  }
};

// C[0:MR, 0:NV lanes] = A[0:MR, 0:K] B[0:K, 0:NV lanes].
template <typename T, int MR, int NV>
void gemm_block(int64_t K,
                const T* __restrict A,
                int64_t lda,
                const T* __restrict B,
                int64_t ldb,
                T* __restrict C,
                int64_t ldc) {
  RegisterBlock<T, MR, NV> block;
  for (int64_t k = 0; k < K; ++k) {
    block.rank1(A + k, lda, B + k * ldb);
  }
  block.store(C, ldc);
}

// Calls f(std::integral_constant<int, n>()) for a run-time n in [1, Max]: the
// block sizes are template arguments, so that the accumulators are
// registers. Nothing happens for n outside that range.
template <int Max, typename F>
void with_count(int64_t n, const F& f) {
  if constexpr (Max > 0) {
    if (n == Max) {
      f(std::integral_constant<int, Max>());
    } else {
      with_count<Max - 1>(n, f);
    }
  }
}

// C (M x NV lanes) = A (M x K) B (K x NV lanes): blocks of kRegisterRows
// rows, then the remaining rows.
template <typename T, int NV>
void gemm_panel(int64_t M,
                int64_t K,
                const T* __restrict A,
                int64_t lda,
                const T* __restrict B,
                int64_t ldb,
                T* __restrict C,
                int64_t ldc) {
  int64_t i = 0;
  for (; i + kRegisterRows <= M; i += kRegisterRows) {
    gemm_block<T, kRegisterRows, NV>(
        K, A + i * lda, lda, B, ldb, C + i * ldc, ldc);
  }
  with_count<kRegisterRows - 1>(M - i, [&](auto rows) {
    gemm_block<T, decltype(rows)::value, NV>(
        K, A + i * lda, lda, B, ldb, C + i * ldc, ldc);
  });
}

// C (M x N) = A (M x K) B (K x N) for N a multiple of the vector length:
// panels of kRegisterVectors vectors, each swept over all rows while its
// slice of B stays in the L1 cache.
template <typename T>
void gemm(int64_t M,
          int64_t N,
          int64_t K,
          const T* __restrict A,
          int64_t lda,
          const T* __restrict B,
          int64_t ldb,
          T* __restrict C,
          int64_t ldc) {
  constexpr int L = Simd<T>::kLanes;
  int64_t j = 0;
  for (; j + kRegisterVectors * L <= N; j += kRegisterVectors * L) {
    gemm_panel<T, kRegisterVectors>(M, K, A, lda, B + j, ldb, C + j, ldc);
  }
  with_count<kRegisterVectors - 1>((N - j) / L, [&](auto vectors) {
    gemm_panel<T, decltype(vectors)::value>(
        M, K, A, lda, B + j, ldb, C + j, ldc);
  });
}

// C (M x N) += A (M x len) B (N x len)^T, the contraction running along the
// rows of both, which are zero-padded to a multiple of the vector length; M
// and N are multiples of 4 (kTransposedBlock divides 4). C holds one vector of
// partial sums per element (M x N x lanes, row-major), added across lanes once
// all chunks are done.
template <typename T>
void gemm_nt(int64_t M,
             int64_t N,
             int64_t len,
             const T* __restrict A,
             int64_t lda,
             const T* __restrict B,
             int64_t ldb,
             T* __restrict C) {
  using Vec = typename Simd<T>::Vec;
  constexpr int L = Simd<T>::kLanes;
  constexpr int NB = kTransposedBlock;
  for (int64_t i = 0; i < M; i += NB) {
    for (int64_t j = 0; j < N; j += NB) {
      Vec acc[NB][NB];
#pragma GCC unroll 4
      for (int r = 0; r < NB; ++r) {
#pragma GCC unroll 4
        for (int c = 0; c < NB; ++c) {
          acc[r][c] = Vec{};
        }
      }
      for (int64_t k = 0; k < len; k += L) {
        Vec a[NB], b[NB];
#pragma GCC unroll 4
        for (int r = 0; r < NB; ++r) {
          a[r] = *reinterpret_cast<const Vec*>(A + (i + r) * lda + k);
          b[r] = *reinterpret_cast<const Vec*>(B + (j + r) * ldb + k);
        }
#pragma GCC unroll 4
        for (int r = 0; r < NB; ++r) {
#pragma GCC unroll 4
          for (int c = 0; c < NB; ++c) {
            acc[r][c] += a[r] * b[c];
          }
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < NB; ++r) {
#pragma GCC unroll 4
        for (int c = 0; c < NB; ++c) {
          *reinterpret_cast<Vec*>(C + ((i + r) * N + j + c) * L) += acc[r][c];
        }
      }
    }
  }
}

// C[0:MR, 0:NV lanes] += sum over planes p and rows k of
//   a[p, k][0:MR] (outer) b[p, k][0:NV lanes]
// with a[p, k] = A + k * a_row + p * a_plane, b[p, k] = B + k * b_row + p *
// b_plane: the gradient of the column matrices, accumulated over planes.
template <typename T, int MR, int NV>
void outer_product_block(int64_t planes,
                         int64_t rows,
                         const T* __restrict A,
                         int64_t a_row,
                         int64_t a_plane,
                         const T* __restrict B,
                         int64_t b_row,
                         int64_t b_plane,
                         T* __restrict C,
                         int64_t ldc) {
  RegisterBlock<T, MR, NV> block;
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t k = 0; k < rows; ++k) {
      block.rank1(A + k * a_row + p * a_plane, 1, B + k * b_row + p * b_plane);
    }
  }
  block.add_to(C, ldc);
}

// Plain loops instead of <algorithm>: a library template instantiated here
// would be compiled for this instruction set under a name shared with the
// other translation units, and the linker could hand that copy to them.
template <typename T>
void copy_n(const T* __restrict from, int64_t n, T* __restrict to) {
  for (int64_t i = 0; i < n; ++i) {
    to[i] = from[i];
  }
}

template <typename T>
void zero_n(T* to, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    to[i] = T(0);
  }
}

int64_t min_of(int64_t a, int64_t b) {
  return a < b ? a : b;
}

// Column pass over `count` planes: row (c, h) of `t` (leading dimension ld)
// receives, plane after plane, the out_width values of (in_p G_c)[h, :].
// g_pad (in_width x np) is [G_r | G_i] padded with zero columns to np, a
// multiple of the vector length; `block` holds kBlockRows x np scratch.
template <typename T>
void column_pass(const T* __restrict in,
                 int64_t count,
                 const PassDims& d,
                 const T* __restrict g_pad,
                 int64_t np,
                 T* __restrict t,
                 int64_t ld,
                 T* __restrict block) {
  constexpr int L = Simd<T>::kLanes;
  const int64_t rows = count * d.in_height;
  const int64_t wo = d.out_width;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlockRows) {
    const int64_t n = min_of(kBlockRows, rows - r0);
    gemm<T>(n,
            np,
            d.in_width,
            in + r0 * d.in_width,
            d.in_width,
            g_pad,
            np,
            block,
            np);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = (r0 + i) / d.in_height;
      const int64_t h = (r0 + i) % d.in_height;
      copy_n(block + i * np, wo, t + h * ld + p * wo);
      copy_n(block + i * np + wo, wo, t + (d.in_height + h) * ld + p * wo);
    }
  }
  // Zero the columns up to the next vector boundary: later contractions run
  // over whole vectors.
  const int64_t used = count * wo;
  for (int64_t r = 0; r < 2 * d.in_height; ++r) {
    zero_n(t + r * ld + used, round_up(used, L) - used);
  }
}

// Row pass over `count` planes: out_p = [A_r | A_i] (t's rows) for every
// plane, through `y_buf` (out_height x ld).
template <typename T>
void row_pass(const T* __restrict t,
              int64_t count,
              const PassDims& d,
              const T* __restrict a_cat,
              int64_t ld,
              T* __restrict y_buf,
              T* __restrict out) {
  constexpr int L = Simd<T>::kLanes;
  const int64_t wo = d.out_width;
  gemm<T>(d.out_height,
          round_up(count * wo, L),
          2 * d.in_height,
          a_cat,
          2 * d.in_height,
          t,
          ld,
          y_buf,
          ld);
  for (int64_t p = 0; p < count; ++p) {
    for (int64_t h = 0; h < d.out_height; ++h) {
      copy_n(y_buf + h * ld + p * wo, wo, out + (p * d.out_height + h) * wo);
    }
  }
}

template <typename T>
void forward_range(const ForwardArgs<T>& args, int64_t begin, int64_t end) {
  const PassDims& d = args.dims;
  const ForwardWorkspace ws = forward_workspace(d, args.np, kLanes<T>);
  T* t = args.workspace + ws.t;
  T* y_buf = args.workspace + ws.y_buf;
  T* block = args.workspace + ws.block;
  for (int64_t p = begin; p < end; p += ws.chunk) {
    const int64_t count = min_of(ws.chunk, end - p);
    column_pass(args.x + p * d.in_height * d.in_width,
                count,
                d,
                args.g_pad,
                args.np,
                t,
                ws.ld,
                block);
    row_pass(t,
             count,
             d,
             args.a_cat,
             ws.ld,
             y_buf,
             args.y + p * d.out_height * d.out_width);
  }
}

// dG_c[w, w'] += sum over planes p and rows h' of u[(c, h'), (p, w)]
// dy_pad[(p, h'), w'], into dg laid out as `ws` says: blocks of
// kRegisterRows rows (w, or w' when transposed) by up to kRegisterVectors
// vectors of the other index, which runs along the vectors.
template <typename T>
void accumulate_column_gradient(const T* u,
                                const T* dy_pad,
                                int64_t count,
                                const SpectralCropShape& s,
                                const BackwardWorkspace& ws,
                                T* dg) {
  constexpr int L = Simd<T>::kLanes;
  const int64_t W = s.width, Hp = s.out_height, ld = ws.ld, ldw = ws.ldw;
  for (int64_t c = 0; c < 2; ++c) {
    const T* u_c = u + c * Hp * ld;
    // Rows of the block: w of u (not transposed) or w' of dy (transposed).
    const T* a = ws.dg_transposed ? dy_pad : u_c;
    const int64_t a_row = ws.dg_transposed ? ldw : ld;
    const int64_t a_plane = ws.dg_transposed ? Hp * ldw : W;
    const T* b = ws.dg_transposed ? u_c : dy_pad;
    const int64_t b_row = ws.dg_transposed ? ld : ldw;
    const int64_t b_plane = ws.dg_transposed ? W : Hp * ldw;
    const int64_t rows = ws.dg_transposed ? s.out_width : W;
    for (int64_t r0 = 0; r0 < rows; r0 += kRegisterRows) {
      T* out = dg + (c * ws.dg_rows + r0) * ws.dg_cols;
      for (int64_t v = 0; v < ws.dg_cols; v += kRegisterVectors * L) {
        with_count<kRegisterVectors>(
            min_of(kRegisterVectors, (ws.dg_cols - v) / L), [&](auto vectors) {
              outer_product_block<T, kRegisterRows, decltype(vectors)::value>(
                  count,
                  Hp,
                  a + r0,
                  a_row,
                  a_plane,
                  b + v,
                  b_row,
                  b_plane,
                  out + v,
                  ws.dg_cols);
            });
      }
    }
  }
}

// `count` vectors of partial sums, each replaced by its sum: out[e] = sum of
// the lanes of vector e (in place; e <= e * lanes, so every vector is read
// before its slot is written).
template <typename T>
void sum_lanes_in_place(T* partial, int64_t count) {
  constexpr int L = Simd<T>::kLanes;
  for (int64_t e = 0; e < count; ++e) {
    const T* lanes = partial + e * L;
    T sum = lanes[0];
#pragma GCC unroll 16
    for (int k = 1; k < L; ++k) {
      sum += lanes[k];
    }
    partial[e] = sum;
  }
}

// One worker's planes [begin, end), chunk after chunk; the gradients of the
// small matrices are summed over them into args.da (then reduced to one sum
// per element) and args.dg.
template <typename T>
void backward_range(const BackwardArgs<T>& args, int64_t begin, int64_t end) {
  constexpr int L = Simd<T>::kLanes;
  const SpectralCropShape& s = args.s;
  const int64_t H = s.height, W = s.width;
  const int64_t Hp = s.out_height, Wp = s.out_width;
  // dx = A_r^T dy G_r^T + A_i^T dy G_i^T: the forward map with transposed
  // matrices, from dy (H' x W') to dx (H x W).
  const PassDims d{Hp, Wp, H, W, s.planes};
  const bool matrices = args.da != nullptr;
  const BackwardWorkspace ws = backward_workspace(s, args.np, kLanes<T>);
  const int64_t ld = ws.ld;
  // s_buf: rows (c, h') hold dy_p G_c^T, plane after plane (the column pass
  // of dx), and zero rows up to da_rows for gemm_nt. x_t: rows h hold x_p[h,
  // :] plane after plane, and zero rows up to da_cols. u = [A_r ; A_i] x_t.
  // dy_pad: dy's rows, zero-padded to whole vectors.
  T* s_buf = args.workspace + ws.s_buf;
  T* dx_buf = args.workspace + ws.dx_buf;
  T* block = args.workspace + ws.block;
  T* x_t = args.workspace + ws.x_t;
  T* u = args.workspace + ws.u;
  T* dy_pad = args.workspace + ws.dy_pad;
  zero_n(s_buf + 2 * Hp * ld, (ws.da_rows - 2 * Hp) * ld);
  if (matrices) {
    zero_n(x_t + H * ld, (ws.da_cols - H) * ld);
    zero_n(dy_pad, ws.chunk * Hp * ws.ldw);
  }
  for (int64_t p = begin; p < end; p += ws.chunk) {
    const int64_t count = min_of(ws.chunk, end - p);
    const T* dy = args.dy + p * Hp * Wp;
    column_pass(dy, count, d, args.gt_pad, args.np, s_buf, ld, block);
    if (args.dx != nullptr) {
      row_pass(s_buf, count, d, args.a_cat_t, ld, dx_buf, args.dx + p * H * W);
    }
    if (!matrices) {
      continue;
    }
    const T* x = args.x + p * H * W;
    const int64_t used = round_up(count * W, L);
    for (int64_t h = 0; h < H; ++h) {
      T* row = x_t + h * ld;
      for (int64_t q = 0; q < count; ++q) {
        copy_n(x + (q * H + h) * W, W, row + q * W);
      }
      zero_n(row + count * W, used - count * W);
    }
    // dA_c[h', h] += sum over (p, w) of (dy_p G_c^T)[h', w] x_p[h, w].
    gemm_nt<T>(ws.da_rows, ws.da_cols, used, s_buf, ld, x_t, ld, args.da);
    // dG_c[w, w'] += sum over (p, h') of (A_c x_p)[h', w] dy_p[h', w'].
    gemm<T>(2 * Hp, used, H, args.a_stack, H, x_t, ld, u, ld);
    for (int64_t r = 0; r < count * Hp; ++r) {
      copy_n(dy + r * Wp, Wp, dy_pad + r * ws.ldw);
    }
    accumulate_column_gradient(u, dy_pad, count, s, ws, args.dg);
  }
  if (matrices) {
    sum_lanes_in_place(args.da, ws.da_rows * ws.da_cols);
  }
}

}  // namespace
}  // namespace cpu
}  // namespace diffstride

// The entry points of this instruction set, for float and double.
#define DIFFSTRIDE_DEFINE_RANGES(isa)                                     \
  namespace diffstride {                                                  \
  namespace cpu {                                                         \
  template <typename T>                                                   \
  void forward_range_##isa(const ForwardArgs<T>& args,                    \
                           int64_t begin,                                 \
                           int64_t end) {                                 \
    forward_range<T>(args, begin, end);                                   \
  }                                                                       \
  template <typename T>                                                   \
  void backward_range_##isa(const BackwardArgs<T>& args,                  \
                            int64_t begin,                                \
                            int64_t end) {                                \
    backward_range<T>(args, begin, end);                                  \
  }                                                                       \
  template void forward_range_##isa<float>(const ForwardArgs<float>&,     \
                                           int64_t,                       \
                                           int64_t);                      \
  template void forward_range_##isa<double>(const ForwardArgs<double>&,   \
                                            int64_t,                      \
                                            int64_t);                     \
  template void backward_range_##isa<float>(const BackwardArgs<float>&,   \
                                            int64_t,                      \
                                            int64_t);                     \
  template void backward_range_##isa<double>(const BackwardArgs<double>&, \
                                             int64_t,                     \
                                             int64_t);                    \
  }                                                                       \
  }
