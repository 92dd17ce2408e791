#pragma once

// Fused CPU kernels of the separable spectral crop (see src/spectral_crop.h):
// per H x W plane, y = A_r x G_r + A_i x G_i, and its backward. No LibTorch
// types here: raw, contiguous arrays, so the kernel translation unit stays
// lean and can be compiled for several instruction sets.
//
// The small matrices come interleaved so that each step is one small matrix
// product per plane:
//   gcat (W x 2W'):  row m = [G_r[m, :] | G_i[m, :]], so t = x gcat holds
//                    row n = [x G_r row n | x G_i row n], which read as a
//                    2H x W' matrix has rows (x G_r)[n] and (x G_i)[n] at 2n
//                    and 2n + 1;
//   aint (H' x 2H):  aint[j, 2n] = A_r[j, n], aint[j, 2n + 1] = A_i[j, n],
// so that y = aint (2H x W' view of t).

#include <cstdint>

namespace diffstride {
namespace cpu {

struct SpectralCropShape {
  int64_t planes;      // N * C
  int64_t height;      // H
  int64_t width;       // W
  int64_t out_height;  // H'
  int64_t out_width;   // W'
};

/// y (planes x H' x W') from x (planes x H x W).
template <typename T>
void spectral_crop_forward(const T* x,
                           T* y,
                           const T* gcat,
                           const T* aint,
                           const SpectralCropShape& shape);

/// Given dy (planes x H' x W'): dx = A_r^T dy G_r^T + A_i^T dy G_i^T when `dx`
/// is not null; when `dgcat` (W x 2W') and `daint_t` (2H x H', the gradient of
/// aint transposed) are not null, the gradients of the small matrices summed
/// over all planes. `gcat_t` (2W' x W) and `aint_t` (2H x H') are the
/// transposes of gcat and aint.
template <typename T>
void spectral_crop_backward(const T* x,
                            const T* dy,
                            const T* gcat,
                            const T* gcat_t,
                            const T* aint_t,
                            T* dx,
                            T* dgcat,
                            T* daint_t,
                            const SpectralCropShape& shape);

}  // namespace cpu
}  // namespace diffstride
