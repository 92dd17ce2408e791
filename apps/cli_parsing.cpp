#include "cli_parsing.h"

#include <diffstride/models/resnet.h>

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
