#pragma once

// A few-step training run for tests: a tiny learnable dataset in IDX files
// and a config that trains a small model on it in seconds.

#include <diffstride/train/config.h>
#include <diffstride/train/trainer.h>

#include "test_helpers.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace diffstride_test {

// A tiny learnable Fashion-MNIST-shaped dataset: class k has a bright 3x3
// block at a class-specific place, plus noise.
inline void write_tiny_idx(const std::filesystem::path& dir,
                           int64_t train,
                           int64_t test) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(1);
  const auto write = [&](const std::string& prefix, int64_t n) {
    std::vector<uint8_t> images, labels;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = static_cast<int64_t>(rng() % 4);
      labels.push_back(static_cast<uint8_t>(k));
      for (int64_t y = 0; y < 12; ++y)
        for (int64_t x = 0; x < 12; ++x) {
          const bool block =
              y / 6 == k / 2 && x / 6 == k % 2 && y % 6 < 4 && x % 6 < 4;
          images.push_back(
              static_cast<uint8_t>((block ? 180 : 20) + rng() % 60));
        }
    }
    const auto count = static_cast<uint32_t>(n);
    diffstride_test::write_file(
        dir / (prefix + "-images-idx3-ubyte"),
        diffstride_test::idx_bytes(0x803, {count, 12, 12}, images));
    diffstride_test::write_file(
        dir / (prefix + "-labels-idx1-ubyte"),
        diffstride_test::idx_bytes(0x801, {count}, labels));
  };
  write("train", train);
  write("t10k", test);
}

inline diffstride::TrainConfig tiny_config(const std::filesystem::path& data,
                                           const std::filesystem::path& out) {
  return diffstride::parse_train_config(
      diffstride::default_train_config_toml(),
      {"data.data_dir=\"" + data.string() + "\"",
       "data.batch_size=16",
       "model.filters=[4, 8]",
       "model.strides=[1, 2]",
       "optimizer.boundaries=[]",
       "optimizer.values=[0.05]",
       "train.epochs=3",
       "train.threads=2",
       // On the CPU on every machine: the tests compare runs bit for bit
       // (DeviceCuda tests cover CUDA).
       "train.device=\"cpu\"",
       "train.out=\"" + out.string() + "\""});
}

// metrics.csv without the examples-per-second column (wall-clock time).
inline std::vector<std::string> metrics_without_rate(
    const std::filesystem::path& csv) {
  std::ifstream in(csv);
  std::vector<std::string> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream row(line);
    std::string cell;
    while (std::getline(row, cell, ','))
      cells.push_back(cell);
    cells.erase(cells.begin() + 7);
    std::string joined;
    for (const auto& c : cells)
      joined += c + ",";
    rows.push_back(joined);
  }
  return rows;
}

/// The config of a tiny run of one epoch on 32 training examples in the
/// fresh scratch folder `name` (data written to data/, the run to go in
/// run/).
inline diffstride::TrainConfig tiny_run_config(const std::string& name) {
  const auto root = scratch_folder(name);
  write_tiny_idx(root / "data", 32, 16);
  auto config = tiny_config(root / "data", root / "run");
  config.train.epochs = 1;
  return config;
}

/// The same run, finished.
inline diffstride::TrainConfig finished_tiny_run(const std::string& name) {
  auto config = tiny_run_config(name);
  diffstride::train(config);
  return config;
}

}  // namespace diffstride_test
