// The separable spectral crop on CPU.
//
// Per plane the work is a handful of tiny matrix products (18 x 36 by 36 x 18
// at ResNet-18's last stage): done one plane at a time their short rows leave
// most of each vector register empty. Instead each thread takes a chunk of
// planes and lays the intermediate out so that every product has one long
// dimension that runs across planes:
//
//   column pass  t[(p, h), :] = x_p[h, :] [G_r | G_i]       rows across planes
//   row pass     Y[h', (p, w')] = [A_r | A_i] T[(c, h), (p, w')]
//                                                 columns across planes
//
// where T is t rearranged so that row (c, h) holds, plane after plane, the
// W' values of (x_p G_c)[h, :]. Every product is then a register-blocked
// micro-kernel (6 rows by a few vectors, the accumulators in registers;
// the vectors are as wide as the instruction set's registers) streaming over
// the long dimension, with intermediates of one chunk kept in the L2 cache; the
// data-sized tensors are read and written once. The backward reuses the same
// two passes for dx (the same map with transposed matrices) and adds the two
// contractions that give the small matrices' gradients, from which autograd
// reaches the strides.
//
// The passes (spectral_crop_ranges_impl.h) are compiled once per instruction
// set, AVX-512, AVX2+FMA and the baseline, each in its own translation unit
// with that set's flags; this file picks one by the CPU's features (not its
// model name, which virtual machines often hide), splits the planes between
// threads and adds up the threads' gradients of the small matrices.

#include "spectral_crop_planes.h"

#include "spectral_crop_ranges.h"

