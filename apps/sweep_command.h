#pragma once

// `diffstride sweep` and `diffstride report`.

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace diffstride_cli {

struct SweepArgs {
  std::string config;  // empty: the built-in Fashion-MNIST recipe
  std::vector<std::string> overrides;
  std::vector<std::string> axes;
  int64_t seeds = 0;  // 0: no seed axis
  std::string out;
  int64_t parallel = 1;
  std::string device;
  std::string launch;
};

struct ReportArgs {
  std::vector<std::string> paths;
  std::string out;  // empty: beside the runs
};

CLI::App* add_sweep_command(CLI::App& app, SweepArgs& args);
CLI::App* add_report_command(CLI::App& app, ReportArgs& args);
int run_sweep(const SweepArgs& args, int threads, const char* argv0);
int run_report(const ReportArgs& args);

}  // namespace diffstride_cli
