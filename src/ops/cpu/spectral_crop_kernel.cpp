// The separable spectral crop on CPU, fused per plane so that every
// intermediate stays in the L1/L2 cache: the data-sized tensors are read and
// written once. Each step is a small matrix product computed by a
// register-blocked micro-kernel (blocks of 4 rows x 16 columns held in
// registers), and each entry point is cloned for AVX-512, AVX2+FMA and the
// baseline, picked at load time by the CPU.

#include "spectral_crop_kernel.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#define DIFFSTRIDE_ALWAYS_INLINE __attribute__((always_inline)) inline
// x86-64: each entry point is compiled three times, for AVX-512, AVX2+FMA and
// the baseline, and picked by the CPU's features (not its model name, which
// virtual machines often hide).
#if defined(__x86_64__) && defined(__GNUC__)
#define DIFFSTRIDE_X86_DISPATCH 1
#define DIFFSTRIDE_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define DIFFSTRIDE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace diffstride {
namespace cpu {

namespace {

// C[0:MR, 0:NR] += A[0:MR, 0:K] B[0:K, 0:NR], all row-major with leading
// dimensions lda, ldb, ldc. The MR x NR accumulators are GCC vectors of NR
// elements, held in registers (the compiler splits them into the target's
// vector width), loaded and stored unaligned.
template <typename T, int MR, int NR>
DIFFSTRIDE_ALWAYS_INLINE void micro_kernel(int64_t K,
                                           const T* __restrict A,
                                           int64_t lda,
                                           const T* __restrict B,
                                           int64_t ldb,
                                           T* __restrict C,
                                           int64_t ldc) {
  typedef T Vec
      __attribute__((vector_size(NR * sizeof(T)), aligned(sizeof(T))));
  Vec acc[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    acc[i] = *reinterpret_cast<const Vec*>(C + i * ldc);
  }
  for (int64_t k = 0; k < K; ++k) {
    const Vec b = *reinterpret_cast<const Vec*>(B + k * ldb);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      acc[i] += A[i * lda + k] * b;
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    *reinterpret_cast<Vec*>(C + i * ldc) = acc[i];
  }
}

// The last columns, one at a time.
template <typename T, int MR>
DIFFSTRIDE_ALWAYS_INLINE void column_kernel(int64_t K,
                                            const T* __restrict A,
                                            int64_t lda,
                                            const T* __restrict B,
                                            int64_t ldb,
                                            T* __restrict C,
                                            int64_t ldc) {
  for (int i = 0; i < MR; ++i) {
    T acc = C[i * ldc];
    for (int64_t k = 0; k < K; ++k) {
      acc += A[i * lda + k] * B[k * ldb];
    }
    C[i * ldc] = acc;
  }
}

template <typename T, int MR>
DIFFSTRIDE_ALWAYS_INLINE void row_block(int64_t N,
                                        int64_t K,
                                        const T* __restrict A,
                                        int64_t lda,
                                        const T* __restrict B,
                                        int64_t ldb,
                                        T* __restrict C,
                                        int64_t ldc) {
  int64_t j = 0;
  for (; j + 16 <= N; j += 16) {
    micro_kernel<T, MR, 16>(K, A, lda, B + j, ldb, C + j, ldc);
  }
  for (; j + 8 <= N; j += 8) {
    micro_kernel<T, MR, 8>(K, A, lda, B + j, ldb, C + j, ldc);
  }
  for (; j + 4 <= N; j += 4) {
    micro_kernel<T, MR, 4>(K, A, lda, B + j, ldb, C + j, ldc);
  }
  for (; j < N; ++j) {
    column_kernel<T, MR>(K, A, lda, B + j, ldb, C + j, ldc);
  }
}

// C (M x N) += A (M x K) B (K x N).
template <typename T>
DIFFSTRIDE_ALWAYS_INLINE void small_gemm(int64_t M,
                                         int64_t N,
                                         int64_t K,
                                         const T* __restrict A,
                                         int64_t lda,
                                         const T* __restrict B,
                                         int64_t ldb,
                                         T* __restrict C,
                                         int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= M; i += 4) {
    row_block<T, 4>(N, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc);
  }
  for (; i < M; ++i) {
    row_block<T, 1>(N, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc);
  }
}

template <typename T>
DIFFSTRIDE_ALWAYS_INLINE void transpose(const T* __restrict in,
                                        int64_t rows,
                                        int64_t cols,
                                        T* __restrict out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      out[c * rows + r] = in[r * cols + c];
    }
  }
}

