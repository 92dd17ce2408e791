#pragma once

// `diffstride summary`: a model's stage shapes, DiffStride output sizes,
// trainable parameters and multiply-adds for one input size.

#include <CLI/CLI.hpp>

#include <string>

namespace diffstride_cli {

struct SummaryArgs {
  std::string model = "resnet18";
  std::string pooling = "diffstride";
  std::string input = "3x32x32";
  int64_t classes = 10;
  std::string strides;  // empty: the model's own
};

CLI::App* add_summary_command(CLI::App& app, SummaryArgs& args);
int run_summary(const SummaryArgs& args);

}  // namespace diffstride_cli
