// The separable spectral crop on CPU, fused per plane so that every
// intermediate stays in the L1/L2 cache: the data-sized tensors are read and
// written once. The loops are written for the compiler's vectoriser (unit
// stride, restrict pointers, `omp simd`), and each entry point is cloned for
// AVX-512, AVX2+FMA and the baseline, picked at load time by the CPU.

#include "spectral_crop_kernel.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DIFFSTRIDE_TARGET_CLONES \
  __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define DIFFSTRIDE_TARGET_CLONES
#endif
#define DIFFSTRIDE_ALWAYS_INLINE __attribute__((always_inline)) inline

namespace diffstride {
namespace cpu {

namespace {

// t (H x 2W') = x (H x W) * gcat (W x 2W'): the column pipeline of every row.
template <typename T>
DIFFSTRIDE_ALWAYS_INLINE void transform_rows(const T* __restrict x,
                                             const T* __restrict gcat,
                                             T* __restrict t,
                                             int64_t height,
                                             int64_t width,
                                             int64_t columns) {
  for (int64_t n = 0; n < height; ++n) {
    T* __restrict row = t + n * columns;
    std::fill(row, row + columns, T(0));
    for (int64_t m = 0; m < width; ++m) {
      const T value = x[n * width + m];
      const T* __restrict g = gcat + m * columns;
#pragma omp simd
      for (int64_t c = 0; c < columns; ++c) {
        row[c] += value * g[c];
      }
    }
  }
}

template <typename T>
DIFFSTRIDE_ALWAYS_INLINE void forward_planes(const T* __restrict x,
                                             T* __restrict y,
                                             const T* __restrict gcat,
                                             const T* __restrict a_real,
                                             const T* __restrict a_imag,
                                             const SpectralCropShape& s,
                                             int64_t begin,
                                             int64_t end,
                                             T* __restrict t) {
  const int64_t columns = 2 * s.out_width;
  for (int64_t p = begin; p < end; ++p) {
    transform_rows(x + p * s.height * s.width, gcat, t, s.height, s.width, columns);
    // y[j] = sum_n A_r[j, n] t_r[n] + A_i[j, n] t_i[n]: the row pipeline.
    T* __restrict out_plane = y + p * s.out_height * s.out_width;
    for (int64_t j = 0; j < s.out_height; ++j) {
      T* __restrict out = out_plane + j * s.out_width;
      std::fill(out, out + s.out_width, T(0));
      for (int64_t n = 0; n < s.height; ++n) {
        const T ar = a_real[j * s.height + n];
        const T ai = a_imag[j * s.height + n];
        const T* __restrict tr = t + n * columns;
        const T* __restrict ti = tr + s.out_width;
#pragma omp simd
        for (int64_t w = 0; w < s.out_width; ++w) {
          out[w] += ar * tr[w] + ai * ti[w];
        }
      }
    }
  }
}

template <typename T>
DIFFSTRIDE_ALWAYS_INLINE void backward_planes(const T* __restrict x,
                                              const T* __restrict dy,
                                              const T* __restrict gcat,
                                              const T* __restrict gcat_t,
                                              const T* __restrict a_real,
                                              const T* __restrict a_imag,
                                              T* __restrict dx,
                                              T* __restrict dgcat,
                                              T* __restrict da_real,
                                              T* __restrict da_imag,
                                              const SpectralCropShape& s,
                                              int64_t begin,
                                              int64_t end,
                                              T* __restrict v,
                                              T* __restrict t) {
  const int64_t H = s.height, W = s.width, Hp = s.out_height, Wp = s.out_width;
  const int64_t columns = 2 * Wp;
  for (int64_t p = begin; p < end; ++p) {
    const T* __restrict x_plane = x + p * H * W;
    const T* __restrict dy_plane = dy + p * Hp * Wp;
    // v (H x 2W') = [A_r^T dy | A_i^T dy]: dy brought back through the rows.
    std::fill(v, v + H * columns, T(0));
    for (int64_t j = 0; j < Hp; ++j) {
      const T* __restrict d = dy_plane + j * Wp;
      for (int64_t n = 0; n < H; ++n) {
        const T ar = a_real[j * H + n];
        const T ai = a_imag[j * H + n];
        T* __restrict vr = v + n * columns;
        T* __restrict vi = vr + Wp;
#pragma omp simd
        for (int64_t w = 0; w < Wp; ++w) {
          vr[w] += ar * d[w];
          vi[w] += ai * d[w];
        }
      }
    }
    if (dx != nullptr) {
      // dx[n] = sum_c v[n, c] gcat^T[c]: then through the columns.
      T* __restrict dx_plane = dx + p * H * W;
      for (int64_t n = 0; n < H; ++n) {
        T* __restrict out = dx_plane + n * W;
        std::fill(out, out + W, T(0));
        for (int64_t c = 0; c < columns; ++c) {
          const T value = v[n * columns + c];
          const T* __restrict g = gcat_t + c * W;
#pragma omp simd
          for (int64_t m = 0; m < W; ++m) {
            out[m] += value * g[m];
          }
        }
      }
    }
    if (dgcat != nullptr) {
      // dL/dgcat += x^T v.
      for (int64_t n = 0; n < H; ++n) {
        const T* __restrict vn = v + n * columns;
        for (int64_t m = 0; m < W; ++m) {
          const T value = x_plane[n * W + m];
          T* __restrict acc = dgcat + m * columns;
#pragma omp simd
          for (int64_t c = 0; c < columns; ++c) {
            acc[c] += value * vn[c];
          }
        }
      }
    }
    if (da_real != nullptr) {
      // dL/dA_r[j, n] += <dy[j], t_r[n]>, dL/dA_i[j, n] += <dy[j], t_i[n]>,
      // with t = x gcat recomputed (cheaper than keeping it from forward).
      transform_rows(x_plane, gcat, t, H, W, columns);
      for (int64_t j = 0; j < Hp; ++j) {
        const T* __restrict d = dy_plane + j * Wp;
        for (int64_t n = 0; n < H; ++n) {
          const T* __restrict tr = t + n * columns;
          const T* __restrict ti = tr + Wp;
          T sum_real = 0, sum_imag = 0;
#pragma omp simd reduction(+ : sum_real, sum_imag)
          for (int64_t w = 0; w < Wp; ++w) {
            sum_real += d[w] * tr[w];
            sum_imag += d[w] * ti[w];
          }
          da_real[j * H + n] += sum_real;
          da_imag[j * H + n] += sum_imag;
        }
      }
    }
  }
}

// Entry points cloned per instruction set; the templates above are inlined
// into each clone and vectorised for it.
#define DIFFSTRIDE_DEFINE_PLANE_ENTRY_POINTS(T, suffix)                       \
  DIFFSTRIDE_TARGET_CLONES void forward_planes_##suffix(                     \
      const T* x, T* y, const T* gcat, const T* a_real, const T* a_imag,     \
      const SpectralCropShape& s, int64_t begin, int64_t end, T* t) {        \
    forward_planes<T>(x, y, gcat, a_real, a_imag, s, begin, end, t);         \
  }                                                                          \
  DIFFSTRIDE_TARGET_CLONES void backward_planes_##suffix(                    \
      const T* x, const T* dy, const T* gcat, const T* gcat_t,               \
      const T* a_real, const T* a_imag, T* dx, T* dgcat, T* da_real,         \
      T* da_imag, const SpectralCropShape& s, int64_t begin, int64_t end,    \
      T* v, T* t) {                                                          \
    backward_planes<T>(x, dy, gcat, gcat_t, a_real, a_imag, dx, dgcat,       \
                       da_real, da_imag, s, begin, end, v, t);               \
  }                                                                          \
  void run_forward(const T* x, T* y, const T* gcat, const T* a_real,         \
                   const T* a_imag, const SpectralCropShape& s, int64_t begin, \
                   int64_t end, T* t) {                                      \
    forward_planes_##suffix(x, y, gcat, a_real, a_imag, s, begin, end, t);   \
  }                                                                          \
  void run_backward(const T* x, const T* dy, const T* gcat, const T* gcat_t, \
                    const T* a_real, const T* a_imag, T* dx, T* dgcat,       \
                    T* da_real, T* da_imag, const SpectralCropShape& s,      \
                    int64_t begin, int64_t end, T* v, T* t) {                \
    backward_planes_##suffix(x, dy, gcat, gcat_t, a_real, a_imag, dx, dgcat, \
                             da_real, da_imag, s, begin, end, v, t);         \
  }

