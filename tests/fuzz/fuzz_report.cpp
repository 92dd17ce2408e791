// `diffstride report` on a run folder whose config.toml and metrics.csv are
// arbitrary (the input split at its first 0 byte): a clear error or the
// report, never a crash, and never a command run from the run's text. A
// file gnuplot would create if any label, value or name reached it as a
// command (`!touch`, system()) must never appear.
#include <diffstride/experiments/report.h>

#include "fuzz_input_file.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  const auto run = diffstride_fuzz::scratch_folder() / "run";
  fs::remove_all(run);
  fs::create_directories(run);
  const auto* split = std::find(data, data + size, uint8_t{0});
  std::ofstream(run / "config.toml", std::ios::binary)
      .write(reinterpret_cast<const char*>(data), split - data);
  if (split != data + size) {
    std::ofstream(run / "metrics.csv", std::ios::binary)
        .write(reinterpret_cast<const char*>(split + 1),
               data + size - split - 1);
  }
  try {
    diffstride::write_report({run.string()}, "");
  } catch (const std::exception&) {
    // c10::Error or a filesystem error: the tool prints either as a message.
  }
  if (fs::exists("/tmp/diffstride_fuzz_canary") || fs::exists(run / "canary")) {
    __builtin_trap();
  }
  return 0;
}
