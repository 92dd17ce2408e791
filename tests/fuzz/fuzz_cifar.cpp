// The CIFAR-10 reader on an arbitrary test batch of one or two records.
#include <diffstride/data/cifar.h>

#include "fuzz_input_file.h"

#include <c10/util/Exception.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  diffstride_fuzz::write_input(data, size, "test_batch.bin");
  try {
    diffstride::load_cifar10(diffstride_fuzz::scratch_folder().string(),
                             /*train=*/false,
                             /*records_per_file=*/size > 3073 ? 2 : 1);
  } catch (const c10::Error&) {
  }
  return 0;
}
