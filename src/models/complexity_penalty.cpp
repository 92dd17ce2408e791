#include <diffstride/models/complexity_penalty.h>

namespace diffstride {

at::Tensor complexity_penalty(const std::vector<DiffStride>& layers) {
  if (layers.empty()) {
    return at::zeros({});
  }
  at::Tensor area;   // prod_{j <= l} 1 / (s_h^j s_w^j)
  at::Tensor total;  // sum over l of area
  for (const auto& layer : layers) {
    const auto& s = layer->strides;
    const auto shrink = s.numel() == 1 ? s[0] * s[0] : s[0] * s[1];
    area = area.defined() ? area / shrink : shrink.reciprocal();
    total = total.defined() ? total + area : area;
  }
  return total;
}

at::Tensor complexity_penalty(const std::vector<DiffStride1d>& layers) {
  at::Tensor area, total;
  for (const auto& layer : layers) {
    const auto& s = layer->strides[0];
    area = area.defined() ? area / s : s.reciprocal();
    total = total.defined() ? total + area : area;
  }
  return total.defined() ? total : at::zeros({});
}

}  // namespace diffstride
