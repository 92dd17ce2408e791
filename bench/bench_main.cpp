// Google Benchmark entry point: LibTorch starts with one intra-op thread
// here; benchmarks use every core unless DIFFSTRIDE_THREADS says otherwise.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <thread>

int main(int argc, char** argv) {
  int threads =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (const char* env = std::getenv("DIFFSTRIDE_THREADS")) {
    threads = std::max(1, std::atoi(env));
  }
  torch::set_num_threads(threads);
  benchmark::AddCustomContext("torch_threads", std::to_string(threads));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
