#pragma once

// JPEG (libjpeg-turbo) and PNG (libpng) files decoded to 8-bit pixels, and
// the crop-and-resize of image folders (docs/data.md, "Image folders").
// Internal to the training library.

#include <cstdint>
#include <string>
#include <vector>

namespace diffstride {
namespace detail {

/// Decoded pixels, row-major height x width x channels (1 or 3).
struct DecodedImage {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

/// Decodes the JPEG or PNG file `path` (told apart by its first bytes, not
/// its name) to `channels` channels (1: grey, 3: RGB) of 8 bits: every PNG
/// colour type and depth (16-bit samples scaled by 255/65535, palettes
/// expanded, alpha composed over black), JPEG in grey, YCbCr, RGB, CMYK and
/// YCCK; grey is BT.601 luma for every format (docs/data.md). A file that
/// is not a regular file, not such an image, truncated or damaged (a
/// libjpeg warning counts as damage), or that declares more than
/// `max_pixels` pixels (checked before anything is allocated for them)
/// throws std::runtime_error naming the file.
DecodedImage decode_image(const std::string& path,
                          int64_t channels,
                          int64_t max_pixels);

/// As decode_image, for the file's bytes (`path` names it in errors).
DecodedImage decode_image_bytes(const std::string& path,
                                const std::string& bytes,
                                int64_t channels,
                                int64_t max_pixels);

/// A crop of `image`: rows [top, top + height), columns [left, left + width).
struct CropBox {
  double top, left, height, width;
};

/// The box resampled to size x size pixels (channels-first, C x size x size,
/// values in [0, 255] not rounded, into `out`), optionally mirrored left to
/// right. Each output pixel
/// averages the input under a triangle filter stretched by the scale
/// factor when shrinking (antialiased, as PIL's bilinear resize), and
/// interpolates bilinearly when enlarging.
void resample(const DecodedImage& image,
              const CropBox& box,
              int64_t size,
              bool mirror,
              float* out);

}  // namespace detail
}  // namespace diffstride
