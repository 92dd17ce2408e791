#pragma once

// CPU loops of the separable spectral crop (the op of ops/spectral_crop.h): for
// every H x W plane, y = A_r x G_r + A_i x G_i, and its backward. No LibTorch
// types here: raw, contiguous row-major arrays, so the kernel translation
// unit stays lean and can be compiled for several instruction sets.
//
// The small matrices come concatenated so that each step is one matrix
// product over a chunk of planes:
//   a_cat   (H' x 2H)  = [A_r | A_i]
//   g_cat   (W x 2W')  = [G_r | G_i]
// and, for the backward,
//   a_cat_t (H x 2H')  = [A_r^T | A_i^T]
//   g_cat_t (W' x 2W)  = [G_r^T | G_i^T]
//   a_stack (2H' x H)  = [A_r ; A_i]

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
                           const T* a_cat,
                           const T* g_cat,
                           const SpectralCropShape& shape);

/// Given dy (planes x H' x W'):
///   dx = A_r^T dy G_r^T + A_i^T dy G_i^T          when `dx` is not null;
///   da_stack (2H' x H) = [dA_r ; dA_i], dA_c = sum over planes of
///       dy G_c^T x^T,                             when `da_stack` is not null;
///   dg_stack (2W x W') = [dG_r ; dG_i], dG_c = sum over planes of
///       x^T A_c^T dy,                             when `dg_stack` is not null.
/// `da_stack` and `dg_stack` are both given or both null.
template <typename T>
void spectral_crop_backward(const T* x,
                            const T* dy,
                            const T* a_cat_t,
                            const T* g_cat_t,
                            const T* a_stack,
                            T* dx,
                            T* da_stack,
                            T* dg_stack,
                            const SpectralCropShape& shape);

}  // namespace cpu
}  // namespace diffstride
