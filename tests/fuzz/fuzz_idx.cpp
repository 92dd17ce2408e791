// The IDX reader on arbitrary bytes (plain or gzip): a clear c10::Error or a
// tensor, never a crash, a hang or unbounded memory.
#include <diffstride/data/idx.h>

#include "fuzz_input_file.h"

#include <c10/util/Exception.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = diffstride_fuzz::write_input(data, size, "input.idx");
  try {
    diffstride::read_idx(path);
  } catch (const c10::Error&) {
  }
  return 0;
}
