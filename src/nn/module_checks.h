#pragma once

// The pooling modules' checks of their options and inputs, DiffStride's
// stride constraint, and the layer on strides the constraint has read, as
// functions: the C++ modules call them, and the Python
// package's modules call them through the ops of ops/register_ops.cpp, so
// that both check the same things with the same messages (docs/layers.md).
// Internal to the library.

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <string>
#include <vector>

namespace diffstride {
namespace functional {
struct DiffStrideFuncOptions;
}  // namespace functional

namespace detail {

/// The initial values of a DiffStride layer's `strides` parameter over
/// `spatial_rank` axes, from `init` (one value for every axis, or one per
/// axis), after checking the options: one value with shared_stride.
std::vector<double> diffstride_initial_strides(
    int64_t spatial_rank,
    c10::ArrayRef<double> init,
    double smoothness_factor,
    double lower_limit_stride,
    c10::optional<double> upper_limit_stride,
    bool shared_stride);

/// DiffStride's constraint: clamps `strides` (one value, or one per axis of
/// `spatial_rank`) in place to [max(lower, size / (size - R)), upper], with
/// the spatial size of the last input (empty: none yet, floor `lower`).
/// Writes only when a value moves; strides without values (meta) are left
/// as they are. Returns the values `strides` holds afterwards, read on the
/// host (none for strides without values).
std::vector<double> constrain_strides(const at::Tensor& strides,
                                      int64_t spatial_rank,
                                      c10::ArrayRef<int64_t> last_input_size,
                                      double smoothness_factor,
                                      double lower_limit_stride,
                                      c10::optional<double> upper_limit_stride);

/// functional::diffstride on strides whose values the caller has read on
/// the host already (constrain_strides returns them): the crop's size comes
/// from `values`, the mask and its gradient from `strides`. Empty `values`:
/// read here.
at::Tensor diffstride_with_stride_values(
    const at::Tensor& input,
    const at::Tensor& strides,
    const std::vector<double>& values,
    const functional::DiffStrideFuncOptions& options);

/// The input of `layer` over `spatial_rank` axes: its dtype and rank, and
/// with smoothness_factor > 0 (DiffStride) spatial sizes that exceed it.
void check_layer_input(const at::Tensor& input,
                       const std::string& layer,
                       int64_t spatial_rank,
                       double smoothness_factor = 0.0);

/// FixedSpectralPooling's strides over `spatial_rank` axes, from one value
/// for every axis or one per axis, each finite and >= 1.
std::vector<double> fixed_spectral_pooling_strides(
    int64_t spatial_rank, c10::ArrayRef<double> strides);

/// SpatialPooling's (height, width) strides, from one integer for both or
/// two, each >= 1.
std::vector<int64_t> spatial_pooling_strides(c10::ArrayRef<int64_t> strides);

}  // namespace detail
}  // namespace diffstride
