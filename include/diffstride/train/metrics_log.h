#pragma once

// What a run records once per epoch, from one list of named values: a row
// of metrics.csv and a TensorBoard scalar per value. A name's '/' groups
// scalars in TensorBoard ("test/accuracy"); its CSV column has '_' instead
// ("test_accuracy").

#include <diffstride/train/event_writer.h>

#include <cstdint>
#include <string>
#include <vector>

namespace diffstride {

struct NamedValue {
  std::string name;
  double value = 0;
};

class MetricsLog {
 public:
  /// Appends to `folder`/metrics.csv (header first when new) and writes a
  /// new TensorBoard event file in `folder`.
  explicit MetricsLog(const std::string& folder);

  /// One epoch: the CSV row "epoch,step,<values>" and each value as a scalar
  /// at `step`. Integral values are written as integers.
  void add_epoch(int64_t epoch,
                 int64_t step,
                 const std::vector<NamedValue>& values);

  /// A scalar between epochs (TensorBoard only), such as the step loss.
  void add_scalar(const std::string& name, double value, int64_t step);

  void flush();

 private:
  std::string csv_path_;
  EventWriter events_;
};

}  // namespace diffstride
