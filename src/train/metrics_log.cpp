#include <diffstride/train/metrics_log.h>

#include "train/checked_file.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace diffstride {

namespace {

std::string column_name(std::string name) {
  std::replace(name.begin(), name.end(), '/', '_');
  return name;
}

// Integers (counts, steps, multiply-adds) exactly; other values with 8
// significant digits.
void write_number(std::ostream& out, double v) {
  if (std::floor(v) == v && std::abs(v) < 1e15) {
    out << static_cast<int64_t>(v);
  } else {
    out << std::setprecision(8) << v;
  }
}

}  // namespace

MetricsLog::MetricsLog(const std::string& folder)
    : csv_path_((std::filesystem::path(folder) / "metrics.csv").string()),
      events_(folder) {}

void MetricsLog::add_epoch(int64_t epoch,
                           int64_t step,
                           const std::vector<NamedValue>& values) {
  // The whole file is rewritten through a temporary one: a failed write (a
  // full disk) leaves the previous rows intact, never half a row.
  std::ostringstream rows;
  if (std::filesystem::exists(csv_path_)) {
    std::ifstream in(csv_path_);
    rows << in.rdbuf();
  } else {
    rows << "epoch,step";
    for (const auto& v : values)
      rows << "," << column_name(v.name);
    rows << "\n";
  }
  rows << epoch << "," << step;
  for (const auto& v : values) {
    rows << ",";
    write_number(rows, v.value);
  }
  rows << "\n";
  detail::replace_file(csv_path_, rows.str());
  for (const auto& v : values) {
    events_.add_scalar(v.name, v.value, step);
  }
}

void MetricsLog::add_scalar(const std::string& name,
                            double value,
                            int64_t step) {
  events_.add_scalar(name, value, step);
}

void MetricsLog::flush() {
  events_.flush();
}

}  // namespace diffstride
