#pragma once

// `diffstride data`: what a dataset holds, split by split.

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace diffstride_cli {

struct DataArgs {
  std::string dataset = "fashion_mnist";
  std::string data_dir;  // empty: the dataset's default folder
  // Folders: the examples' size and channels (0: the data's default).
  int64_t image_size = 0;
  int64_t channels = 0;
  int64_t sample_rate = 16000;
  int64_t clip_samples = 16000;
  std::vector<std::string> overrides;  // data.KEY=VALUE, as train's --set
};

CLI::App* add_data_command(CLI::App& app, DataArgs& args);
int run_data(const DataArgs& args);

}  // namespace diffstride_cli