DIFFSTRIDE_DEFINE_PLANE_ENTRY_POINTS(float, f32)
DIFFSTRIDE_DEFINE_PLANE_ENTRY_POINTS(double, f64)

// Splits the planes into one contiguous chunk per thread.
int64_t chunk_count(int64_t planes) {
  return std::max<int64_t>(
      1, std::min<int64_t>(planes, at::get_num_threads()));
}

int64_t chunk_begin(int64_t chunk, int64_t chunks, int64_t planes) {
  return planes * chunk / chunks;
}

}  // namespace

template <typename T>
void spectral_crop_forward(const T* x,
                           T* y,
                           const T* gcat,
                           const T* a_real,
                           const T* a_imag,
                           const SpectralCropShape& shape) {
  if (shape.planes == 0) {
    return;
  }
  const int64_t chunks = chunk_count(shape.planes);
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    std::vector<T> t(shape.height * 2 * shape.out_width);
    for (int64_t chunk = first; chunk < last; ++chunk) {
      run_forward(x, y, gcat, a_real, a_imag, shape,
                  chunk_begin(chunk, chunks, shape.planes),
                  chunk_begin(chunk + 1, chunks, shape.planes), t.data());
    }
  });
}

template <typename T>
void spectral_crop_backward(const T* x,
                            const T* dy,
                            const T* gcat,
                            const T* gcat_t,
                            const T* a_real,
                            const T* a_imag,
                            T* dx,
                            T* dgcat,
                            T* da_real,
                            T* da_imag,
                            const SpectralCropShape& shape) {
  const int64_t columns = 2 * shape.out_width;
  const int64_t gcat_size = shape.width * columns;
  const int64_t a_size = shape.out_height * shape.height;
  const bool matrices = dgcat != nullptr;
  if (matrices) {
    std::fill(dgcat, dgcat + gcat_size, T(0));
    std::fill(da_real, da_real + a_size, T(0));
    std::fill(da_imag, da_imag + a_size, T(0));
  }
  if (shape.planes == 0) {
    return;
  }
  // Each chunk sums its planes' contributions to the small matrices in its
  // own buffer; the buffers are added up at the end.
  const int64_t chunks = chunk_count(shape.planes);
  const int64_t per_chunk = matrices ? gcat_size + 2 * a_size : 0;
  std::vector<T> partial(per_chunk * chunks, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    std::vector<T> v(shape.height * columns);
    std::vector<T> t(shape.height * columns);
    for (int64_t chunk = first; chunk < last; ++chunk) {
      T* mine = partial.data() + chunk * per_chunk;
      run_backward(x, dy, gcat, gcat_t, a_real, a_imag, dx,
                   matrices ? mine : nullptr,
                   matrices ? mine + gcat_size : nullptr,
                   matrices ? mine + gcat_size + a_size : nullptr, shape,
                   chunk_begin(chunk, chunks, shape.planes),
                   chunk_begin(chunk + 1, chunks, shape.planes), v.data(),
                   t.data());
    }
  });
  if (matrices) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const T* mine = partial.data() + chunk * per_chunk;
      for (int64_t i = 0; i < gcat_size; ++i) dgcat[i] += mine[i];
      for (int64_t i = 0; i < a_size; ++i) da_real[i] += mine[gcat_size + i];
      for (int64_t i = 0; i < a_size; ++i) da_imag[i] += mine[gcat_size + a_size + i];
    }
  }
}

template void spectral_crop_forward<float>(const float*, float*, const float*,
                                           const float*, const float*,
                                           const SpectralCropShape&);
template void spectral_crop_forward<double>(const double*, double*,
                                            const double*, const double*,
                                            const double*,
                                            const SpectralCropShape&);
template void spectral_crop_backward<float>(
    const float*, const float*, const float*, const float*, const float*,
    const float*, float*, float*, float*, float*, const SpectralCropShape&);
template void spectral_crop_backward<double>(
    const double*, const double*, const double*, const double*,
    const double*, const double*, double*, double*, double*, double*,
    const SpectralCropShape&);

}  // namespace cpu
}  // namespace diffstride
