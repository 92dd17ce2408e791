#include <diffstride/models/residual_layer.h>

#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>

#include <cmath>

namespace diffstride {

IntStridePair whole_strides(StridePair strides) {
  std::array<int64_t, 2> out{};
  for (int i = 0; i < 2; ++i) {
    const double s = (*strides)[i];
    TORCH_CHECK(s >= 1 && std::floor(s) == s,
                "ResNet: strided convolutions (pooling 'none') need whole "
                "strides >= 1, got ",
                s);
    out[i] = static_cast<int64_t>(s);
  }
  return IntStridePair({out[0], out[1]});
}

void he_normal_(at::Tensor weight) {
  torch::NoGradGuard no_grad;
  // fan_in = in_channels x kernel area (or in_features for a dense kernel).
  const double fan_in = static_cast<double>(weight.numel() / weight.size(0));
  // A standard normal truncated to [-2, 2] has std 0.87962566103423978; the
  // factor restores sqrt(2 / fan_in).
  const double std = std::sqrt(2.0 / fan_in) / 0.87962566103423978;
  weight.normal_();
  for (auto outside = weight.abs() > 2.0; outside.any().item<bool>();
       outside = weight.abs() > 2.0) {
    weight.masked_scatter_(
        outside,
        torch::randn({outside.sum().item<int64_t>()}, weight.options()));
  }
  weight.mul_(std);
}

torch::nn::BatchNorm2d make_batch_norm(int64_t channels) {
  return torch::nn::BatchNorm2d(
      torch::nn::BatchNorm2dOptions(channels).momentum(0.1).eps(1e-5));
}

torch::nn::Conv2d make_conv(int64_t in_channels,
                            int64_t out_channels,
                            int64_t kernel_size,
                            IntStridePair stride,
                            int64_t spatial_dims) {
  const bool waveform = spatial_dims == 1;
  torch::nn::Conv2d conv(
      torch::nn::Conv2dOptions(in_channels,
                               out_channels,
                               waveform
                                   ? torch::ExpandingArray<2>({1, kernel_size})
                                   : torch::ExpandingArray<2>(kernel_size))
          .stride(waveform ? torch::ExpandingArray<2>({1, (*stride)[1]})
                           : torch::ExpandingArray<2>(*stride))
          .padding(waveform ? torch::ExpandingArray<2>({0, kernel_size / 2})
                            : torch::ExpandingArray<2>(kernel_size / 2))
          .bias(false));
  he_normal_(conv->weight);
  return conv;
}

ResidualLayerImpl::ResidualLayerImpl(const ResidualLayerOptions& options_)
    : options(options_) {
  reset();
}

void ResidualLayerImpl::reset() {
  TORCH_CHECK(options.in_channels() > 0 && options.filters() > 0,
              "ResidualLayer: expected positive channel counts, got ",
              options.in_channels(),
              " -> ",
              options.filters());
  TORCH_CHECK(options.kernel_size() > 0 && options.kernel_size() % 2 == 1,
              "ResidualLayer: expected an odd kernel size, got ",
              options.kernel_size());
  TORCH_CHECK(options.project() || options.in_channels() == options.filters(),
              "ResidualLayer: an identity layer keeps the channel count, got ",
              options.in_channels(),
              " -> ",
              options.filters());
  const bool pooled = options.project() && options.pooling() != Pooling::kNone;
  const IntStridePair stride = options.project() && !pooled
                                   ? whole_strides(options.strides())
                                   : IntStridePair(1);
  bn0 = register_module("bn0", make_batch_norm(options.in_channels()));
  conv0 = register_module("conv0",
                          make_conv(options.in_channels(),
                                    options.filters(),
                                    options.kernel_size(),
                                    stride,
                                    options.spatial_dims()));
  bn1 = register_module("bn1", make_batch_norm(options.filters()));
  conv1 = register_module("conv1",
                          make_conv(options.filters(),
                                    options.filters(),
                                    options.kernel_size(),
                                    1,
                                    options.spatial_dims()));
  if (options.project()) {
    shortcut = register_module("shortcut",
                               make_conv(options.in_channels(),
                                         options.filters(),
                                         1,
                                         stride,
                                         options.spatial_dims()));
  }
  if (pooled) {
    pooling = make_pooling_layer(options.pooling(),
                                 options.strides(),
                                 options.diffstride(),
                                 options.spatial_dims());
    register_module("pooling", pooling.ptr());
  }
}

void ResidualLayerImpl::pretty_print(std::ostream& stream) const {
  stream << "diffstride::ResidualLayer(" << options.in_channels() << " -> "
         << options.filters() << (options.project() ? ", project" : "")
         << ", pooling=" << pooling_name(options.pooling()) << ")";
}

at::Tensor ResidualLayerImpl::forward(const at::Tensor& input) {
  return forward_traced(input, nullptr);
}

at::Tensor ResidualLayerImpl::forward_traced(const at::Tensor& input,
                                             ForwardTrace* trace) {
  namespace F = torch::nn::functional;
  const auto activated = F::relu(bn0(input));
  auto h = traced_pooling(
      pooling, options.pooling(), traced(conv0, activated, trace), trace);
  h = traced(conv1, F::relu(bn1(h)), trace);
  if (!options.project()) {
    return h + input;
  }
  // The shared pooling layer was recorded once, on the main path.
  return h + traced_pooling(pooling,
                            options.pooling(),
                            traced(shortcut, activated, trace),
                            nullptr);
}

at::Tensor traced_pooling(torch::nn::AnyModule& pooling,
                          Pooling kind,
                          const at::Tensor& input,
                          ForwardTrace* trace) {
  if (pooling.is_empty()) {
    return input;
  }
  auto output = pooling.forward(input);
  if (trace != nullptr && kind == Pooling::kDiffStride) {
    trace->diffstride_outputs.push_back({output.size(2), output.size(3)});
  }
  return output;
}

at::Tensor traced(torch::nn::Conv2d& conv,
                  const at::Tensor& input,
                  ForwardTrace* trace) {
  auto output = conv(input);
  if (trace != nullptr) {
    // Each output element: in_channels x kernel area multiply-adds.
    trace->multiply_adds += output.numel() / output.size(0) *
                            (conv->weight.numel() / conv->weight.size(0));
  }
  return output;
}

DiffStride ResidualLayerImpl::diffstride() const {
  if (pooling.is_empty() || options.pooling() != Pooling::kDiffStride) {
    return DiffStride(nullptr);
  }
  return DiffStride(std::dynamic_pointer_cast<DiffStrideImpl>(pooling.ptr()));
}

DiffStride1d ResidualLayerImpl::diffstride1d() const {
  if (pooling.is_empty() || options.pooling() != Pooling::kDiffStride) {
    return DiffStride1d(nullptr);
  }
  const auto along_time =
      std::dynamic_pointer_cast<AlongTimeImpl>(pooling.ptr());
  return along_time ? along_time->diffstride : DiffStride1d(nullptr);
}

}  // namespace diffstride
