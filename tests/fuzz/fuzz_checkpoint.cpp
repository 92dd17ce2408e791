// The checkpoint loader on arbitrary files, into a small ResNet: a clear
// c10::Error (damaged, another architecture) or the weights, never a crash.
// The model is that of the seed, a run of tests/support/tiny_run.h.
#include <diffstride/models/resnet.h>
#include <diffstride/train/run_folder.h>

#include "fuzz_input_file.h"

#include <c10/util/Exception.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static diffstride::ResNet model = [] {
    return diffstride::ResNet(diffstride::ResNetOptions({4, 8}, {1, 2})
                                  .layers_per_block(1)
                                  .in_channels(1)
                                  .num_classes(10)
                                  .pooling(diffstride::Pooling::kDiffStride));
  }();
  const auto path = diffstride_fuzz::write_input(data, size, "checkpoint.pt");
  try {
    diffstride::load_model_weights(path, *model);
  } catch (const c10::Error&) {
  }
  return 0;
}
