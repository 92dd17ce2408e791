#pragma once

// Sweeps: one base config and axes of config values; every combination is a
// run of `diffstride train` in its own folder under one sweep folder
// (docs/training.md, "Sweeps and reports").

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace diffstride {

/// The file of a sweep folder that lists its runs: a header "run,KEY...",
/// then per run its folder (relative to the sweep folder) and axis values.
constexpr const char* kSweepManifestFile = "manifest.csv";

/// The most runs one sweep may have (the product of its axes' sizes).
constexpr int64_t kMaxSweepRuns = 10000;

/// One axis: a config key and the values it takes, as `--set` reads them.
struct SweepAxis {
  std::string key;
  std::vector<std::string> values;
};

/// "section.key=v1,v2,v3", or "section.key=v1:v2" where a value holds commas
/// (model.strides=1,1,2,2,2:1,1,3,2,3). An error names the malformed text.
SweepAxis parse_sweep_axis(const std::string& text);

/// What a sweep is: the base config (empty: the built-in recipe), overrides
/// common to every run, and the axes (seeds are the axis train.seed).
struct SweepSpec {
  std::string config;
  std::vector<std::string> overrides;
  std::vector<SweepAxis> axes;
};

/// One combination: its folder name (its index, then key=value per axis)
/// and its overrides, one "key=value" per axis.
struct SweepRun {
  std::string name;
  std::vector<std::string> overrides;
};

/// Every combination, the last axis varying fastest; an error if there are
/// more than kMaxSweepRuns.
std::vector<SweepRun> sweep_runs(const std::vector<SweepAxis>& axes);

struct SweepOptions {
  std::string out;       // the sweep folder
  int64_t parallel = 1;  // runs at once
  int64_t threads = 1;   // threads of the machine, divided between the runs
  std::string device;    // --device of every run (empty: the config's)
  /// A launcher the runs start under, e.g. {"torchrun", "--nproc_per_node",
  /// "2", "--no_python"} (empty: none).
  std::vector<std::string> launch;
  /// The `diffstride` executable the runs are started with.
  std::string executable;
  std::ostream* progress = nullptr;
  const std::atomic<bool>* interrupt = nullptr;
};

/// Runs the sweep `spec` in `options.out`: writes sweep.toml (the spec) and
/// manifest.csv (run folder and axis values per run), then runs every
/// combination not finished yet in runs/NAME (a folder with a config but no
/// final model is resumed from its checkpoint), logs/NAME.log holding each
/// run's output. A folder holding another sweep is an error. Returns the
/// number of runs that failed (0: all finished, or stopped by `interrupt`).
int64_t execute_sweep(const SweepSpec& spec, const SweepOptions& options);

}  // namespace diffstride
