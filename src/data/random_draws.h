#pragma once

// The data pipeline's random draws: a small, fully specified generator and
// the Beta draw of mixup. Internal to the training library.

#include <cmath>
#include <cstdint>

namespace diffstride {
namespace detail {

// SplitMix64: a small, fully specified generator, so that data order is the
// same with every standard library.
struct SplitMix64 {
  uint64_t state;
  uint64_t operator()() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>(
        (static_cast<unsigned __int128>((*this)()) * n) >> 64);
  }
  // Uniform in [0, 1).
  double uniform() {
    return static_cast<double>((*this)() >> 11) * 0x1.0p-53;
  }
};

// log of a Gamma(alpha, 1) draw: Marsaglia-Tsang for alpha >= 1; for
// alpha < 1 a Gamma(alpha + 1) draw times U^(1/alpha), whose logarithm
// log(U)/alpha stays finite where the product itself underflows to 0 (at
// alpha = 0.001 nearly always).
inline double log_gamma_draw(SplitMix64& rng, double alpha) {
  const double log_boost =
      alpha < 1 ? std::log(1.0 - rng.uniform()) / alpha : 0.0;
  const double a = alpha < 1 ? alpha + 1 : alpha;
  const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    // A standard normal by Box-Muller.
    const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
    const double z =
        std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    const double v = std::pow(1.0 + c * z, 3);
    if (v <= 0) {
      continue;
    }
    const double u = 1.0 - rng.uniform();
    if (std::log(u) < 0.5 * z * z + d - d * v + d * std::log(v)) {
      return std::log(d * v) + log_boost;
    }
  }
}

/// A Beta(alpha, alpha) draw for any alpha > 0: X / (X + Y) for X, Y
/// Gamma(alpha) draws, computed from their logarithms as 1 / (1 + e^(ly -
/// lx)), which is exact where X and Y themselves would underflow.
inline double beta_draw(SplitMix64& rng, double alpha) {
  const double lx = log_gamma_draw(rng, alpha), ly = log_gamma_draw(rng, alpha);
  return 1.0 / (1.0 + std::exp(ly - lx));
}

}  // namespace detail
}  // namespace diffstride
