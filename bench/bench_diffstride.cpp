// DiffStride forward+backward (gradients for the input and the strides, as in
// training) at the ResNet-18/CIFAR shapes, batch 128, float32: the library
// beside the plain FFT formulation (tests/support/plain_fft_reference.h).
//
//   build/bench/bench_diffstride --benchmark_min_time=1

#include <diffstride/diff_stride.h>

#include "support/plain_fft_reference.h"

#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace {

constexpr int64_t kBatch = 128;

// (channels, size) of the DiffStride layers of resnet18 on 32x32 inputs.
void resnet18_cifar_shapes(benchmark::internal::Benchmark* b) {
  for (const auto& [channels, size] : std::vector<std::pair<int64_t, int64_t>>{
           {64, 32}, {128, 32}, {256, 24}, {512, 18}}) {
    b->Args({channels, size});
  }
  b->ArgNames({"C", "HW"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

template <typename Pool>
void forward_backward(benchmark::State& state, Pool pool) {
  const int64_t channels = state.range(0);
  const int64_t size = state.range(1);
  torch::manual_seed(0);
  const auto x = torch::randn({kBatch, channels, size, size}).requires_grad_();
  const auto strides = torch::tensor({2.0f, 2.0f}).requires_grad_();
  const auto grad_output = torch::randn_like(pool(x, strides).detach());
  for (auto _ : state) {
    x.mutable_grad() = torch::Tensor();
    strides.mutable_grad() = torch::Tensor();
    pool(x, strides).backward(grad_output);
    benchmark::DoNotOptimize(strides.grad().data_ptr());
  }
  // Data the op must touch at least once: read x, write y (forward); read dy,
  // write dx (backward).
  const double bytes = 2.0 * (x.numel() + grad_output.numel()) * sizeof(float);
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

void BM_DiffStride(benchmark::State& state) {
  forward_backward(state, [](const torch::Tensor& x, const torch::Tensor& s) {
    return diffstride::functional::diffstride(x, s);
  });
}

void BM_PlainFft(benchmark::State& state) {
  forward_backward(state, [](const torch::Tensor& x, const torch::Tensor& s) {
    return diffstride_reference::diffstride(x, s, 4.0, true);
  });
}

}  // namespace

BENCHMARK(BM_DiffStride)->Apply(resnet18_cifar_shapes);
BENCHMARK(BM_PlainFft)->Apply(resnet18_cifar_shapes);
