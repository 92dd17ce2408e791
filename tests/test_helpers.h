#pragma once

#include <diffstride/nn/diff_stride.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
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

// The functional DiffStride with float64 strides given as numbers, one per
// spatial axis or one for all.
inline torch::Tensor run(const torch::Tensor& x,
                         const std::vector<double>& strides,
                         double smoothness_factor = 4.0,
                         bool cropping = true) {
  return diffstride::functional::diffstride(
      x,
      torch::tensor(strides, torch::kDouble),
      diffstride::functional::DiffStrideFuncOptions()
          .smoothness_factor(smoothness_factor)
          .cropping(cropping));
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

// Second derivatives of a layer (x, strides) -> y: Q = <dL/dx, u> +
// <dL/ds, v> for L = sum(w y^2) (so that dL/dx depends on x), differentiated
// again by autograd, against central differences of Q computed from first
// derivatives, at `trials` random elements of x and for every stride.
inline void expect_second_derivatives_match(
    const std::function<torch::Tensor(const torch::Tensor&,
                                      const torch::Tensor&)>& layer,
    const torch::Tensor& x0,
    const std::vector<double>& s0,
    int trials) {
  const auto u = torch::randn_like(x0);
  const auto v =
      torch::randn({static_cast<int64_t>(s0.size())}, torch::kDouble);
  torch::Tensor w;
  // Q and, when `second`, its gradient (dQ/dx, dQ/ds).
  const auto q = [&](const torch::Tensor& x_value,
                     const std::vector<double>& strides,
                     bool second) {
    const auto x = x_value.clone().requires_grad_();
    const auto s = torch::tensor(strides, torch::kDouble).requires_grad_();
    const auto y = layer(x, s);
    if (!w.defined()) {
      w = torch::randn_like(y);
    }
    EXPECT_EQ(y.sizes(), w.sizes());
    const auto first =
        torch::autograd::grad({(w * y * y).sum()}, {x, s}, {}, second, second);
    const auto value = (first[0] * u).sum() + (first[1] * v).sum();
    std::vector<torch::Tensor> out = {value.detach()};
    if (second) {
      const auto grads = torch::autograd::grad({value}, {x, s});
      out.push_back(grads[0]);
      out.push_back(grads[1]);
    }
    return out;
  };
  const auto analytic = q(x0, s0, true);
  ASSERT_TRUE(analytic[1].defined() && analytic[2].defined());
  std::mt19937 rng(5);
  std::uniform_int_distribution<int64_t> element(0, x0.numel() - 1);
  for (int trial = 0; trial < trials; ++trial) {
    const int64_t index = element(rng);
    const double numeric = central_difference(
        [&](double h) {
          auto x = x0.clone();
          x.view(-1)[index] += h;
          return q(x, s0, false)[0].item<double>();
        },
        1e-5);
    EXPECT_NEAR(analytic[1].view(-1)[index].item<double>(),
                numeric,
                1e-6 * std::max(1.0, std::abs(numeric)));
  }
  for (size_t axis = 0; axis < s0.size(); ++axis) {
    const double numeric = central_difference(
        [&](double h) {
          auto s = s0;
          s[axis] += h;
          return q(x0, s, false)[0].item<double>();
        },
        1e-6);
    EXPECT_NEAR(analytic[2][axis].item<double>(),
                numeric,
                1e-6 * std::max(1.0, std::abs(numeric)));
  }
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

// The scratch folders this process made, removed when it exits normally.
struct ScratchFolders {
  std::vector<std::filesystem::path> made;
  ~ScratchFolders() {
    std::error_code ignored;
    for (const auto& dir : made) {
      std::filesystem::remove_all(dir, ignored);
    }
  }
};

// A fresh, empty folder under the system's temporary folder, for one test.
inline std::filesystem::path scratch_folder(const std::string& name) {
  static ScratchFolders folders;
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("diffstride_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  folders.made.push_back(dir);
  return dir;
}

}  // namespace diffstride_test
