#pragma once

// `diffstride train` and `diffstride eval`.

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace diffstride_cli {

struct TrainArgs {
  std::string config;  // empty: the built-in Fashion-MNIST recipe
  std::vector<std::string> overrides;
  std::string out;
  std::string device;  // empty: the config's
  std::string resume;
  int64_t stop_after_steps = -1;  // < 0: train to the end
  bool help_config = false;
};

struct EvalArgs {
  std::string checkpoint;
  std::string dump_logits;  // empty: none
  bool force = false;       // replace an existing dump file
};

CLI::App* add_train_command(CLI::App& app, TrainArgs& args);
CLI::App* add_eval_command(CLI::App& app, EvalArgs& args);
int run_train(const TrainArgs& args, int threads);
int run_eval(const EvalArgs& args);

}  // namespace diffstride_cli
