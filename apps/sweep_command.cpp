#include "sweep_command.h"

#include "cli_parsing.h"
#include "signals.h"
#include "train_command.h"

#include <diffstride/experiments/report.h>
#include <diffstride/experiments/sweep.h>

#include <filesystem>
#include <iostream>
#include <sstream>

namespace diffstride_cli {

CLI::App* add_sweep_command(CLI::App& app, SweepArgs& args) {
  auto* command = app.add_subcommand(
      "sweep",
      "train every combination of config values, each run in its own folder "
      "under --out (runs/NAME, logs/NAME.log, manifest.csv); run it again to "
      "continue after an interruption");
  command
      ->add_option("--config", args.config, "base TOML config (see configs/)")
      ->check(not_empty());
  command->add_option("--set",
                      args.overrides,
                      "override a config key in every run (repeatable)");
  command
      ->add_option("--axis",
                   args.axes,
                   "section.key=v1,v2,... (values separated by ':' when they "
                   "hold commas: model.strides=1,2,2:1,3,3); repeatable")
      ->required();
  command
      ->add_option("--seeds", args.seeds, "add the axis train.seed=0,...,N-1")
      ->check(CLI::Range(int64_t{1}, diffstride::kMaxSweepRuns));
  command->add_option("--out", args.out, "the sweep folder")
      ->required()
      ->check(not_empty());
  command
      ->add_option("--parallel",
                   args.parallel,
                   "runs at once, the threads (--threads) divided between them")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--device", args.device, "--device of every run");
  command->add_option("--launch",
                      args.launch,
                      "a launcher to start every run under, e.g. \"torchrun "
                      "--standalone --nproc_per_node 2 --no_python\"");
  return command;
}

CLI::App* add_report_command(CLI::App& app, ReportArgs& args) {
  auto* command = app.add_subcommand(
      "report",
      "results.md (test accuracy per pooling and setting, mean +- sd over "
      "seeds), results.csv (one row per run) and SVG plots of sweeps and runs");
  command->add_option("paths", args.paths, "sweep folders or run folders")
      ->required();
  command->add_option("--out",
                      args.out,
                      "where to write (default: the sweep folder, the run "
                      "folder, or the runs' common parent)");
  return command;
}

int run_sweep(const SweepArgs& args, int threads, const char* argv0) {
  diffstride::SweepSpec spec;
  spec.config = args.config;
  spec.overrides = args.overrides;
  for (const auto& text : args.axes) {
    spec.axes.push_back(diffstride::parse_sweep_axis(text));
  }
  if (args.seeds > 0) {
    diffstride::SweepAxis seeds{"train.seed", {}};
    for (int64_t s = 0; s < args.seeds; ++s) {
      seeds.values.push_back(std::to_string(s));
    }
    spec.axes.push_back(seeds);
  }
  diffstride::SweepOptions options;
  options.out = args.out;
  options.parallel = args.parallel;
  options.threads = threads;
  options.device = args.device;
  std::istringstream launch(args.launch);
  for (std::string word; launch >> word;) {
    options.launch.push_back(word);
  }
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  options.executable = error ? std::string(argv0) : self.string();
  options.progress = &std::cerr;
  // A second Ctrl-C ends the sweep at once; its runs still get SIGTERM
  // (they die with it) and checkpoint.
  options.interrupt = stop_on_signals(/*second_signal_exits=*/true);
  const auto failed = diffstride::execute_sweep(spec, options);
  return failed > 0 ? 1 : 0;
}

int run_report(const ReportArgs& args) {
  const auto written = diffstride::write_report(args.paths, args.out);
  for (const auto& file : written) {
    std::cout << file << "\n";
  }
  return 0;
}

}  // namespace diffstride_cli
