// Dataset loaders (CIFAR-10/100 binary, IDX plain and gzip) on files the
// tests write, their errors on missing, truncated and corrupt files, and the
// batches (normalisation, shuffling, augmentation, mixup, label smoothing).

#include <diffstride/data/batches.h>
#include <diffstride/data/cifar.h>
#include <diffstride/data/dataset.h>
#include <diffstride/data/device_batches.h>
#include <diffstride/data/idx.h>

#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "data/random_draws.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>

namespace fs = std::filesystem;
using diffstride_test::expect_error_containing;
using diffstride_test::idx_bytes;
using diffstride_test::write_file;

namespace {

std::vector<uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_gzip(const fs::path& path, const std::vector<uint8_t>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(file);
}

// Pixel (c, y, x) of CIFAR image `id`, as the tests write it.
uint8_t cifar_pixel(int64_t id, int64_t c, int64_t y, int64_t x) {
  return static_cast<uint8_t>((id * 7 + c * 50 + y * 3 + x) % 256);
}

// One CIFAR record: label bytes, then 1024 red, 1024 green, 1024 blue.
void append_record(std::vector<uint8_t>& bytes,
                   std::vector<uint8_t> labels,
                   int64_t id) {
  bytes.insert(bytes.end(), labels.begin(), labels.end());
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 32; ++x)
        bytes.push_back(cifar_pixel(id, c, y, x));
}

// CIFAR-10 files of `records` records each in `dir`; record r of file f has
// id f * records + r and label id % 10.
void write_cifar10(const fs::path& dir, int64_t records) {
  fs::create_directories(dir);
  const std::vector<std::string> files = {"data_batch_1.bin",
                                          "data_batch_2.bin",
                                          "data_batch_3.bin",
                                          "data_batch_4.bin",
                                          "data_batch_5.bin",
                                          "test_batch.bin"};
  for (size_t f = 0; f < files.size(); ++f) {
    std::vector<uint8_t> bytes;
    for (int64_t r = 0; r < records; ++r) {
      const int64_t id = static_cast<int64_t>(f) * records + r;
      append_record(bytes, {static_cast<uint8_t>(id % 10)}, id);
    }
    write_file(dir / files[f], bytes);
  }
}

}  // namespace

TEST(CifarLoader, Cifar10PixelOrderLabelsAndCounts) {
  const auto dir = diffstride_test::scratch_folder("cifar10");
  write_cifar10(dir / "cifar-10-batches-bin", 3);
  const auto train = diffstride::load_cifar10(dir.string(), true, 3);
  ASSERT_EQ(train.images.sizes(), torch::IntArrayRef({15, 3, 32, 32}));
  EXPECT_EQ(train.num_classes, 10);
  for (const int64_t id : {0, 4, 14}) {
    EXPECT_EQ(train.labels[id].item<int64_t>(), id % 10);
    for (const auto& [c, y, x] : std::vector<std::array<int64_t, 3>>{
             {0, 0, 0}, {0, 1, 2}, {1, 0, 0}, {2, 31, 30}}) {
      EXPECT_EQ(train.images[id][c][y][x].item<int64_t>(),
                cifar_pixel(id, c, y, x))
          << "id " << id << " c " << c << " y " << y << " x " << x;
    }
  }
  // The folder itself works too.
  const auto test = diffstride::load_cifar10(
      (dir / "cifar-10-batches-bin").string(), false, 3);
  ASSERT_EQ(test.images.size(0), 3);
  EXPECT_EQ(test.labels[2].item<int64_t>(), (15 + 2) % 10);
  EXPECT_EQ(test.images[2][1][5][6].item<int64_t>(), cifar_pixel(17, 1, 5, 6));
}

