#include "nn/crop_matrices.h"

#include "nn/host_constants.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

namespace diffstride {
namespace detail {

namespace {

constexpr double kTwoPi = 6.28318530717958647692528676655900577;

// cos and sin of 2*pi*(a_i * b_j mod n)/n for every pair, row-major
// (|a| x |b|): the integer reduction keeps each angle exact, so large
// products lose no precision.
struct UnitCircle {
  std::vector<double> cos, sin;
};

UnitCircle compute_unit_circle(c10::ArrayRef<int64_t> a,
                               int64_t b_count,
                               int64_t n) {
  // Only n angles occur: one cos and sin each, then a lookup per pair.
  std::vector<double> cos_of(static_cast<size_t>(n)), sin_of(cos_of.size());
  const double step = kTwoPi / static_cast<double>(n);
  for (int64_t k = 0; k < n; ++k) {
    cos_of[static_cast<size_t>(k)] = std::cos(static_cast<double>(k) * step);
    sin_of[static_cast<size_t>(k)] = std::sin(static_cast<double>(k) * step);
  }
  UnitCircle table;
  table.cos.resize(a.size() * static_cast<size_t>(b_count));
  table.sin.resize(table.cos.size());
  size_t at = 0;
  for (const int64_t ai : a) {
    for (int64_t b = 0; b < b_count; ++b, ++at) {
      const auto turns = static_cast<size_t>((ai * b) % n);
      table.cos[at] = cos_of[turns];
      table.sin[at] = sin_of[turns];
    }
  }
  return table;
}

// The value `make` builds for `key`, kept by this thread for the next call
// (at most 64 of them per call site). Shared: a value stays valid for its
// user when the cache is emptied.
template <typename Key, typename Value, typename Make>
std::shared_ptr<const Value> thread_cached(Key key, const Make& make) {
  thread_local std::map<Key, std::shared_ptr<const Value>> cache;
  auto found = cache.find(key);
  if (found == cache.end()) {
    if (cache.size() >= 64) {
      cache.clear();
    }
    found = cache.emplace(std::move(key), make()).first;
  }
  return found->second;
}

// The tables depend on sizes and kept bins only, which change rarely while
// a network trains.
std::shared_ptr<const UnitCircle> unit_circle(c10::ArrayRef<int64_t> a,
                                              int64_t b_count,
                                              int64_t n) {
  using Key = std::tuple<std::vector<int64_t>, int64_t, int64_t>;
  return thread_cached<Key, UnitCircle>(Key{a.vec(), b_count, n}, [&] {
    return std::make_shared<const UnitCircle>(
        compute_unit_circle(a, b_count, n));
  });
}

std::vector<int64_t> first_integers(int64_t count) {
  std::vector<int64_t> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    out[static_cast<size_t>(i)] = i;
  }
  return out;
}

// Row pipeline (complex, along H): A[j, n] = 1/H' sum_q w_q e^{2 pi i j q/H'}
// e^{-2 pi i k_q n/H}, as [A_r | A_i] (H' x 2H).
void fill_row_matrix(double* out,
                     c10::ArrayRef<int64_t> kept_rows,
                     const double* weights,
                     int64_t height) {
  const int64_t out_height = static_cast<int64_t>(kept_rows.size());
  const auto out_circle =
      unit_circle(first_integers(out_height), out_height, out_height);
  const auto in_circle = unit_circle(kept_rows, height, height);
  const auto& out_table = *out_circle;
  const auto& in_table = *in_circle;
  const double scale = 1.0 / static_cast<double>(out_height);
  for (int64_t j = 0; j < out_height; ++j) {
    double* real = out + j * 2 * height;
    double* imag = real + height;
    for (int64_t q = 0; q < out_height; ++q) {
      if (weights && weights[q] == 0.0) {
        continue;  // derivatives are zero outside the ramp
      }
      const double w = (weights ? weights[q] : 1.0) * scale;
      const double c = w * out_table.cos[j * out_height + q];
      const double s = w * out_table.sin[j * out_height + q];
      const double* cos_in = in_table.cos.data() + q * height;
      const double* sin_in = in_table.sin.data() + q * height;
      for (int64_t n = 0; n < height; ++n) {
        real[n] += c * cos_in[n] + s * sin_in[n];
        imag[n] += s * cos_in[n] - c * sin_in[n];
      }
    }
  }
}

// Column pipeline (real to real, along W): rfft, mask, crop to the first K'
// bins, irfft to W' samples. A C2R transform counts bins 1..W'/2-1 twice
// (they stand for their conjugates too) and keeps only the real part of the
// DC and Nyquist bins, which the weights c_p below and the sine terms encode:
//   G_r[n, w] =  1/W' sum_p c_p m_p cos(2 pi p (w/W' - n/W))
//   G_i[n, w] = -1/W' sum_p c_p m_p sin(2 pi p (w/W' - n/W)),
// as [G_r | G_i] (W x 2W').
void fill_column_matrix(double* out,
                        int64_t kept_columns,
                        const double* weights,
                        int64_t width,
                        int64_t out_width) {
  const auto bins = first_integers(kept_columns);
  const auto in_circle = unit_circle(bins, width, width);
  const auto out_circle = unit_circle(bins, out_width, out_width);
  const auto& in_table = *in_circle;
  const auto& out_table = *out_circle;
  const double scale = 1.0 / static_cast<double>(out_width);
  for (int64_t n = 0; n < width; ++n) {
    double* real = out + n * 2 * out_width;
    double* imag = real + out_width;
    for (int64_t p = 0; p < kept_columns; ++p) {
      if (weights && weights[p] == 0.0) {
        continue;
      }
      const bool single = p == 0 || (out_width % 2 == 0 && p == out_width / 2);
      const double w =
          (single ? 1.0 : 2.0) * (weights ? weights[p] : 1.0) * scale;
      const double c = w * in_table.cos[p * width + n];
      const double s = w * in_table.sin[p * width + n];
      const double* cos_out = out_table.cos.data() + p * out_width;
      const double* sin_out = out_table.sin.data() + p * out_width;
      for (int64_t v = 0; v < out_width; ++v) {
        real[v] += c * cos_out[v] + s * sin_out[v];
        imag[v] += s * cos_out[v] - c * sin_out[v];
      }
    }
  }
}

// Writes to `out` (`count` numbers) `scale` times the matrix `fill` builds
// for `weights` (one per bin, `bins` of them). The bins of weight exactly 1
// (all but the ramp's) contribute a part that depends only on which bins they
// are, the same at most strides: it is cached per thread (key: `shape` and
// that set), and only the other bins are added per call. Null weights: all
// ones.
template <typename Fill>
void fill_with_cached_flat_part(double* out,
                                int64_t count,
                                const double* weights,
                                double scale,
                                int64_t bins,
                                std::vector<int64_t> shape,
                                const Fill& fill) {
  std::vector<double> flat(static_cast<size_t>(bins)), rest(flat.size());
  bool any_rest = false;
  for (int64_t q = 0; q < bins; ++q) {
    const double w = weights ? weights[q] : 1.0;
    const bool one = w == 1.0;
    flat[static_cast<size_t>(q)] = one ? 1.0 : 0.0;
    rest[static_cast<size_t>(q)] = one ? 0.0 : w;
    any_rest = any_rest || (!one && w != 0.0);
    shape.push_back(one ? 1 : 0);
  }
  const auto part = thread_cached<std::vector<int64_t>, std::vector<double>>(
      std::move(shape), [&] {
        auto built = std::make_shared<std::vector<double>>(
            static_cast<size_t>(count), 0.0);
        fill(built->data(), flat.data());
        return std::shared_ptr<const std::vector<double>>(std::move(built));
      });
  std::copy(part->begin(), part->end(), out);
  if (any_rest) {
    fill(out, rest.data());
  }
  if (scale != 1.0) {
    for (int64_t i = 0; i < count; ++i) {
      out[i] *= scale;
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> weighted_separable_matrices(
    c10::ArrayRef<int64_t> kept_rows,
    const double* row_weights,
    int64_t height,
    int64_t kept_columns,
    const double* column_weights,
    int64_t width,
    int64_t output_width,
    const at::TensorOptions& options,
    double row_scale,
    double column_scale) {
  const int64_t out_height = static_cast<int64_t>(kept_rows.size());
  const int64_t row_count = out_height * 2 * height;
  const int64_t column_count = width * 2 * output_width;
  // Both built in float64 in one buffer of this thread's, then converted
  // once (and, for a GPU, copied once from pinned memory, without blocking).
  thread_local std::vector<double> packed;
  packed.resize(static_cast<size_t>(row_count + column_count));
  std::vector<int64_t> row_shape = {0, height};
  row_shape.insert(row_shape.end(), kept_rows.begin(), kept_rows.end());
  fill_with_cached_flat_part(packed.data(),
                             row_count,
                             row_weights,
                             row_scale,
                             out_height,
                             std::move(row_shape),
                             [&](double* out, const double* weights) {
                               fill_row_matrix(out, kept_rows, weights, height);
                             });
  fill_with_cached_flat_part(
      packed.data() + row_count,
      column_count,
      column_weights,
      column_scale,
      kept_columns,
      {1, width, kept_columns, output_width},
      [&](double* out, const double* weights) {
        fill_column_matrix(out, kept_columns, weights, width, output_width);
      });
  // Filled outside any tensor mode and lifted into it (nn/host_constants.h).
  const auto dtype = c10::typeMetaToScalarType(options.dtype());
  if (options.device().is_cpu()) {
    at::Tensor row, column;
    {
      OutsideTensorModes outside;
      row = at::empty({out_height, 2 * height}, at::TensorOptions(dtype));
      column = at::empty({width, 2 * output_width}, at::TensorOptions(dtype));
      AT_DISPATCH_FLOATING_TYPES(dtype, "separable_matrices", [&] {
        std::copy(
            packed.data(), packed.data() + row_count, row.data_ptr<scalar_t>());
        std::copy(packed.data() + row_count,
                  packed.data() + row_count + column_count,
                  column.data_ptr<scalar_t>());
      });
    }
    return {lifted(row), lifted(column)};
  }
  // A copy of this thread's buffer, never a view of it (pin_memory copies):
  // a tracer may keep the host tensor as a constant of its graph.
  const bool cuda = options.device().is_cuda();
  const auto on_device =
      host_constant([&] {
        auto on_host =
            at::from_blob(
                packed.data(), {row_count + column_count}, at::kDouble)
                .to(dtype, /*non_blocking=*/false, /*copy=*/!cuda);
        return cuda ? on_host.pin_memory() : on_host;
      }).to(options.device(), /*non_blocking=*/cuda);
  return {on_device.narrow(0, 0, row_count).view({out_height, 2 * height}),
          on_device.narrow(0, row_count, column_count)
              .view({width, 2 * output_width})};
}

// The map is linear and separable (docs/layers.md): y = Re(A) x G_r +
// Im(A) x G_i, with A (H' x H, complex) the row pipeline IDFT * crop *
// diag(mask) * DFT and G_r, G_i (W x W') the real-to-real column pipeline
// applied to unit rows and to i times their spectra; built on the host in
// float64.
std::tuple<at::Tensor, at::Tensor> separable_matrices(
    const AxisCrop& rows,
    const AxisCrop& columns,
    int64_t height,
    int64_t width,
    int64_t output_width,
    const at::TensorOptions& options) {
  const auto weights = [](const AxisCrop& crop) {
    TORCH_INTERNAL_ASSERT(
        !crop.mask.defined() ||
        (!crop.mask.requires_grad() && crop.mask.scalar_type() == at::kDouble));
    return crop.mask.defined() ? crop.mask.contiguous() : at::Tensor();
  };
  const auto row_weights = weights(rows), column_weights = weights(columns);
  return weighted_separable_matrices(
      rows.bins,
      row_weights.defined() ? row_weights.data_ptr<double>() : nullptr,
      height,
      static_cast<int64_t>(columns.bins.size()),
      column_weights.defined() ? column_weights.data_ptr<double>() : nullptr,
      width,
      output_width,
      options);
}

}  // namespace detail
}  // namespace diffstride
