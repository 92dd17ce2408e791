// Batches per second of the data pipeline (src/batches.cpp) on a
// CIFAR-sized dataset in memory (50,000 random 3x32x32 images), with the
// recipe's mixup (alpha 0.2) and label smoothing plus augmentation: one
// thread making batches directly, and through the background prefetcher as
// the training loop consumes them. Compare with the seconds per training
// step of `diffstride bench` (BENCHMARKS.md).
//
//   build/bench/bench_data --benchmark_min_time=1

#include <diffstride/data/batches.h>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace {

const diffstride::Dataset& cifar_sized() {
  static const diffstride::Dataset data = [] {
    diffstride::Dataset d;
    d.name = "random";
    d.images = torch::randint(256, {50000, 3, 32, 32}, torch::kByte);
    d.labels = torch::randint(10, {50000}, torch::kLong);
    d.num_classes = 10;
    return d;
  }();
  return data;
}

diffstride::BatchOptions recipe() {
  return diffstride::BatchOptions()
      .batch_size(128)
      .seed(1)
      .augment(true)
      .mixup_alpha(0.2)
      .label_smoothing(0.2);
}

void BM_MakeBatch(benchmark::State& state) {
  diffstride::BatchMaker maker(
      cifar_sized(), diffstride::dataset_normalization("cifar10"), recipe());
  const auto order = maker.epoch_order(0);
  int64_t index = 0;
  for (auto _ : state) {
    auto batch = maker.make_batch(order, 0, index);
    benchmark::DoNotOptimize(batch.images.data_ptr());
    index = (index + 1) % maker.batches_per_epoch();
  }
  state.SetItemsProcessed(state.iterations());  // batches
}
BENCHMARK(BM_MakeBatch)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PrefetchedEpoch(benchmark::State& state) {
  diffstride::BatchMaker maker(
      cifar_sized(), diffstride::dataset_normalization("cifar10"), recipe());
  int64_t batches = 0;
  for (auto _ : state) {
    diffstride::BatchPrefetcher prefetcher(maker, 0);
    while (auto batch = prefetcher.next()) {
      benchmark::DoNotOptimize(batch->images.data_ptr());
      ++batches;
    }
  }
  state.SetItemsProcessed(batches);
}
BENCHMARK(BM_PrefetchedEpoch)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
