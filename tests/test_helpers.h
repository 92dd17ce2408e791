#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace diffstride_test {

// max |a - b| / max |b|: the relative error of `actual` against `expected`.
inline double relative_error(const torch::Tensor& actual,
                             const torch::Tensor& expected) {
  const double scale = expected.abs().max().item<double>();
  return (actual.to(torch::kDouble) - expected.to(torch::kDouble))
             .abs()
             .max()
             .item<double>() /
         (scale > 0 ? scale : 1.0);
}

// Runs `body` and checks it throws a c10::Error whose message contains
// `expected`.
inline void expect_error_containing(const std::function<void()>& body,
                                    const std::string& expected) {
  try {
    body();
    ADD_FAILURE() << "expected an error containing \"" << expected << "\"";
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    EXPECT_NE(message.find(expected), std::string::npos)
        << "message was: " << message;
  }
}

// Central finite difference of the scalar function f at 0: (f(h) - f(-h))/2h.
inline double central_difference(const std::function<double(double)>& f,
                                 double h) {
  return (f(h) - f(-h)) / (2 * h);
}

// Second-order one-sided difference of f at 0 from the right:
// (-3 f(0) + 4 f(h) - f(2h)) / 2h. For points where f has a kink and only the
// right-hand derivative is meaningful.
inline double right_difference(const std::function<double(double)>& f,
                               double h) {
  return (-3 * f(0) + 4 * f(h) - f(2 * h)) / (2 * h);
}

// Writes `bytes` to `path`, replacing it.
inline void write_file(const std::filesystem::path& path,
                       const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// An IDX file's bytes: big-endian magic and dimension sizes, then `data`.
inline std::vector<uint8_t> idx_bytes(uint32_t magic,
                                      const std::vector<uint32_t>& sizes,
                                      const std::vector<uint8_t>& data) {
  std::vector<uint8_t> bytes;
  const auto put = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      bytes.push_back(static_cast<uint8_t>(v >> shift));
    }
  };
  put(magic);
  for (const auto s : sizes) {
    put(s);
  }
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

// A fresh, empty folder under the system's temporary folder, for one test.
inline std::filesystem::path scratch_folder(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("diffstride_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace diffstride_test