// The column pipeline of one plane: t (H x 2W') = x gcat.
template <typename T>
DIFFSTRIDE_ALWAYS_INLINE void transform_columns(const T* __restrict x_plane,
                                                const T* __restrict gcat,
                                                const SpectralCropShape& s,
                                                T* __restrict t) {
  const int64_t columns = 2 * s.out_width;
  std::fill(t, t + s.height * columns, T(0));
  small_gemm<T>(
      s.height, columns, s.width, x_plane, s.width, gcat, columns, t, columns);
}

template <typename T>
DIFFSTRIDE_ALWAYS_INLINE void forward_planes(const T* __restrict x,
                                             T* __restrict y,
                                             const T* __restrict gcat,
                                             const T* __restrict aint,
                                             const SpectralCropShape& s,
                                             int64_t begin,
                                             int64_t end,
                                             T* __restrict t) {
  const int64_t H = s.height, W = s.width, Hp = s.out_height, Wp = s.out_width;
  for (int64_t p = begin; p < end; ++p) {
    transform_columns(x + p * H * W, gcat, s, t);
    // Rows: y (H' x W') = aint (t as 2H x W').
    T* __restrict out = y + p * Hp * Wp;
    std::fill(out, out + Hp * Wp, T(0));
    small_gemm<T>(Hp, Wp, 2 * H, aint, 2 * H, t, Wp, out, Wp);
  }
}

template <typename T>
DIFFSTRIDE_ALWAYS_INLINE void backward_planes(const T* __restrict x,
                                              const T* __restrict dy,
                                              const T* __restrict gcat,
                                              const T* __restrict gcat_t,
                                              const T* __restrict aint_t,
                                              T* __restrict dx,
                                              T* __restrict dgcat,
                                              T* __restrict daint_t,
                                              const SpectralCropShape& s,
                                              int64_t begin,
                                              int64_t end,
                                              T* __restrict v,
                                              T* __restrict t,
                                              T* __restrict x_t,
                                              T* __restrict dy_t) {
  const int64_t H = s.height, W = s.width, Hp = s.out_height, Wp = s.out_width;
  for (int64_t p = begin; p < end; ++p) {
    const T* __restrict x_plane = x + p * H * W;
    const T* __restrict dy_plane = dy + p * Hp * Wp;
    // Back through the rows: v (2H x W') = aint^T dy, read as H x 2W'.
    std::fill(v, v + H * 2 * Wp, T(0));
    small_gemm<T>(2 * H, Wp, Hp, aint_t, Hp, dy_plane, Wp, v, Wp);
    if (dx != nullptr) {
      // Back through the columns: dx (H x W) = v gcat^T.
      T* __restrict out = dx + p * H * W;
      std::fill(out, out + H * W, T(0));
      small_gemm<T>(H, W, 2 * Wp, v, 2 * Wp, gcat_t, W, out, W);
    }
    if (dgcat != nullptr) {
      // dL/dgcat += x^T v (v as H x 2W').
      transpose(x_plane, H, W, x_t);
      small_gemm<T>(W, 2 * Wp, H, x_t, H, v, 2 * Wp, dgcat, 2 * Wp);
      // dL/daint^T += t dy^T with t = x gcat (2H x W') recomputed, cheaper
      // than keeping it from the forward pass.
      transform_columns(x_plane, gcat, s, t);
      transpose(dy_plane, Hp, Wp, dy_t);
      small_gemm<T>(2 * H, Hp, Wp, t, Wp, dy_t, Hp, daint_t, Hp);
    }
  }
}

