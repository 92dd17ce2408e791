#pragma once

// `diffstride bench`: one full training step (forward, backward, SGD, stride
// constraints) of a model, timed for each pooling choice, with examples per
// second and peak memory.

#include <CLI/CLI.hpp>

#include <string>

namespace diffstride_cli {

struct BenchArgs {
  std::string model = "resnet18";
  std::string pooling;  // empty: every choice, each in its own process
  std::string input = "3x32x32";
  int64_t batch = 128;
  int64_t steps = 3;
  int64_t warmup = 1;
  std::string device = "cpu";
  std::string precision = "float32";
  bool channels_last = false;
  bool child = false;  // one row, no header: a run started by run_bench
};

CLI::App* add_bench_command(CLI::App& app, BenchArgs& args);
int run_bench(const BenchArgs& args, int threads);

}  // namespace diffstride_cli
