#pragma once

// Reports of sweeps and runs: the seed's table layout (rows: pooling;
// columns: the other config values that differ between runs; cells: final
// test accuracy, mean +- sd over seeds), one CSV row per run, and plots
// drawn by gnuplot (docs/training.md, "Sweeps and reports").

#include <string>
#include <vector>

namespace diffstride {

/// Reads the runs in `paths` (sweep folders, whose manifest.csv lists them,
/// or run folders) and writes results.md, results.csv, accuracy.svg,
/// strides.svg (when a run has DiffStride layers) and
/// accuracy_vs_multiply_adds.svg into `out` (empty: the one sweep or run
/// folder given, or the folders' common parent). Returns the files written.
/// A path that is neither, or a run whose files cannot be read, is an error
/// naming it.
std::vector<std::string> write_report(const std::vector<std::string>& paths,
                                      const std::string& out);

}  // namespace diffstride