// Entry points per instruction set; the templates above are inlined into
// each and vectorised for it.
enum class Isa { kBaseline, kAvx2, kAvx512 };

Isa detect_isa() {
#ifdef DIFFSTRIDE_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")) {
    return Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return Isa::kAvx2;
  }
#endif
  return Isa::kBaseline;
}

const Isa kIsa = detect_isa();

#define DIFFSTRIDE_DEFINE_ENTRY_POINTS(ATTRIBUTE, suffix)      \
  template <typename T>                                        \
  ATTRIBUTE void forward_##suffix(const T* x,                  \
                                  T* y,                        \
                                  const T* gcat,               \
                                  const T* aint,               \
                                  const SpectralCropShape& s,  \
                                  int64_t begin,               \
                                  int64_t end,                 \
                                  T* t) {                      \
    forward_planes<T>(x, y, gcat, aint, s, begin, end, t);     \
  }                                                            \
  template <typename T>                                        \
  ATTRIBUTE void backward_##suffix(const T* x,                 \
                                   const T* dy,                \
                                   const T* gcat,              \
                                   const T* gcat_t,            \
                                   const T* aint_t,            \
                                   T* dx,                      \
                                   T* dgcat,                   \
                                   T* daint_t,                 \
                                   const SpectralCropShape& s, \
                                   int64_t begin,              \
                                   int64_t end,                \
                                   T* v,                       \
                                   T* t,                       \
                                   T* x_t,                     \
                                   T* dy_t) {                  \
    backward_planes<T>(x,                                      \
                       dy,                                     \
                       gcat,                                   \
                       gcat_t,                                 \
                       aint_t,                                 \
                       dx,                                     \
                       dgcat,                                  \
                       daint_t,                                \
                       s,                                      \
                       begin,                                  \
                       end,                                    \
                       v,                                      \
                       t,                                      \
                       x_t,                                    \
                       dy_t);                                  \
  }

DIFFSTRIDE_DEFINE_ENTRY_POINTS(, baseline)
#ifdef DIFFSTRIDE_X86_DISPATCH
DIFFSTRIDE_DEFINE_ENTRY_POINTS(DIFFSTRIDE_TARGET_AVX2, avx2)
DIFFSTRIDE_DEFINE_ENTRY_POINTS(DIFFSTRIDE_TARGET_AVX512, avx512)
#endif

// The entry point for this CPU's instruction set.
template <typename Entry>
Entry pick(Entry baseline, Entry avx2, Entry avx512) {
  switch (kIsa) {
    case Isa::kAvx512:
      return avx512;
    case Isa::kAvx2:
      return avx2;
    default:
      return baseline;
  }
}

template <typename T>
void run_forward(const T* x,
                 T* y,
                 const T* gcat,
                 const T* aint,
                 const SpectralCropShape& s,
                 int64_t begin,
                 int64_t end,
                 T* t) {
#ifdef DIFFSTRIDE_X86_DISPATCH
  const auto entry =
      pick(&forward_baseline<T>, &forward_avx2<T>, &forward_avx512<T>);
#else
  const auto entry = &forward_baseline<T>;
#endif
  entry(x, y, gcat, aint, s, begin, end, t);
}

template <typename T>
void run_backward(const T* x,
                  const T* dy,
                  const T* gcat,
                  const T* gcat_t,
                  const T* aint_t,
                  T* dx,
                  T* dgcat,
                  T* daint_t,
                  const SpectralCropShape& s,
                  int64_t begin,
                  int64_t end,
                  T* v,
                  T* t,
                  T* x_t,
                  T* dy_t) {
#ifdef DIFFSTRIDE_X86_DISPATCH
  const auto entry =
      pick(&backward_baseline<T>, &backward_avx2<T>, &backward_avx512<T>);
#else
  const auto entry = &backward_baseline<T>;
#endif
  entry(x,
        dy,
        gcat,
        gcat_t,
        aint_t,
        dx,
        dgcat,
        daint_t,
        s,
        begin,
        end,
        v,
        t,
        x_t,
        dy_t);
}

