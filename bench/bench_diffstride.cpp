// DiffStride and FixedSpectralPooling forward+backward (gradients for the
// input, and for DiffStride's strides, as in training) at the
// ResNet-18/CIFAR shapes, batch 128, float32: the library beside the plain
// FFT formulation (tests/support/plain_fft_reference.h), each shape's pair
// measured back to back. Then DiffStride1d on one second of 16 kHz audio
// (batch 64, 64 channels, stride 4) and DiffStride3d on short video clips
// (batch 8, 32 channels, 16 x 56 x 56, stride 2), each beside its plain
// formulation. On a machine with CUDA the same pairs run on the GPU too.
// First, the host time per call on one small plane.
//
//   build/bench/bench_diffstride --benchmark_min_time=1

#include <diffstride/nn/diff_stride.h>
#include <diffstride/nn/fixed_spectral_pooling.h>

#include "ops/spectral_crop.h"
#include "support/plain_fft_reference.h"

#include <benchmark/benchmark.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <array>
#include <string>
#include <tuple>
#include <vector>

namespace {

constexpr int64_t kBatch = 128;

using Pool = torch::Tensor (*)(const torch::Tensor&, const torch::Tensor&);

torch::Tensor library_diffstride(const torch::Tensor& x,
                                 const torch::Tensor& strides) {
  return diffstride::functional::diffstride(x, strides);
}

torch::Tensor plain_diffstride(const torch::Tensor& x,
                               const torch::Tensor& strides) {
  return diffstride_reference::diffstride(x, strides, 4.0, true);
}

torch::Tensor library_fixed(const torch::Tensor& x, const torch::Tensor&) {
  return diffstride::functional::fixed_spectral_pooling(
      x, diffstride::functional::FixedSpectralPoolingFuncOptions(2.0));
}

torch::Tensor plain_fixed(const torch::Tensor& x, const torch::Tensor&) {
  return diffstride_reference::fixed_spectral_pooling(x, 2.0, 2.0);
}

torch::Tensor plain_diffstride_nd(const torch::Tensor& x,
                                  const torch::Tensor& strides) {
  return diffstride_reference::diffstride_nd(x, strides, 4.0, true);
}

void forward_backward(benchmark::State& state,
                      Pool pool,
                      const std::vector<int64_t>& shape,
                      const std::vector<float>& stride_values,
                      torch::Device device) {
  torch::manual_seed(0);
  const auto x = torch::randn(shape, device).requires_grad_();
  const auto strides =
      torch::tensor(stride_values, torch::TensorOptions(device))
          .requires_grad_();
  const auto grad_output = torch::randn_like(pool(x, strides).detach());
  const auto sync = [&] {
    if (device.is_cuda()) {
      torch::cuda::synchronize();
    }
  };
  sync();
  for (auto _ : state) {
    x.mutable_grad() = torch::Tensor();
    strides.mutable_grad() = torch::Tensor();
    pool(x, strides).backward(grad_output);
    sync();
  }
  // Data the op must touch at least once: read x, write y (forward); read dy,
  // write dx (backward).
  const double bytes = 2.0 * (x.numel() + grad_output.numel()) * sizeof(float);
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

// For each (channels, size) of resnet18's DiffStride layers on 32x32
// inputs, the library and the plain formulation one after the other, so
// that the two figures of one ratio are measured minutes apart at most.
void register_pairs(const std::string& layer,
                    Pool library,
                    Pool plain,
                    torch::Device device) {
  const std::string suffix = device.is_cuda() ? "/cuda" : "";
  for (const auto& [channels, size] : std::vector<std::pair<int64_t, int64_t>>{
           {64, 32}, {128, 32}, {256, 24}, {512, 18}}) {
    for (const auto& [name, pool] :
         {std::make_pair("BM_" + layer + suffix, library),
          std::make_pair("BM_Plain" + layer + suffix, plain)}) {
      benchmark::RegisterBenchmark(
          name.c_str(),
          [pool = pool, device, channels = channels, size = size](
              benchmark::State& state) {
            forward_backward(
                state, pool, {kBatch, channels, size, size}, {2, 2}, device);
          })
          ->Args({channels, size})
          ->ArgNames({"C", "HW"})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
}

// DiffStride1d / DiffStride3d beside the plain N-D formulation.
void register_nd_pairs(torch::Device device) {
  const std::string suffix = device.is_cuda() ? "/cuda" : "";
  const std::vector<std::tuple<std::string, std::vector<int64_t>, float>>
      cases = {{"1d_audio", {64, 64, 16000}, 4.0f},
               {"3d_video", {8, 32, 16, 56, 56}, 2.0f}};
  for (const auto& [what, shape, stride] : cases) {
    const std::vector<float> strides(shape.size() - 2, stride);
    for (const auto& [name, pool] :
         {std::make_pair("BM_DiffStride" + what + suffix,
                         Pool(library_diffstride)),
          std::make_pair("BM_PlainDiffStride" + what + suffix,
                         Pool(plain_diffstride_nd))}) {
      benchmark::RegisterBenchmark(
          name.c_str(),
          [pool = pool, shape = shape, strides, device](
              benchmark::State& state) {
            forward_backward(state, pool, shape, strides, device);
          })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
}

// The machine's copy bandwidth, the yardstick for the bytes_per_second of
// the benchmarks above: copy_ of a float32 tensor of the largest input,
// counting the bytes read and written.
void BM_CopyBandwidth(benchmark::State& state) {
  const auto from = torch::randn({kBatch, 64, 32, 32});
  auto to = torch::empty_like(from);
  for (auto _ : state) {
    to.copy_(from);
    benchmark::DoNotOptimize(to.data_ptr());
  }
  state.SetBytesProcessed(static_cast<int64_t>(2 * from.nbytes()) *
                          state.iterations());
}
BENCHMARK(BM_CopyBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

// On CUDA, the spectral crop op alone (docs/layers.md, "On CUDA"): forward,
// then the backward of its three arguments, at the four shapes above with
// stride 2's crop, and the least data it must move: read x, write y; read dy
// and x, write dx. BM_DeviceCopy copies a tensor of x's size on the device
// (bytes read plus written) in the same run, the yardstick for that rate.
void spectral_crop_op(benchmark::State& state,
                      int64_t channels,
                      int64_t size,
                      torch::Dtype dtype) {
  torch::manual_seed(0);
  const auto options = torch::dtype(dtype).device(torch::kCUDA);
  const int64_t out = size / 2;
  const auto x = torch::randn({kBatch, channels, size, size}, options);
  const auto rows = torch::randn({out, 2 * size}, options);
  const auto columns = torch::randn({size, 2 * out}, options);
  const auto grad = torch::randn({kBatch, channels, out, out}, options);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        diffstride::ops::spectral_crop(x, rows, columns).data_ptr());
    benchmark::DoNotOptimize(
        std::get<0>(diffstride::ops::spectral_crop_backward(
                        grad, x, rows, columns, {true, true, true}))
            .data_ptr());
    torch::cuda::synchronize();
  }
  const double bytes =
      (3.0 * x.numel() + 2.0 * grad.numel()) * x.element_size();
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

void device_copy(benchmark::State& state, int64_t channels, int64_t size) {
  const auto from = torch::randn({kBatch, channels, size, size}, torch::kCUDA);
  auto to = torch::empty_like(from);
  for (auto _ : state) {
    to.copy_(from);
    torch::cuda::synchronize();
  }
  state.SetBytesProcessed(static_cast<int64_t>(2 * from.nbytes()) *
                          state.iterations());
}

void register_cuda_op() {
  for (const auto& [channels, size] : std::vector<std::pair<int64_t, int64_t>>{
           {64, 32}, {128, 32}, {256, 24}, {512, 18}}) {
    for (const auto dtype : {torch::kFloat, torch::kDouble}) {
      const std::string name = std::string("BM_SpectralCropOp/cuda/") +
                               (dtype == torch::kFloat ? "float32" : "float64");
      benchmark::RegisterBenchmark(
          name.c_str(),
          [channels = channels, size = size, dtype](benchmark::State& state) {
            spectral_crop_op(state, channels, size, dtype);
          })
          ->Args({channels, size})
          ->ArgNames({"C", "HW"})
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
    benchmark::RegisterBenchmark(
        "BM_DeviceCopy/cuda",
        [channels = channels, size = size](benchmark::State& state) {
          device_copy(state, channels, size);
        })
        ->Args({channels, size})
        ->ArgNames({"C", "HW"})
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
}

// Host time per call: forward+backward on one 32 x 32 (or 18 x 18) plane,
// where the data-sized work is negligible and what remains is the work of
// building the small matrices, the autograd graph, and the stride gradient.
void register_host_time() {
  for (const int64_t size : {32, 18}) {
    for (const auto& [name, pool] :
         {std::make_pair(std::string("BM_DiffStrideHostTime"),
                         &library_diffstride),
          std::make_pair(std::string("BM_PlainDiffStrideHostTime"),
                         &plain_diffstride)}) {
      benchmark::RegisterBenchmark(
          name.c_str(),
          [pool = pool, size](benchmark::State& state) {
            forward_backward(
                state, pool, {1, 1, size, size}, {2, 2}, torch::kCPU);
          })
          ->Arg(size)
          ->ArgName("HW")
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
}

const bool registered = [] {
  register_host_time();
  std::vector<torch::Device> devices = {torch::kCPU};
  if (torch::cuda::is_available()) {
    devices.emplace_back(torch::kCUDA);
    register_cuda_op();
  }
  for (const auto& device : devices) {
    register_pairs("DiffStride", library_diffstride, plain_diffstride, device);
    register_pairs("FixedSpectral", library_fixed, plain_fixed, device);
    register_nd_pairs(device);
  }
  return true;
}();

}  // namespace
