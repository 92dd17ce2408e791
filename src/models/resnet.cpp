#include <diffstride/models/resnet.h>

#include <diffstride/models/complexity_penalty.h>

#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/moduledict.h>

#include <c10/util/StringUtil.h>

#include <algorithm>
#include <cmath>

namespace diffstride {

ResNetOptions resnet18_options() {
  return ResNetOptions({64, 64, 128, 256, 512}, {1.0, 1.0, 2.0, 2.0, 2.0})
      .id_only({0})
      .layers_per_block(2)
      .kernel_size(3);
}

ResNetOptions resnet56_options() {
  return ResNetOptions({16, 16, 32, 64}, {1.0, 1.0, 2.0, 2.0})
      .layers_per_block(9)
      .kernel_size(3);
}

ResNetOptions resnet1d_options() {
  return ResNetOptions({32, 32, 64, 128, 256}, {4.0, 1.0, 4.0, 4.0, 4.0})
      .id_only({0})
      .layers_per_block(2)
      .kernel_size(9)
      .spatial_dims(1);
}

namespace {

struct NamedFactory {
  const char* name;
  ResNetOptions (*options)();
};

constexpr NamedFactory kFactories[] = {{"resnet18", resnet18_options},
                                       {"resnet56", resnet56_options},
                                       {"resnet1d", resnet1d_options}};

}  // namespace

std::vector<std::string> resnet_factory_names() {
  std::vector<std::string> names;
  for (const auto& factory : kFactories) {
    names.emplace_back(factory.name);
  }
  return names;
}

ResNetOptions resnet_options(const std::string& name) {
  for (const auto& factory : kFactories) {
    if (name == factory.name) {
      return factory.options();
    }
  }
  TORCH_CHECK(false,
              "unknown model '",
              name,
              "': expected one of ",
              c10::Join(", ", resnet_factory_names()));
}

double resnet_parameter_count(const ResNetOptions& options) {
  const auto& filters = options.filters();
  const double kernel = std::pow(static_cast<double>(options.kernel_size()),
                                 static_cast<double>(options.spatial_dims()));
  const auto bn = [](double channels) { return 2 * channels; };
  double count =
      static_cast<double>(options.in_channels()) * filters[0] * kernel +
      bn(filters[0]);
  double channels = filters[0];
  for (size_t b = 1; b < filters.size(); ++b) {
    const double out = filters[b];
    for (int64_t l = 0; l < options.layers_per_block(); ++l) {
      // Pre-activation layer: bn, conv, bn, conv, and at most a 1x1
      // projection.
      count += bn(channels) + channels * out * kernel + bn(out) +
               out * out * kernel + channels * out;
      channels = out;
    }
  }
  return count + bn(channels) +
         channels * static_cast<double>(options.num_classes() + 1);
}

ResNetImpl::ResNetImpl(const ResNetOptions& options_) : options(options_) {
  reset();
}

namespace {

// The options make a network within the size bounds (docs/resnet.md),
// checked before anything is allocated.
void check_resnet_options(const ResNetOptions& options) {
  const auto& filters = options.filters();
  TORCH_CHECK(!filters.empty() && filters.size() == options.strides().size(),
              "ResNet: expected one stride per stage, got ",
              filters.size(),
              " filters and ",
              options.strides().size(),
              " strides");
  TORCH_CHECK(options.layers_per_block() >= 1,
              "ResNet: expected at least 1 layer per block, got ",
              options.layers_per_block());
  TORCH_CHECK(options.num_classes() >= 1 && options.in_channels() >= 1,
              "ResNet: expected positive num_classes and in_channels, got ",
              options.num_classes(),
              " and ",
              options.in_channels());
  for (const auto block : options.id_only()) {
    TORCH_CHECK(block >= 0 && block + 1 < static_cast<int64_t>(filters.size()),
                "ResNet: id_only names block ",
                block,
                ", but there are ",
                filters.size() - 1,
                " blocks");
  }
  TORCH_CHECK(options.spatial_dims() == 1 || options.spatial_dims() == 2,
              "ResNet: expected 1 (waveforms) or 2 (images) spatial "
              "dimensions, got ",
              options.spatial_dims());
  TORCH_CHECK(options.kernel_size() >= 1,
              "ResNet: expected a kernel size >= 1, got ",
              options.kernel_size());
  const int64_t blocks_count = static_cast<int64_t>(filters.size()) - 1;
  TORCH_CHECK(options.layers_per_block() <= kMaxResNetLayers &&
                  blocks_count * options.layers_per_block() <= kMaxResNetLayers,
              "ResNet: ",
              blocks_count,
              " blocks of ",
              options.layers_per_block(),
              " layers exceed the ",
              kMaxResNetLayers,
              " residual layers a ResNet may have");
  for (const auto f : filters) {
    TORCH_CHECK(f >= 1, "ResNet: expected filters >= 1, got ", f);
  }
  const double parameters = resnet_parameter_count(options);
  TORCH_CHECK(parameters <= kMaxResNetParameters,
              "ResNet: these filters (",
              c10::Join(",", filters),
              "), layers and kernels make about ",
              static_cast<int64_t>(std::min(parameters, 9e18)),
              " parameters, more than the ",
              static_cast<int64_t>(kMaxResNetParameters),
              " a ResNet may have (",
              kMaxResNetParameters * 4 / (1 << 30),
              " GiB in float32)");
}

}  // namespace

void ResNetImpl::reset() {
  check_resnet_options(options);
  const auto& filters = options.filters();
  const bool pooled = options.pooling() != Pooling::kNone;
  stem = register_module(
      "stem",
      make_conv(options.in_channels(),
                filters[0],
                options.kernel_size(),
                pooled ? IntStridePair(1) : whole_strides(options.strides()[0]),
                options.spatial_dims()));
  if (pooled) {
    stem_pooling = make_pooling_layer(options.pooling(),
                                      options.strides()[0],
                                      options.diffstride(),
                                      options.spatial_dims());
    register_module("stem_pooling", stem_pooling.ptr());
  }
  blocks.clear();
  // Layer l of block b is "blocks.block<b>_layer<l>" in the state dict, the
  // names the Python package's ResNet has too.
  auto named_layers = register_module("blocks", torch::nn::ModuleDict());
  int64_t channels = filters[0];
  for (size_t b = 1; b < filters.size(); ++b) {
    const int64_t block = static_cast<int64_t>(b) - 1;
    const bool identity_first =
        std::find(options.id_only().begin(), options.id_only().end(), block) !=
        options.id_only().end();
    std::vector<ResidualLayer> layers;
    for (int64_t l = 0; l < options.layers_per_block(); ++l) {
      const bool project = l == 0 && !identity_first;
      auto layer = ResidualLayer(ResidualLayerOptions(channels, filters[b])
                                     .strides(options.strides()[b])
                                     .project(project)
                                     .kernel_size(options.kernel_size())
                                     .pooling(options.pooling())
                                     .diffstride(options.diffstride())
                                     .spatial_dims(options.spatial_dims()));
      named_layers->update(
          std::vector<
              std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{
              {"block" + std::to_string(block) + "_layer" + std::to_string(l),
               layer.ptr()}});
      layers.push_back(layer);
      channels = filters[b];
    }
    blocks.push_back(std::move(layers));
  }
  head_bn = register_module("head_bn", make_batch_norm(channels));
  fc =
      register_module("fc", torch::nn::Linear(channels, options.num_classes()));
  he_normal_(fc->weight);
  torch::nn::init::zeros_(fc->bias);
}

void ResNetImpl::pretty_print(std::ostream& stream) const {
  stream << "diffstride::ResNet(stages=" << options.filters().size()
         << ", layers_per_block=" << options.layers_per_block()
         << ", pooling=" << pooling_name(options.pooling())
         << ", classes=" << options.num_classes() << ")";
}

at::Tensor ResNetImpl::forward(const at::Tensor& input) {
  return forward_traced(input, nullptr, nullptr);
}

at::Tensor ResNetImpl::forward_traced(
    const at::Tensor& input,
    ForwardTrace* trace,
    std::vector<std::vector<int64_t>>* stage_shapes) {
  const bool waveform = options.spatial_dims() == 1;
  TORCH_CHECK(
      waveform
          ? ((input.dim() == 3 || (input.dim() == 4 && input.size(2) == 1)) &&
             input.size(1) == options.in_channels())
          : input.dim() == 4 && input.size(1) == options.in_channels(),
      "ResNet: expected an N x ",
      options.in_channels(),
      waveform ? " x L (or x 1 x L) waveform input" : " x H x W input",
      ", got shape ",
      input.sizes());
  const auto record = [&](const at::Tensor& t) {
    if (stage_shapes != nullptr) {
      stage_shapes->push_back(t.sizes().vec());
    }
  };
  auto x = traced(stem, input.dim() == 3 ? input.unsqueeze(2) : input, trace);
  x = traced_pooling(stem_pooling, options.pooling(), x, trace);
  record(x);
  for (auto& block : blocks) {
    for (auto& layer : block) {
      x = layer->forward_traced(x, trace);
    }
    record(x);
  }
  x = torch::nn::functional::relu(head_bn(x)).mean({2, 3});
  x = fc(x);
  if (trace != nullptr) {
    trace->multiply_adds += fc->weight.numel();
  }
  record(x);
  return x;
}

std::vector<DiffStride> ResNetImpl::diffstride_layers() const {
  std::vector<DiffStride> layers;
  if (options.pooling() != Pooling::kDiffStride ||
      options.spatial_dims() != 2) {
    return layers;
  }
  layers.emplace_back(
      std::dynamic_pointer_cast<DiffStrideImpl>(stem_pooling.ptr()));
  for (const auto& block : blocks) {
    for (const auto& layer : block) {
      if (auto pool = layer->diffstride()) {
        layers.push_back(pool);
      }
    }
  }
  return layers;
}

std::vector<DiffStride1d> ResNetImpl::diffstride1d_layers() const {
  std::vector<DiffStride1d> layers;
  if (options.pooling() != Pooling::kDiffStride ||
      options.spatial_dims() != 1) {
    return layers;
  }
  layers.push_back(
      std::dynamic_pointer_cast<AlongTimeImpl>(stem_pooling.ptr())->diffstride);
  for (const auto& block : blocks) {
    for (const auto& layer : block) {
      if (auto pool = layer->diffstride1d()) {
        layers.push_back(pool);
      }
    }
  }
  return layers;
}

at::Tensor ResNetImpl::complexity_penalty() const {
  return options.spatial_dims() == 1
             ? diffstride::complexity_penalty(diffstride1d_layers())
             : diffstride::complexity_penalty(diffstride_layers());
}

std::vector<std::array<double, 2>> ResNetImpl::current_strides() const {
  std::vector<std::array<double, 2>> strides;
  for (const auto& layer : diffstride_layers()) {
    strides.push_back(layer->current_strides());
  }
  for (const auto& layer : diffstride1d_layers()) {
    strides.push_back({1.0, layer->current_strides()[0]});
  }
  return strides;
}

void ResNetImpl::constrain_strides() {
  for (auto& layer : diffstride_layers()) {
    layer->constrain_strides();
  }
  for (auto& layer : diffstride1d_layers()) {
    layer->constrain_strides();
  }
}

int64_t ResNetImpl::trainable_parameter_count() const {
  int64_t count = 0;
  for (const auto& p : parameters()) {
    if (p.requires_grad()) {
      count += p.numel();
    }
  }
  return count;
}

}  // namespace diffstride
