// Batches per second of the data pipeline (src/batches.cpp) on a
// CIFAR-sized dataset in memory (50,000 random 3x32x32 images), with the
// recipe's mixup (alpha 0.2) and label smoothing plus augmentation: one
// thread making batches directly, and through the background prefetcher as
// the training loop consumes them. Compare with the seconds per training
// step of `diffstride bench` (BENCHMARKS.md). Then an image folder of
// JPEG files (256 x 192 photographs' size class, written once to a temporary
// folder): batches of 64 examples of 64 x 64 with random-resized crops,
// decoded by 1 and by 2 threads.
//
//   build/bench/bench_data --benchmark_min_time=1

#include <diffstride/data/batches.h>
#include <diffstride/data/image_folder.h>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#ifdef DIFFSTRIDE_HAVE_FOLDERS
#include <jpeglib.h>
#include <unistd.h>
#include <cstdio>
#include <filesystem>
#endif

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

#ifdef DIFFSTRIDE_HAVE_FOLDERS
// A JPEG of smooth random colour fields (quality 90), as libjpeg writes it.
void write_jpeg(const std::string& path, int width, int height, int seed) {
  std::vector<uint8_t> pixels(static_cast<size_t>(width * height * 3));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        pixels[(y * width + x) * 3 + c] =
            static_cast<uint8_t>((x * (c + 1) + y * (3 - c) + seed * 37) % 256);
      }
    }
  }
  jpeg_compress_struct info;
  jpeg_error_mgr errors;
  info.err = jpeg_std_error(&errors);
  jpeg_create_compress(&info);
  FILE* file = std::fopen(path.c_str(), "wb");
  jpeg_stdio_dest(&info, file);
  info.image_width = width;
  info.image_height = height;
  info.input_components = 3;
  info.in_color_space = JCS_RGB;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, 90, TRUE);
  jpeg_start_compress(&info, TRUE);
  while (info.next_scanline < info.image_height) {
    JSAMPROW row = pixels.data() + info.next_scanline * width * 3;
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  std::fclose(file);
}

// 2 classes x 256 JPEG files of 256 x 192, written once per process.
const std::string& jpeg_folder() {
  static const std::string root = [] {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("diffstride_bench_jpeg_" + std::to_string(::getpid()));
    for (const char* split : {"train", "val"}) {
      for (int k = 0; k < 2; ++k) {
        const auto folder = dir / split / ("class" + std::to_string(k));
        std::filesystem::create_directories(folder);
        for (int i = 0; i < 256; ++i) {
          write_jpeg((folder / (std::to_string(i) + ".jpg")).string(),
                     256,
                     192,
                     i + 256 * k);
        }
      }
    }
    return dir.string();
  }();
  return root;
}

void BM_ImageFolderBatch(benchmark::State& state) {
  const auto data = diffstride::load_dataset(
      "image_folder",
      "train",
      jpeg_folder(),
      diffstride::FolderOptions().image_size(64).workers(state.range(0)));
  diffstride::BatchMaker maker(
      data,
      {{0.5, 0.5, 0.5}, {0.25, 0.25, 0.25}},
      diffstride::BatchOptions().batch_size(64).seed(1));
  const auto order = maker.epoch_order(0);
  int64_t index = 0;
  for (auto _ : state) {
    auto batch = maker.make_batch(order, 0, index);
    benchmark::DoNotOptimize(batch.images.data_ptr());
    index = (index + 1) % maker.batches_per_epoch();
  }
  state.SetItemsProcessed(state.iterations() * 64);  // images
  state.counters["images_per_s_per_thread"] =
      benchmark::Counter(static_cast<double>(state.iterations() * 64) /
                             static_cast<double>(state.range(0)),
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ImageFolderBatch)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

#endif  // DIFFSTRIDE_HAVE_FOLDERS

}  // namespace