#include <ATen/Parallel.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace diffstride {
namespace cpu {

namespace {

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The best instruction set this CPU has.
Isa detect_isa() {
#if defined(DIFFSTRIDE_HAVE_ISA_VARIANTS)
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

// The detected set, or a lower one named by DIFFSTRIDE_CPU_ISA (baseline,
// avx2): the tests run every variant the CPU can (docs/layers.md).
Isa choose_isa() {
  const Isa best = detect_isa();
  const char* asked = std::getenv("DIFFSTRIDE_CPU_ISA");
  if (asked == nullptr || *asked == '\0') {
    return best;
  }
  const std::string name(asked);
  TORCH_CHECK(name == "baseline" || name == "avx2" || name == "avx512",
              "DIFFSTRIDE_CPU_ISA: expected baseline, avx2 or avx512, got '",
              name,
              "'");
  const Isa wanted = name == "baseline" ? Isa::kBaseline
                     : name == "avx2"   ? Isa::kAvx2
                                        : Isa::kAvx512;
  TORCH_CHECK(wanted <= best,
              "DIFFSTRIDE_CPU_ISA=",
              name,
              ": this CPU (or this build) lacks that instruction set");
  return wanted;
}

// Chosen at the first call, so that a bad DIFFSTRIDE_CPU_ISA is an error of
// that call rather than of loading the library.
Isa chosen_isa() {
  static const Isa chosen = choose_isa();
  return chosen;
}

// The entry point for this CPU's instruction set.
template <typename Entry>
Entry pick(Entry baseline, Entry avx2, Entry avx512) {
  switch (chosen_isa()) {
    case Isa::kAvx512:
      return avx512;
    case Isa::kAvx2:
      return avx2;
    default:
      return baseline;
  }
}

// Threads that take part: no more than there are chunks of planes.
int64_t worker_count(int64_t planes, int64_t chunk) {
  const int64_t chunks = (planes + chunk - 1) / chunk;
  return std::max<int64_t>(1, std::min<int64_t>(chunks, at::get_num_threads()));
}

// Calls body(worker, begin, end) once per worker, with a fixed, contiguous
// share of the chunks of `chunk` planes (the range walks its chunks in
// order). Fixed, so that for a given thread count every worker sums the same
// planes in the same order: the stride gradients are then bit-for-bit
// reproducible, which a resumed training run needs to end exactly where an
// uninterrupted one does.
template <typename Body>
void for_each_worker(int64_t planes,
                     int64_t chunk,
                     int64_t workers,
                     const Body& body) {
  const int64_t chunks = (planes + chunk - 1) / chunk;
  at::parallel_for(0, workers, 1, [&](int64_t first, int64_t last) {
    for (int64_t worker = first; worker < last; ++worker) {
      const int64_t begin = chunks * worker / workers * chunk;
      const int64_t end =
          std::min(planes, chunks * (worker + 1) / workers * chunk);
      if (begin < end) {
        body(worker, begin, end);
      }
    }
  });
}

// m (rows x cols) with zero columns appended up to `padded`.
template <typename T>
std::vector<T> pad_columns(const T* m,
                           int64_t rows,
                           int64_t cols,
                           int64_t padded) {
  std::vector<T> out(rows * padded, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(m + r * cols, m + (r + 1) * cols, out.data() + r * padded);
  }
  return out;
}

}  // namespace

template <typename T>
void spectral_crop_forward(const T* x,
                           T* y,
                           const T* a_cat,
                           const T* g_cat,
                           const SpectralCropShape& s) {
  if (s.planes == 0) {
    return;
  }
  const int64_t np = round_up(2 * s.out_width, kLanes<T>);
  const auto g_pad = pad_columns(g_cat, s.width, 2 * s.out_width, np);
  const PassDims dims{s.height, s.width, s.out_height, s.out_width, s.planes};
  const ForwardWorkspace ws = forward_workspace(dims, np, kLanes<T>);
  const int64_t per_worker = ws.total;
  const int64_t workers = worker_count(s.planes, ws.chunk);
  // Scratch is written before it is read, except the padding the ranges
  // zero themselves: no need to initialise it here.
  const std::unique_ptr<T[]> workspace(new T[workers * per_worker]);
  const auto entry = pick(&forward_range_baseline<T>,
                          &forward_range_avx2<T>,
                          &forward_range_avx512<T>);
  for_each_worker(s.planes,
                  ws.chunk,
                  workers,
                  [&](int64_t worker, int64_t begin, int64_t end) {
                    const ForwardArgs<T> args{
                        x,
                        y,
                        a_cat,
                        g_pad.data(),
                        np,
                        dims,
                        workspace.get() + worker * per_worker};
                    entry(args, begin, end);
                  });
}

template <typename T>
void spectral_crop_backward(const T* x,
                            const T* dy,
                            const T* a_cat_t,
                            const T* g_cat_t,
                            const T* a_stack,
                            T* dx,
                            T* da_stack,
                            T* dg_stack,
                            const SpectralCropShape& s) {
  const int64_t H = s.height, W = s.width, Hp = s.out_height, Wp = s.out_width;
  const bool matrices = da_stack != nullptr;
  if (matrices) {
    std::fill(da_stack, da_stack + 2 * Hp * H, T(0));
    std::fill(dg_stack, dg_stack + 2 * W * Wp, T(0));
  }
  if (s.planes == 0 || (dx == nullptr && !matrices)) {
    return;
  }
  const int64_t np = round_up(2 * W, kLanes<T>);
  const auto gt_pad = pad_columns(g_cat_t, Wp, 2 * W, np);
  const BackwardWorkspace ws = backward_workspace(s, np, kLanes<T>);
  // Each worker sums its planes' contributions to the small matrices in its
  // own padded accumulators; they are added up at the end.
  const int64_t da_size = ws.da_rows * ws.da_cols * kLanes<T>;
  const int64_t dg_size = 2 * ws.dg_rows * ws.dg_cols;
  const int64_t per_worker = ws.total + (matrices ? da_size + dg_size : 0);
  const int64_t workers = worker_count(s.planes, ws.chunk);
  std::vector<T> workspace(workers * per_worker, T(0));
  const auto entry = pick(&backward_range_baseline<T>,
                          &backward_range_avx2<T>,
                          &backward_range_avx512<T>);
  for_each_worker(s.planes,
                  ws.chunk,
                  workers,
                  [&](int64_t worker, int64_t begin, int64_t end) {
                    T* mine = workspace.data() + worker * per_worker;
                    const BackwardArgs<T> args{
                        x,
                        dy,
                        a_cat_t,
                        gt_pad.data(),
                        np,
                        a_stack,
                        dx,
                        matrices ? mine + ws.total : nullptr,
                        matrices ? mine + ws.total + da_size : nullptr,
                        s,
                        mine};
                    entry(args, begin, end);
                  });
  if (!matrices) {
    return;
  }
  for (int64_t w = 0; w < workers; ++w) {
    // The range has added up its lanes: da holds da_rows x da_cols sums.
    const T* da = workspace.data() + w * per_worker + ws.total;
    const T* dg = da + da_size;
    for (int64_t r = 0; r < 2 * Hp; ++r) {
      for (int64_t c = 0; c < H; ++c) {
        da_stack[r * H + c] += da[r * ws.da_cols + c];
      }
    }
    for (int64_t c = 0; c < 2; ++c) {
      for (int64_t r = 0; r < W; ++r) {
        for (int64_t k = 0; k < Wp; ++k) {
          dg_stack[(c * W + r) * Wp + k] +=
              ws.dg_transposed ? dg[(c * ws.dg_rows + k) * ws.dg_cols + r]
                               : dg[(c * ws.dg_rows + r) * ws.dg_cols + k];
        }
      }
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
