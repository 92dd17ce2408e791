// DiffStride and FixedSpectralPooling forward+backward (gradients for the
// input, and for DiffStride's strides, as in training) at the
// ResNet-18/CIFAR shapes, batch 128, float32: the library beside the plain
// FFT formulation (tests/support/plain_fft_reference.h), each shape's pair
// measured back to back. On a machine with CUDA the same pairs run on the
// GPU too.
//
//   build/bench/bench_diffstride --benchmark_min_time=1

#include <diffstride/nn/diff_stride.h>
#include <diffstride/nn/fixed_spectral_pooling.h>

#include "support/plain_fft_reference.h"

#include <benchmark/benchmark.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <string>

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

void forward_backward(benchmark::State& state,
                      Pool pool,
                      torch::Device device) {
  const int64_t channels = state.range(0);
  const int64_t size = state.range(1);
  torch::manual_seed(0);
  const auto x =
      torch::randn({kBatch, channels, size, size}, device).requires_grad_();
  const auto strides = torch::tensor({2.0f, 2.0f}, torch::TensorOptions(device))
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
          [pool = pool, device](benchmark::State& state) {
            forward_backward(state, pool, device);
          })
          ->Args({channels, size})
          ->ArgNames({"C", "HW"})
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

const bool registered = [] {
  std::vector<torch::Device> devices = {torch::kCPU};
  if (torch::cuda::is_available()) {
    devices.emplace_back(torch::kCUDA);
  }
  for (const auto& device : devices) {
    register_pairs("DiffStride", library_diffstride, plain_diffstride, device);
    register_pairs("FixedSpectral", library_fixed, plain_fixed, device);
  }
  return true;
}();

}  // namespace