// Splits the planes into one contiguous chunk per thread.
int64_t chunk_count(int64_t planes) {
  return std::max<int64_t>(1, std::min<int64_t>(planes, at::get_num_threads()));
}

int64_t chunk_begin(int64_t chunk, int64_t chunks, int64_t planes) {
  return planes * chunk / chunks;
}

}  // namespace

template <typename T>
void spectral_crop_forward(const T* x,
                           T* y,
                           const T* gcat,
                           const T* aint,
                           const SpectralCropShape& shape) {
  if (shape.planes == 0) {
    return;
  }
  const int64_t chunks = chunk_count(shape.planes);
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    std::vector<T> t(shape.height * 2 * shape.out_width);
    for (int64_t chunk = first; chunk < last; ++chunk) {
      run_forward(x,
                  y,
                  gcat,
                  aint,
                  shape,
                  chunk_begin(chunk, chunks, shape.planes),
                  chunk_begin(chunk + 1, chunks, shape.planes),
                  t.data());
    }
  });
}

template <typename T>
void spectral_crop_backward(const T* x,
                            const T* dy,
                            const T* gcat,
                            const T* gcat_t,
                            const T* aint_t,
                            T* dx,
                            T* dgcat,
                            T* daint_t,
                            const SpectralCropShape& shape) {
  const int64_t H = shape.height, W = shape.width;
  const int64_t Hp = shape.out_height, Wp = shape.out_width;
  const int64_t gcat_size = W * 2 * Wp;
  const int64_t aint_size = 2 * H * Hp;
  const bool matrices = dgcat != nullptr;
  if (matrices) {
    std::fill(dgcat, dgcat + gcat_size, T(0));
    std::fill(daint_t, daint_t + aint_size, T(0));
  }
  if (shape.planes == 0) {
    return;
  }
  // Each chunk sums its planes' contributions to the small matrices in its
  // own buffer; the buffers are added up at the end.
  const int64_t chunks = chunk_count(shape.planes);
  const int64_t per_chunk = matrices ? gcat_size + aint_size : 0;
  std::vector<T> partial(per_chunk * chunks, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    std::vector<T> v(H * 2 * Wp), t(H * 2 * Wp), x_t(H * W), dy_t(Hp * Wp);
    for (int64_t chunk = first; chunk < last; ++chunk) {
      T* mine = partial.data() + chunk * per_chunk;
      run_backward(x,
                   dy,
                   gcat,
                   gcat_t,
                   aint_t,
                   dx,
                   matrices ? mine : nullptr,
                   matrices ? mine + gcat_size : nullptr,
                   shape,
                   chunk_begin(chunk, chunks, shape.planes),
                   chunk_begin(chunk + 1, chunks, shape.planes),
                   v.data(),
                   t.data(),
                   x_t.data(),
                   dy_t.data());
    }
  });
  if (matrices) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const T* mine = partial.data() + chunk * per_chunk;
      for (int64_t i = 0; i < gcat_size; ++i)
        dgcat[i] += mine[i];
      for (int64_t i = 0; i < aint_size; ++i)
        daint_t[i] += mine[gcat_size + i];
    }
  }
}

template void spectral_crop_forward<float>(
    const float*, float*, const float*, const float*, const SpectralCropShape&);
template void spectral_crop_forward<double>(const double*,
                                            double*,
                                            const double*,
                                            const double*,
                                            const SpectralCropShape&);
template void spectral_crop_backward<float>(const float*,
                                            const float*,
                                            const float*,
                                            const float*,
                                            const float*,
                                            float*,
                                            float*,
                                            float*,
                                            const SpectralCropShape&);
template void spectral_crop_backward<double>(const double*,
                                             const double*,
                                             const double*,
                                             const double*,
                                             const double*,
                                             double*,
                                             double*,
                                             double*,
                                             const SpectralCropShape&);

}  // namespace cpu
}  // namespace diffstride
