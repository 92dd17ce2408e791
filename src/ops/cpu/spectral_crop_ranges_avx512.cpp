// The CPU spectral crop's passes compiled for the avx512 instruction set (the
// flags are set on this file in CMakeLists.txt).
#include "spectral_crop_ranges_impl.h"

DIFFSTRIDE_DEFINE_RANGES(avx512)