TEST(CifarLoader, Cifar100FineAndCoarseLabels) {
  const auto dir = diffstride_test::scratch_folder("cifar100");
  std::vector<uint8_t> train, test;
  for (int64_t id = 0; id < 4; ++id)
    append_record(train,
                  {static_cast<uint8_t>(id * 5), static_cast<uint8_t>(id * 30)},
                  id);
  append_record(test, {19, 99}, 9);
  write_file(dir / "train.bin", train);
  write_file(dir / "test.bin", test);
  const auto data = diffstride::load_cifar100(dir.string(), true, 4, 1);
  EXPECT_EQ(data.num_classes, 100);
  EXPECT_TRUE(
      torch::equal(data.labels, torch::tensor({0, 30, 60, 90}, torch::kLong)));
  EXPECT_TRUE(torch::equal(data.coarse_labels,
                           torch::tensor({0, 5, 10, 15}, torch::kLong)));
  EXPECT_EQ(data.images[3][2][4][4].item<int64_t>(), cifar_pixel(3, 2, 4, 4));
  const auto held_out = diffstride::load_cifar100(dir.string(), false, 4, 1);
  EXPECT_EQ(held_out.labels[0].item<int64_t>(), 99);
  // Labels out of range.
  std::vector<uint8_t> bad;
  append_record(bad, {3, 100}, 0);
  write_file(dir / "test.bin", bad);
  expect_error_containing(
      [&] { diffstride::load_cifar100(dir.string(), false, 4, 1); },
      "has fine label 100, out of range: expected below 100");
  bad.clear();
  append_record(bad, {20, 1}, 0);
  write_file(dir / "test.bin", bad);
  expect_error_containing(
      [&] { diffstride::load_cifar100(dir.string(), false, 4, 1); },
      "has coarse label 20, out of range: expected below 20");
}

TEST(CifarLoader, MissingTruncatedAndBadFilesNameTheProblem) {
  const auto dir = diffstride_test::scratch_folder("cifar_bad");
  expect_error_containing(
      [&] { diffstride::load_cifar10((dir / "nowhere").string(), true, 3); },
      "nowhere not found; CIFAR-10 needs the binary version");
  expect_error_containing(
      [&] { diffstride::load_cifar10(dir.string(), true, 3); },
      "data_batch_1.bin\" not found");
  expect_error_containing(
      [&] { diffstride::load_cifar100(dir.string(), true); },
      "train.bin\" not found; CIFAR-100 needs the binary version");
  write_cifar10(dir, 3);
  fs::remove(dir / "data_batch_4.bin");
  expect_error_containing(
      [&] { diffstride::load_cifar10(dir.string(), true, 3); },
      "data_batch_4.bin\" not found; CIFAR-10 needs the binary version");
  // Randomly truncated and extended files.
  write_cifar10(dir, 3);
  const auto full = read_file(dir / "data_batch_2.bin");
  std::mt19937 rng(5);
  for (int trial = 0; trial < 10; ++trial) {
    auto cut = full;
    cut.resize(std::uniform_int_distribution<size_t>(0, full.size() - 1)(rng));
    write_file(dir / "data_batch_2.bin", cut);
    expect_error_containing(
        [&] { diffstride::load_cifar10(dir.string(), true, 3); },
        "data_batch_2.bin\": expected 3 records of 3073 bytes");
  }
  auto longer = full;
  longer.push_back(0);
  write_file(dir / "data_batch_2.bin", longer);
  expect_error_containing(
      [&] { diffstride::load_cifar10(dir.string(), true, 3); },
      "= 9219 bytes, got 9220 bytes");
  // A label byte corrupted out of range.
  auto corrupt = full;
  corrupt[3073] = 200;
  write_file(dir / "data_batch_2.bin", corrupt);
  expect_error_containing(
      [&] { diffstride::load_cifar10(dir.string(), true, 3); },
      "has label 200, out of range: expected below 10");
}

