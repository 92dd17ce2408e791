// The image-folder decoder on arbitrary bytes (PNG and JPEG headers and
// data): a std::runtime_error naming the file (damaged, too many pixels) or
// pixels within the budget, never a crash or an allocation beyond it. The
// first byte picks grey or RGB; a decoded image is then cropped and resized
// as a batch would.
#include "data/image_decoding.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  constexpr int64_t kMaxPixels = int64_t{1} << 20;
  const int64_t channels = data[0] % 2 == 0 ? 3 : 1;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const auto image = diffstride::detail::decode_image_bytes(
        "fuzz.img", bytes, channels, kMaxPixels);
    if (image.height * image.width > kMaxPixels ||
        static_cast<int64_t>(image.pixels.size()) !=
            image.height * image.width * channels) {
      __builtin_trap();
    }
    std::vector<float> out(static_cast<size_t>(channels * 8 * 8));
    diffstride::detail::resample(image,
                                 {0,
                                  0,
                                  static_cast<double>(image.height),
                                  static_cast<double>(image.width)},
                                 8,
                                 /*mirror=*/true,
                                 out.data());
  } catch (const std::runtime_error&) {
  }
  return 0;
}
