#include "cli_parsing.h"

#include <diffstride/models/resnet.h>
#include <diffstride/train/config.h>

#include <CLI/CLI.hpp>

#include <cmath>
#include <sstream>

namespace diffstride_cli {

CLI::Validator not_empty() {
  return CLI::Validator(
      [](const std::string& value) {
        return value.empty() ? std::string("expected a non-empty value")
                             : std::string();
      },
      "NONEMPTY");
}

void check_batch_values(int64_t batch,
                        const std::array<int64_t, 3>& size,
                        const std::string& option) {
  const double values = static_cast<double>(batch) *
                        static_cast<double>(size[0] * size[1] * size[2]);
  if (values > static_cast<double>(kMaxInputValues)) {
    throw CLI::ValidationError(
        option,
        std::to_string(batch) + " examples of " + std::to_string(size[0]) +
            "x" + std::to_string(size[1]) + "x" + std::to_string(size[2]) +
            " hold more than " + std::to_string(kMaxInputValues) +
            " values; expected a smaller batch or input");
  }
}

CLI::Validator thread_count() {
  return CLI::Validator(
      [](const std::string& value) {
        int64_t n = 0;
        const bool number = CLI::detail::lexical_cast(value, n);
        return number && n >= 1 && n <= diffstride::max_threads()
                   ? std::string()
                   : "expected 1 to " +
                         std::to_string(diffstride::max_threads()) +
                         " threads (" +
                         std::to_string(diffstride::kThreadsPerCore) +
                         " x this machine's " +
                         std::to_string(diffstride::max_threads() /
                                        diffstride::kThreadsPerCore) +
                         " cores), got " + value;
      },
      "THREADS");
}

void add_model_option(CLI::App* command, std::string& model) {
  command->add_option("--model", model, "the network's factory")
      ->check(CLI::IsMember(diffstride::resnet_factory_names()))
      ->capture_default_str();
}

std::array<int64_t, 3> parse_input_size(const std::string& text,
                                        const std::string& option) {
  // CxHxW, or CxL for a waveform (C x 1 x L).
  std::vector<int64_t> numbers;
  size_t separators = 0;
  std::istringstream stream(text);
  bool valid = true;
  for (int64_t n = 0; valid && stream >> n;) {
    numbers.push_back(n);
    valid = n >= 1;
    char separator = 0;
    if (stream.peek() != EOF) {
      valid = valid && stream >> separator && separator == 'x';
      ++separators;
    }
  }
  valid = valid && stream.eof() && separators + 1 == numbers.size() &&
          (numbers.size() == 2 || numbers.size() == 3);
  double values = 1;
  for (const auto n : numbers) {
    values *= static_cast<double>(n);
  }
  if (valid && values > static_cast<double>(kMaxInputValues)) {
    throw CLI::ValidationError(
        option,
        "'" + text + "' is " +
            std::to_string(static_cast<int64_t>(std::min(values, 9e18))) +
            " values an example; expected at most " +
            std::to_string(kMaxInputValues));
  }
  if (!valid) {
    throw CLI::ValidationError(option,
                               "expected CxHxW (or CxL for a waveform) with "
                               "positive integers, e.g. 3x32x32 or 1x16000; "
                               "got '" +
                                   text + "'");
  }
  if (numbers.size() == 2) {
    return {numbers[0], 1, numbers[1]};
  }
  return {numbers[0], numbers[1], numbers[2]};
}

std::vector<diffstride::StridePair> parse_stage_strides(
    const std::string& text, const std::string& option) {
  std::vector<diffstride::StridePair> strides;
  std::istringstream items(text);
  std::string item;
  const auto fail = [&] {
    throw CLI::ValidationError(option,
                               "expected comma-separated strides >= 1, each a "
                               "number or HxW, e.g. 1,1,2x3,2,2; got '" +
                                   text + "'");
  };
  while (std::getline(items, item, ',')) {
    std::istringstream stream(item);
    double height = 0, width = 0;
    char x = 0;
    if (!(stream >> height)) {
      fail();
    }
    width = height;
    if (!stream.eof() && !(stream >> x >> width && x == 'x')) {
      fail();
    }
    if (!stream.eof() || !std::isfinite(height) || !std::isfinite(width) ||
        height < 1 || width < 1) {
      fail();
    }
    strides.push_back(diffstride::StridePair({height, width}));
  }
  if (strides.empty() || text.back() == ',') {
    fail();
  }
  return strides;
}

}  // namespace diffstride_cli