TEST(IdxLoader, PlainAndGzipReadTheSameValues) {
  const auto dir = diffstride_test::scratch_folder("idx");
  std::vector<uint8_t> pixels(5 * 4 * 3);
  for (size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = static_cast<uint8_t>(i * 11);
  const auto images = idx_bytes(0x803, {5, 4, 3}, pixels);
  const auto labels = idx_bytes(0x801, {5}, {3, 1, 4, 1, 5});
  write_file(dir / "images", images);
  write_gzip(dir / "images.gz", images);
  write_gzip(dir / "labels.gz", labels);
  const auto plain = diffstride::read_idx((dir / "images").string());
  const auto gzip = diffstride::read_idx((dir / "images.gz").string());
  ASSERT_EQ(plain.sizes(), torch::IntArrayRef({5, 4, 3}));
  EXPECT_TRUE(torch::equal(plain, gzip));
  EXPECT_EQ(plain[2][1][2].item<int64_t>(), (2 * 12 + 1 * 3 + 2) * 11 % 256);
  const auto data = diffstride::load_idx_dataset(
      "digits", (dir / "images.gz").string(), (dir / "labels.gz").string(), 6);
  EXPECT_EQ(data.images.sizes(), torch::IntArrayRef({5, 1, 4, 3}));
  EXPECT_TRUE(
      torch::equal(data.labels, torch::tensor({3, 1, 4, 1, 5}, torch::kLong)));
  expect_error_containing(
      [&] {
        diffstride::load_idx_dataset("digits",
                                     (dir / "images.gz").string(),
                                     (dir / "labels.gz").string(),
                                     5);
      },
      "labels.gz: label 5 out of range: expected labels below 5");
  write_gzip(dir / "labels4.gz", idx_bytes(0x801, {4}, {1, 2, 3, 4}));
  expect_error_containing(
      [&] {
        diffstride::load_idx_dataset("digits",
                                     (dir / "images.gz").string(),
                                     (dir / "labels4.gz").string(),
                                     10);
      },
      "holds 5 images but");
}

TEST(IdxLoader, BadMagicTruncatedAndCorruptFilesNameTheProblem) {
  const auto dir = diffstride_test::scratch_folder("idx_bad");
  std::vector<uint8_t> pixels(6 * 5 * 5, 7);
  const auto images = idx_bytes(0x803, {6, 5, 5}, pixels);
  expect_error_containing(
      [&] { diffstride::read_idx((dir / "missing").string()); },
      "missing: cannot open the file");
  auto magic = images;
  magic[2] = 0x09;
  write_file(dir / "magic", magic);
  expect_error_containing(
      [&] { diffstride::read_idx((dir / "magic").string()); },
      "magic: bad IDX magic number 0x903");
  write_file(dir / "labels_as_images", idx_bytes(0x801, {3}, {1, 2, 3}));
  write_file(dir / "labels_ok", idx_bytes(0x801, {6}, {1, 2, 3, 1, 2, 3}));
  write_file(dir / "images_ok", images);
  expect_error_containing(
      [&] {
        diffstride::load_idx_dataset("x",
                                     (dir / "labels_as_images").string(),
                                     (dir / "labels_ok").string(),
                                     10);
      },
      "bad IDX magic number 0x801, expected 0x00000803");
  std::mt19937 rng(9);
  for (int trial = 0; trial < 10; ++trial) {
    auto cut = images;
    cut.resize(
        std::uniform_int_distribution<size_t>(0, images.size() - 1)(rng));
    write_file(dir / "cut", cut);
    write_gzip(dir / "cut.gz", cut);
    for (const auto* name : {"cut", "cut.gz"}) {
      try {
        diffstride::read_idx((dir / name).string());
        ADD_FAILURE() << "a file cut to " << cut.size()
                      << " bytes was accepted";
      } catch (const c10::Error& error) {
        const std::string message = error.what_without_backtrace();
        EXPECT_NE(message.find(name), std::string::npos) << message;
      }
    }
  }
  // A gzip file cut short, and corrupted in its compressed body.
  write_gzip(dir / "whole.gz", images);
  const auto compressed = read_file(dir / "whole.gz");
  auto short_gz = compressed;
  short_gz.resize(compressed.size() - 5);
  write_file(dir / "short.gz", short_gz);
  expect_error_containing(
      [&] { diffstride::read_idx((dir / "short.gz").string()); },
      "short.gz: corrupt or truncated gzip data");
  for (int trial = 0; trial < 10; ++trial) {
    auto corrupt = compressed;
    const size_t at =
        std::uniform_int_distribution<size_t>(10, compressed.size() - 1)(rng);
    corrupt[at] ^= static_cast<uint8_t>(1 + rng() % 255);
    write_file(dir / "corrupt.gz", corrupt);
    EXPECT_THROW(diffstride::read_idx((dir / "corrupt.gz").string()),
                 c10::Error)
        << "byte " << at << " corrupted";
  }
}

TEST(FashionMnist, DebianPackageLoadsWithTheExpectedCounts) {
  if (!fs::exists(diffstride::default_data_dir("fashion_mnist"))) {
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  }
  const auto test = diffstride::load_dataset("fashion_mnist", "test");
  EXPECT_EQ(test.images.sizes(), torch::IntArrayRef({10000, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(torch::bincount(test.labels),
                           torch::full({10}, 1000, torch::kLong)));
  expect_error_containing([] { diffstride::load_dataset("mnist", "test"); },
                          "unknown dataset 'mnist': expected one of cifar10, "
                          "cifar100, fashion_mnist");
}

namespace {

// 10 images of 2 x 4 x 4 with distinct pixels, labels 0, 1, 2, 0, 1, ...
diffstride::Dataset tiny_dataset() {
  diffstride::Dataset data;
  data.name = "tiny";
  data.images = torch::arange(10 * 2 * 16, torch::kLong)
                    .remainder(251)
                    .to(torch::kByte)
                    .view({10, 2, 4, 4});
  data.labels = torch::arange(10, torch::kLong).remainder(3);
  data.num_classes = 3;
  return data;
}

const diffstride::Normalization kTinyNormalization{{0.5, 0.25}, {0.2, 0.4}};

// The normalised image `id` of the tiny dataset, computed here.
torch::Tensor normalised(const diffstride::Dataset& data, int64_t id) {
  const auto mean = torch::tensor({0.5, 0.25}, torch::kDouble).view({2, 1, 1});
  const auto std = torch::tensor({0.2, 0.4}, torch::kDouble).view({2, 1, 1});
  return (data.images[id].to(torch::kDouble) / 255.0 - mean) / std;
}

}  // namespace

TEST(Batches, NormalisedImagesOneHotTargetsAndPartialBatches) {
  const auto data = tiny_dataset();
  diffstride::BatchMaker keep(
      data,
      kTinyNormalization,
      diffstride::BatchOptions().batch_size(4).shuffle(false).drop_last(false));
  EXPECT_EQ(keep.batches_per_epoch(), 3);
  const auto order = keep.epoch_order(0);
  const auto last = keep.make_batch(order, 0, 2);
  ASSERT_EQ(last.images.size(0), 2);  // examples 8 and 9
  EXPECT_LE(
      diffstride_test::relative_error(last.images[1], normalised(data, 9)),
      1e-6);
  EXPECT_TRUE(torch::equal(last.labels, torch::tensor({2, 0}, torch::kLong)));
  EXPECT_TRUE(torch::equal(last.targets,
                           torch::tensor({{0.f, 0.f, 1.f}, {1.f, 0.f, 0.f}})));
  diffstride::BatchMaker drop(
      data, kTinyNormalization, diffstride::BatchOptions().batch_size(4));
  EXPECT_EQ(drop.batches_per_epoch(), 2);
  expect_error_containing([&] { drop.make_batch(drop.epoch_order(0), 0, 2); },
                          "batch 2 is past the end of the epoch");
}

TEST(Batches, ShufflingIsSeededPerEpochAndDeterministic) {
  const auto data = tiny_dataset();
  const auto options = diffstride::BatchOptions()
                           .batch_size(3)
                           .seed(42)
                           .augment(true)
                           .mixup_alpha(0.4);
  diffstride::BatchMaker a(data, kTinyNormalization, options),
      b(data, kTinyNormalization, options);
  const auto order0 = a.epoch_order(0), order1 = a.epoch_order(1);
  EXPECT_EQ(order0, b.epoch_order(0));
  EXPECT_NE(order0, order1);
  auto sorted = order1;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 10; ++i)
    EXPECT_EQ(sorted[i], i);
  EXPECT_NE(order0,
            diffstride::BatchMaker(
                data, kTinyNormalization, diffstride::BatchOptions().seed(43))
                .epoch_order(0));
  // Same batch from two makers, and made out of order.
  const auto second = a.make_batch(order1, 1, 0);
  const auto first = b.make_batch(order1, 1, 0);
  EXPECT_TRUE(torch::equal(first.images, second.images));
  EXPECT_TRUE(torch::equal(first.targets, second.targets));
}

TEST(Batches, MixupMergesConsecutivePairsAndLabelSmoothingSpreadsMass) {
  const auto data = tiny_dataset();
  diffstride::BatchMaker maker(data,
                               kTinyNormalization,
                               diffstride::BatchOptions()
                                   .batch_size(5)
                                   .shuffle(false)
                                   .mixup_alpha(0.2)
                                   .label_smoothing(0.3));
  EXPECT_EQ(maker.batches_per_epoch(), 1);  // 10 examples -> 5 pairs
  const auto batch = maker.make_batch(maker.epoch_order(0), 0, 0);
  ASSERT_EQ(batch.images.size(0), 5);
  int mixed = 0;
  for (int64_t e = 0; e < 5; ++e) {
    const int64_t a = 2 * e, b = 2 * e + 1;
    const int64_t la = a % 3, lb = b % 3;  // different: consecutive ids
    // Undo the smoothing: y = onehot_mix * 0.7 + 0.1.
    const auto mix = (batch.targets[e].to(torch::kDouble) - 0.1) / 0.7;
    const double lambda = mix[la].item<double>();
    EXPECT_NEAR(mix[lb].item<double>(), 1.0 - lambda, 1e-6);
    EXPECT_NEAR(mix.sum().item<double>(), 1.0, 1e-6);
    EXPECT_NEAR(batch.targets[e].sum().item<double>(), 1.0, 1e-6);
    const auto expected =
        lambda * normalised(data, a) + (1 - lambda) * normalised(data, b);
    EXPECT_LE(diffstride_test::relative_error(batch.images[e], expected), 1e-5);
    EXPECT_EQ(batch.labels[e].item<int64_t>(), lambda >= 0.5 ? la : lb);
    mixed += lambda > 0.01 && lambda < 0.99;
  }
  EXPECT_GT(mixed, 0);
}

// Mixup's Beta(alpha, alpha) draws for alphas from 0.001 (where the Gamma
// draws underflow to 0) up: every draw in [0, 1], and sample mean and
// variance within a few standard errors of 1/2 and 1 / (4 (2 alpha + 1)).
TEST(Batches, MixupBetaDrawsHaveTheDistributionsMeanAndVariance) {
  for (const double alpha : {0.001, 0.05, 0.2, 1.0, 4.0}) {
    SCOPED_TRACE(alpha);
    diffstride::detail::SplitMix64 rng{42};
    constexpr int kDraws = 200000;
    double sum = 0, sum_squares = 0;
    int outside = 0;
    for (int i = 0; i < kDraws; ++i) {
      const double x = diffstride::detail::beta_draw(rng, alpha);
      outside += !(x >= 0 && x <= 1);
      sum += x;
      sum_squares += x * x;
    }
    EXPECT_EQ(outside, 0);
    const double mean = sum / kDraws;
    const double variance = sum_squares / kDraws - mean * mean;
    const double expected_variance = 1.0 / (4.0 * (2.0 * alpha + 1.0));
    // Standard errors: sqrt(var / n) <= 1.2e-3 for the mean; the variance's
    // below 0.25 / sqrt(n) = 5.6e-4.
    EXPECT_NEAR(mean, 0.5, 5e-3);
    EXPECT_NEAR(variance, expected_variance, 3e-3);
  }
}

TEST(Batches, AugmentationIsAShiftWithinTwoPixelsAndAnOptionalFlip) {
  const auto data = tiny_dataset();
  diffstride::BatchMaker maker(
      data,
      kTinyNormalization,
      diffstride::BatchOptions().batch_size(10).shuffle(false).augment(true));
  int changed = 0;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto batch = maker.make_batch(maker.epoch_order(epoch), epoch, 0);
    for (int64_t id = 0; id < 10; ++id) {
      // Every candidate: zero-pad the raw image by 2, crop at (dy, dx), flip.
      const auto raw = torch::constant_pad_nd(
          data.images[id].to(torch::kDouble), {2, 2, 2, 2});
      bool found = false;
      for (int64_t dy = 0; dy <= 4 && !found; ++dy) {
        for (int64_t dx = 0; dx <= 4 && !found; ++dx) {
          for (const bool flip : {false, true}) {
            auto crop = raw.slice(1, dy, dy + 4);
            crop = flip ? crop.flip({2}).slice(2, 4 - dx, 8 - dx)
                        : crop.slice(2, dx, dx + 4);
            const auto mean =
                torch::tensor({0.5, 0.25}, torch::kDouble).view({2, 1, 1});
            const auto std =
                torch::tensor({0.2, 0.4}, torch::kDouble).view({2, 1, 1});
            if (diffstride_test::relative_error(
                    batch.images[id], (crop / 255.0 - mean) / std) < 1e-5) {
              found = true;
              changed += dy != 2 || dx != 2 || flip;
              break;
            }
          }
        }
      }
      EXPECT_TRUE(found) << "epoch " << epoch << " image " << id;
    }
  }
  EXPECT_GT(changed, 10);
}

TEST(Batches, PrefetcherYieldsTheSameBatchesInOrderAndResumes) {
  const auto data = tiny_dataset();
  diffstride::BatchMaker maker(
      data,
      kTinyNormalization,
      diffstride::BatchOptions().batch_size(2).seed(3).augment(true));
  const auto order = maker.epoch_order(4);
  diffstride::BatchPrefetcher all(maker, 4);
  for (int64_t b = 0; b < maker.batches_per_epoch(); ++b) {
    const auto batch = all.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_TRUE(
        torch::equal(batch->images, maker.make_batch(order, 4, b).images))
        << b;
  }
  EXPECT_FALSE(all.next().has_value());
  diffstride::BatchPrefetcher resumed(maker, 4, 3);
  EXPECT_TRUE(torch::equal(resumed.next()->images,
                           maker.make_batch(order, 4, 3).images));
  // Destroyed with batches still queued: must not hang.
  { diffstride::BatchPrefetcher abandoned(maker, 5, 0, 1); }
}

namespace {

// Every batch of `batches` against the maker's own batch of epoch `epoch`
// (mixup and augmentation on, so the copies carry every field), on
// `device` with channels_last images, and then the end.
void expect_device_batches_equal_the_made_ones(
    diffstride::DeviceBatches& batches,
    const diffstride::BatchMaker& maker,
    int64_t epoch,
    const torch::Device& device) {
  const auto order = maker.epoch_order(epoch);
  for (int64_t b = 0; b < maker.batches_per_epoch(); ++b) {
    const auto batch = batches.next();
    ASSERT_TRUE(batch.has_value()) << b;
    const auto made = maker.make_batch(order, epoch, b);
    EXPECT_EQ(batch->images.device(), device);
    EXPECT_TRUE(batch->images.is_contiguous(at::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(torch::equal(batch->images.cpu(), made.images)) << b;
    EXPECT_TRUE(torch::equal(batch->targets.cpu(), made.targets)) << b;
    EXPECT_TRUE(torch::equal(batch->labels.cpu(), made.labels)) << b;
  }
  EXPECT_FALSE(batches.next().has_value());
}

// A 1 x 2 x 2 example reader that fails at example `broken`.
class FailingReader : public diffstride::ExampleReader {
 public:
  explicit FailingReader(int64_t broken) : broken_(broken) {}
  std::vector<int64_t> example_shape() const override {
    return {1, 2, 2};
  }
  int64_t read(int64_t index, uint64_t, float* out) const override {
    TORCH_CHECK(index != broken_, "example ", index, " is broken");
    std::fill(out, out + 4, static_cast<float>(index));
    return index;
  }
  double full_scale() const override {
    return 1.0;
  }
  int64_t workers() const override {
    return 1;
  }
  int64_t skipped_files() const override {
    return 0;
  }

 private:
  int64_t broken_;
};

diffstride::BatchMaker mixing_maker(const diffstride::Dataset& data) {
  return diffstride::BatchMaker(data,
                                kTinyNormalization,
                                diffstride::BatchOptions()
                                    .batch_size(2)
                                    .seed(5)
                                    .augment(true)
                                    .mixup_alpha(0.4)
                                    .label_smoothing(0.1));
}

}  // namespace

TEST(DeviceBatches, OnTheCpuPassTheBatchesInOrderInTheAskedFormat) {
  const auto data = tiny_dataset();
  const auto maker = mixing_maker(data);
  diffstride::DeviceBatches batches(
      maker, 2, 0, torch::kCPU, at::MemoryFormat::ChannelsLast);
  expect_device_batches_equal_the_made_ones(batches, maker, 2, torch::kCPU);
}

// Images of 3 x 1024 x 1024 (12 MiB each in float32): each batch's copy
// takes milliseconds, and the test's step stream reads every batch as soon
// as it has it, with nothing else queued before: without the wait on the
// copy's event it would read batches still being written.
TEST(DeviceBatches, OnCudaArriveFromPinnedMemoryThroughASideStream) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  diffstride::Dataset data;
  data.name = "large";
  data.images = torch::randint(0, 256, {16, 3, 1024, 1024}, torch::kByte);
  data.labels = torch::arange(16, torch::kLong).remainder(3);
  data.num_classes = 3;
  const diffstride::BatchMaker maker(data,
                                     {{0.5, 0.25, 0.1}, {0.2, 0.4, 0.3}},
                                     diffstride::BatchOptions()
                                         .batch_size(4)
                                         .seed(5)
                                         .augment(true)
                                         .label_smoothing(0.1));
  const torch::Device cuda(torch::kCUDA, 0);
  {
    diffstride::BatchPrefetcher pinned(maker, 0, 0, 1, /*pin_memory=*/true);
    const auto batch = pinned.next();
    EXPECT_TRUE(batch->images.is_pinned() && batch->targets.is_pinned() &&
                batch->labels.is_pinned());
  }
  // The step runs on a stream of its own, not the default stream.
  c10::impl::VirtualGuardImpl cuda_guard(torch::kCUDA);
  c10::StreamGuard step_stream(cuda_guard.getStreamFromGlobalPool(cuda));
  for (const size_t in_flight : {1, 2, 4}) {
    diffstride::DeviceBatches batches(
        maker, 1, 0, cuda, at::MemoryFormat::ChannelsLast, in_flight);
    expect_device_batches_equal_the_made_ones(batches, maker, 1, cuda);
  }
}

TEST(DeviceBatches, ASourceErrorComesAfterTheBatchesBeforeIt) {
  // A file reader that fails at its fourth example: batch 1 of 2-example
  // batches in dataset order, on the CPU and, where there is one, on CUDA
  // with batches copied ahead.
  std::vector<torch::Device> devices = {torch::kCPU};
  if (torch::cuda::is_available()) {
    devices.emplace_back(torch::kCUDA, 0);
  }
  for (const auto& device : devices) {
    diffstride::Dataset data;
    data.reader = std::make_shared<FailingReader>(3);
    data.labels = torch::zeros({8}, torch::kLong);
    data.num_classes = 2;
    const diffstride::BatchMaker maker(
        data,
        {{0.0}, {1.0}},
        diffstride::BatchOptions().batch_size(2).shuffle(false));
    diffstride::DeviceBatches batches(
        maker, 0, 0, device, at::MemoryFormat::Contiguous, 4);
    EXPECT_TRUE(batches.next().has_value()) << device;
    EXPECT_THROW(
        {
          try {
            batches.next();
          } catch (const c10::Error& error) {
            EXPECT_NE(std::string(error.what()).find("example 3 is broken"),
                      std::string::npos);
            throw;
          }
        },
        c10::Error)
        << device;
  }
}

namespace {

// A dataset far larger than a few batches, read on demand: example i is the
// 1 x 4 x 4 image of constant value i % 251; counts the reads and the most
// reads in progress at once.
class CountingReader : public diffstride::ExampleReader {
 public:
  std::vector<int64_t> example_shape() const override {
    return {1, 4, 4};
  }
  int64_t read(int64_t index, uint64_t, float* out) const override {
    const int64_t now = ++in_progress;
    int64_t seen = most_in_progress.load();
    while (now > seen && !most_in_progress.compare_exchange_weak(seen, now)) {
    }
    std::fill(out, out + 16, static_cast<float>(index % 251));
    ++reads;
    --in_progress;
    return index;
  }
  double full_scale() const override {
    return 255.0;
  }
  int64_t workers() const override {
    return 3;
  }
  int64_t skipped_files() const override {
    return 0;
  }
  mutable std::atomic<int64_t> reads{0}, in_progress{0}, most_in_progress{0};
};

}  // namespace

TEST(Batches, ReadExamplesStreamAtMostPrefetchDepthBatchesAhead) {
  constexpr int64_t kExamples = 100000, kBatch = 16;
  constexpr size_t kDepth = 3;
  auto reader = std::make_shared<CountingReader>();
  diffstride::Dataset data;
  data.reader = reader;
  data.labels = torch::arange(kExamples) % 7;
  data.num_classes = 7;
  diffstride::BatchMaker maker(data,
                               {{0.0}, {1.0 / 255.0}},
                               diffstride::BatchOptions().batch_size(kBatch));
  const auto order = maker.epoch_order(0);
  diffstride::BatchPrefetcher batches(maker, 0, 0, kDepth);
  for (int64_t b = 0; b < 5; ++b) {
    const auto batch = batches.next();
    ASSERT_TRUE(batch.has_value());
    // The consumer holds batch b; at most kDepth more are made, and one more
    // is being made.
    EXPECT_LE(reader->reads.load(), (b + 1 + kDepth + 1) * kBatch);
    for (int64_t e = 0; e < kBatch; ++e) {
      const int64_t source = order[static_cast<size_t>(b * kBatch + e)];
      // Normalised with mean 0 and std 1/255: the raw value.
      EXPECT_FLOAT_EQ(batch->images[e][0][2][3].item<float>(),
                      static_cast<float>(source % 251));
      EXPECT_EQ(batch->labels[e].item<int64_t>(), source % 7);
    }
  }
  EXPECT_LT(reader->reads.load(), kExamples / 100);
  // No more reads at once than the reader's threads.
  EXPECT_LE(reader->most_in_progress.load(), reader->workers());
}
