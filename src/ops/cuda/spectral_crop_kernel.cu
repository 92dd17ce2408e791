// The CUDA kernels of diffstride::_spectral_crop and its backward
// (docs/layers.md, "On CUDA"). A persistent grid of blocks walks the planes a
// tile at a time, with both small matrices in shared memory: the forward
// reads each plane once and writes its output once; the backward likewise
// for the input gradient, and sums the two small-matrix gradients per block
// in a fixed order (each thread owns its entries), then over blocks in block
// order: no float atomics, so a launch shape gives one result. Planes too
// large for shared memory go to the generic kernels (cuBLAS products).

#include "ops/cuda/spectral_crop_planes.cuh"
#include "ops/generic/spectral_crop_kernel.h"
#include "ops/spectral_crop.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace diffstride {
namespace ops {
namespace cuda {

namespace {

constexpr int kMaxPlanesPerTile = 8;
// Tiles up to this size leave room for several blocks per multiprocessor;
// one plane larger than this gets a block of its own, up to the device's
// limit.
constexpr int64_t kTileBytes = 48 * 1024;

PlaneLayout layout_of(const at::Tensor& t) {
  return {t.size(1),
          t.stride(0),
          t.stride(1),
          t.stride(2),
          t.stride(3),
          t.stride(1) == 1 && t.stride(3) != 1};
}

CropSizes sizes_of(const at::Tensor& input,
                   const at::Tensor& row_matrix,
                   const at::Tensor& column_matrix) {
  return {static_cast<int>(input.size(2)),
          static_cast<int>(input.size(3)),
          static_cast<int>(row_matrix.size(0)),
          static_cast<int>(column_matrix.size(1) / 2),
          input.size(0) * input.size(1),
          1};
}

struct Launch {
  int blocks = 0;
  size_t shared_bytes = 0;
};

/// Planes per tile, blocks and shared memory for `kernel`; no blocks when
/// one plane does not fit the device's shared memory (the caller then takes
/// the generic path).
template <typename Kernel, typename Count>
Launch plan_launch(Kernel kernel,
                   const Count& shared_count,
                   size_t element_bytes,
                   CropSizes& s) {
  const auto* device = at::cuda::getCurrentDeviceProperties();
  const auto bytes = [&](int tile) {
    return static_cast<size_t>(shared_count(s, tile)) * element_bytes;
  };
  if (bytes(1) > device->sharedMemPerBlockOptin) {
    return {};
  }
  int tile = 1;
  while (tile < kMaxPlanesPerTile && tile < s.planes &&
         bytes(tile + 1) <= static_cast<size_t>(kTileBytes)) {
    ++tile;
  }
  s.planes_per_tile = tile;
  Launch launch;
  launch.shared_bytes = bytes(tile);
  // The device's limit, the same value on every call, so that calls from
  // several host threads never lower it under one another's launch.
  C10_CUDA_CHECK(
      cudaFuncSetAttribute(kernel,
                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(device->sharedMemPerBlockOptin)));
  int per_multiprocessor = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_multiprocessor, kernel, kThreads, launch.shared_bytes));
  const int64_t tiles = (s.planes + tile - 1) / tile;
  launch.blocks = static_cast<int>(std::min<int64_t>(
      tiles,
      int64_t{device->multiProcessorCount} * std::max(per_multiprocessor, 1)));
  return launch;
}

at::Tensor spectral_crop_cuda(const at::Tensor& input,
                              const at::Tensor& row_matrix,
                              const at::Tensor& column_matrix) {
  check_spectral_crop_arguments(
      input, row_matrix, column_matrix, "_spectral_crop");
  const c10::cuda::CUDAGuard guard(input.device());
  const auto rows = row_matrix.contiguous();
  const auto columns = column_matrix.contiguous();
  auto s = sizes_of(input, rows, columns);
  const auto format = input.suggest_memory_format();
  auto y = at::empty({input.size(0), input.size(1), s.out_height, s.out_width},
                     input.options().memory_format(format));
  if (s.planes == 0) {
    return y;
  }
  bool fused = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "_spectral_crop", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto kernel = spectral_crop_forward_kernel<scalar_t, acc_t>;
        const auto launch =
            plan_launch(kernel, forward_shared_count, sizeof(acc_t), s);
        fused = launch.blocks > 0;
        if (fused) {
          kernel<<<launch.blocks,
                   kThreads,
                   launch.shared_bytes,
                   at::cuda::getCurrentCUDAStream()>>>(
              input.data_ptr<scalar_t>(),
              layout_of(input),
              rows.data_ptr<acc_t>(),
              columns.data_ptr<acc_t>(),
              y.data_ptr<scalar_t>(),
              layout_of(y),
              s);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
  if (!fused) {
    return generic::spectral_crop_generic(input, rows, columns);
  }
  return y;
}

/// The fused backward into dx (or none) and, when d_rows is defined, the
/// matrices' gradients; false when the planes are too large for it.
bool fused_backward(const at::Tensor& dy,
                    const at::Tensor& x,
                    const at::Tensor& rows,
                    const at::Tensor& columns,
                    CropSizes s,
                    at::Tensor& dx,
                    at::Tensor& d_rows,
                    at::Tensor& d_columns) {
  bool fused = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf,
      at::kBFloat16,
      x.scalar_type(),
      "_spectral_crop_backward",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto kernel = spectral_crop_backward_kernel<scalar_t, acc_t>;
        const auto launch =
            plan_launch(kernel, backward_shared_count, sizeof(acc_t), s);
        fused = launch.blocks > 0;
        if (!fused) {
          return;
        }
        const int a_count = 2 * s.out_height * s.height;
        const int g_count = 2 * s.width * s.out_width;
        const bool matrices = d_rows.defined();
        at::Tensor partials;
        if (matrices) {
          partials =
              at::empty({launch.blocks, a_count + g_count}, rows.options());
        }
        const auto stream = at::cuda::getCurrentCUDAStream();
        kernel<<<launch.blocks, kThreads, launch.shared_bytes, stream>>>(
            dy.data_ptr<scalar_t>(),
            layout_of(dy),
            x.data_ptr<scalar_t>(),
            layout_of(x),
            rows.data_ptr<acc_t>(),
            columns.data_ptr<acc_t>(),
            dx.defined() ? dx.data_ptr<scalar_t>() : nullptr,
            dx.defined() ? layout_of(dx) : layout_of(x),
            matrices ? partials.data_ptr<acc_t>() : nullptr,
            matrices,
            s);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (matrices) {
          const int count = a_count + g_count;
          sum_partials_kernel<acc_t>
              <<<(count + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
                  partials.data_ptr<acc_t>(),
                  launch.blocks,
                  a_count,
                  g_count,
                  d_rows.data_ptr<acc_t>(),
                  d_columns.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
  return fused;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spectral_crop_backward_cuda(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const at::Tensor& row_matrix,
    const at::Tensor& column_matrix,
    std::array<bool, 3> output_mask) {
  check_spectral_crop_backward_arguments(
      grad_output, input, row_matrix, column_matrix);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto rows = row_matrix.contiguous();
  const auto columns = column_matrix.contiguous();
  const auto dy = grad_output.to(input.scalar_type());
  const auto s = sizes_of(input, rows, columns);
  // The fused kernel computes both matrices' gradients or neither.
  const bool matrices = output_mask[1] || output_mask[2];
  at::Tensor dx, d_rows, d_columns;
  if (!output_mask[0] && !matrices) {
    return {dx, d_rows, d_columns};
  }
  if (output_mask[0]) {
    dx = at::empty_like(input, input.suggest_memory_format());
  }
  if (matrices) {
    d_rows = at::zeros_like(rows);
    d_columns = at::zeros_like(columns);
  }
  if (s.planes > 0 &&
      !fused_backward(dy, input, rows, columns, s, dx, d_rows, d_columns)) {
    return generic::spectral_crop_backward_generic(
        dy, input, rows, columns, output_mask);
  }
  return {dx,
          output_mask[1] ? d_rows : at::Tensor(),
          output_mask[2] ? d_columns : at::Tensor()};
}

}  // namespace

}  // namespace cuda
}  // namespace ops
}  // namespace diffstride

TORCH_LIBRARY_IMPL(diffstride, CUDA, m) {
  m.impl("_spectral_crop", TORCH_FN(diffstride::ops::cuda::spectral_crop_cuda));
  m.impl("_spectral_crop_backward",
         TORCH_FN(diffstride::ops::cuda::spectral_crop_backward_cuda));
}
