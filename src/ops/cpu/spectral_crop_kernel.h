#pragma once

// Fused CPU kernels of the separable spectral crop (see src/spectral_crop.h):
// per H x W plane, y = A_r x G_r + A_i x G_i, and its backward. No LibTorch
// types here: raw, contiguous arrays, so the kernel translation unit stays
// lean and can be compiled for several instruction sets.

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

/// y (planes x H' x W') from x (planes x H x W). `gcat` is W x 2W' (each row
/// [G_r row | G_i row]); `a_real`, `a_imag` are H' x H.
template <typename T>
void spectral_crop_forward(const T* x,
                           T* y,
                           const T* gcat,
                           const T* a_real,
                           const T* a_imag,
                           const SpectralCropShape& shape);

/// Given dy (planes x H' x W'): dx = A_r^T dy G_r^T + A_i^T dy G_i^T when `dx`
/// is not null, and the gradients of the small matrices, summed over all
/// planes, when `dgcat` (W x 2W') and `da_real`, `da_imag` (H' x H) are not
/// null. `gcat_t` is gcat transposed (2W' x W).
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
                            const SpectralCropShape& shape);

}  // namespace cpu
}  // namespace diffstride
