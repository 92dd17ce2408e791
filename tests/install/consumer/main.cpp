// One DiffStride forward through the installed library: prints the output
// shape as "N x C x H x W".
#include <diffstride/diffstride.h>

#include <torch/torch.h>

#include <iostream>

int main() {
  diffstride::DiffStride pool(diffstride::DiffStrideOptions().strides(2.0));
  const auto y = pool(torch::randn({2, 3, 32, 32}));
  std::cout << y.size(0) << " x " << y.size(1) << " x " << y.size(2) << " x "
            << y.size(3) << "\n";
  return 0;
}
