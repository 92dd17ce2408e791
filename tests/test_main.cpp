// GoogleTest entry point: LibTorch starts with one intra-op thread here, so
// use every core, as the library's users are told to.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  torch::set_num_threads(
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  return RUN_ALL_TESTS();
}
