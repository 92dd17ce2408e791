#include "data/image_decoding.h"

#include "data/regular_file.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <new>
#include <stdexcept>

namespace diffstride {
namespace detail {

namespace {

bool within_pixel_budget(int64_t width, int64_t height, int64_t max_pixels) {
  return width >= 1 && height >= 1 && width <= max_pixels / height;
}

std::runtime_error over_pixel_budget(const std::string& path,
                                     int64_t width,
                                     int64_t height,
                                     int64_t max_pixels) {
  return std::runtime_error(path + ": declares " + std::to_string(width) +
                            " x " + std::to_string(height) +
                            " pixels; expected at least 1 x 1 and at most "
                            "data.max_image_pixels = " +
                            std::to_string(max_pixels) +
                            " (raise it for larger images)");
}

// BT.601 luma, the grey of every format (libjpeg's own for JPEG).
uint8_t luma(int red, int green, int blue) {
  return static_cast<uint8_t>(
      std::lround(0.299 * red + 0.587 * green + 0.114 * blue));
}

// `source` (height x width x `from` channels: grey, grey + alpha, RGB, RGBA
// or, with `cmyk`, CMYK) as `image.channels` channels (1: grey, 3: RGB):
// alpha composed over black, CMYK by its inks (`inverted`: Adobe's
// convention, 255 = no ink), grey by BT.601.
void convert_pixels(const std::vector<uint8_t>& source,
                    int64_t from,
                    bool cmyk,
                    bool inverted,
                    DecodedImage& image) {
  const int64_t count = image.height * image.width;
  image.pixels.resize(static_cast<size_t>(count * image.channels));
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* in = source.data() + i * from;
    int rgb[3];
    if (cmyk) {
      const int white = inverted ? in[3] : 255 - in[3];
      for (int c = 0; c < 3; ++c) {
        const int v = inverted ? in[c] : 255 - in[c];
        rgb[c] = (v * white + 127) / 255;
      }
    } else {
      const bool alpha = from == 2 || from == 4;
      const int a = alpha ? in[from - 1] : 255;
      for (int c = 0; c < 3; ++c) {
        const int v = in[from >= 3 ? c : 0];
        rgb[c] = alpha ? (v * a + 127) / 255 : v;
      }
    }
    uint8_t* out = image.pixels.data() + i * image.channels;
    if (image.channels == 1) {
      out[0] = from <= 2 ? static_cast<uint8_t>(rgb[0])
                         : luma(rgb[0], rgb[1], rgb[2]);
    } else {
      for (int c = 0; c < 3; ++c) {
        out[c] = static_cast<uint8_t>(rgb[c]);
      }
    }
  }
}

// libjpeg reports errors through error_exit (which must not return) and
// damage it can work around (a truncated file, say) as warnings: both end
// the decode here, through longjmp, with the library's message.
struct JpegErrors {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
};

extern "C" void jpeg_fail(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  info->err->format_message(info, errors->message);
  std::longjmp(errors->jump, 1);
}

extern "C" void jpeg_warning_fails(j_common_ptr info, int level) {
  if (level < 0) {  // a warning, not a trace message
    jpeg_fail(info);
  }
}

// RGB and grey come from libjpeg's own conversion (grey: the Y of YCbCr,
// BT.601); CMYK and YCCK are decoded to CMYK and converted here.
DecodedImage decode_jpeg(const std::string& path,
                         const std::string& bytes,
                         int64_t channels,
                         int64_t max_pixels) {
  jpeg_decompress_struct info;
  JpegErrors errors;
  info.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_fail;
  errors.manager.emit_message = jpeg_warning_fails;
  DecodedImage image;
  std::vector<uint8_t> samples;
  bool cmyk = false, inverted = false;
  int64_t from = 0;
  // Nothing with a destructor is created between setjmp and a longjmp.
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&info);
    throw std::runtime_error(path + ": damaged JPEG (" + errors.message + ")");
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info,
               reinterpret_cast<const unsigned char*>(bytes.data()),
               static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&info, TRUE);
  image.height = info.image_height;
  image.width = info.image_width;
  if (!within_pixel_budget(image.width, image.height, max_pixels)) {
    jpeg_destroy_decompress(&info);
    throw over_pixel_budget(path, image.width, image.height, max_pixels);
  }
  cmyk = info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK;
  inverted = cmyk && info.saw_Adobe_marker;
  info.out_color_space = cmyk            ? JCS_CMYK
                         : channels == 1 ? JCS_GRAYSCALE
                                         : JCS_RGB;
  jpeg_start_decompress(&info);
  from = info.output_components;
  samples.resize(static_cast<size_t>(image.height * image.width * from));
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = samples.data() + static_cast<size_t>(info.output_scanline) *
                                        image.width * from;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  image.channels = channels;
  if (!cmyk && from == channels) {
    image.pixels = std::move(samples);
  } else {
    convert_pixels(samples, from, cmyk, inverted, image);
  }
  return image;
}

// libpng's errors end the decode through png_longjmp with the message; its
// warnings (an odd ICC profile, say) do not matter for the pixels.
struct PngReader {
  const std::string* bytes = nullptr;
  size_t offset = 0;
  char message[256] = {0};
};

extern "C" void png_fail(png_structp png, png_const_charp message) {
  auto* reader = static_cast<PngReader*>(png_get_error_ptr(png));
  std::snprintf(reader->message, sizeof reader->message, "%s", message);
  png_longjmp(png, 1);
}

extern "C" void png_ignore_warning(png_structp, png_const_charp) {}

extern "C" void png_read_bytes(png_structp png, png_bytep out, size_t size) {
  auto* reader = static_cast<PngReader*>(png_get_io_ptr(png));
  if (size > reader->bytes->size() - reader->offset) {
    png_error(png, "the file ends early");
  }
  std::memcpy(out, reader->bytes->data() + reader->offset, size);
  reader->offset += size;
}

// Every PNG colour type and depth as 8-bit samples taken as they are (no
// gamma transform, as OpenCV reads them): 16-bit scaled by 255/65535,
// palettes and low bit depths expanded, transparency as alpha.
DecodedImage decode_png(const std::string& path,
                        const std::string& bytes,
                        int64_t channels,
                        int64_t max_pixels) {
  PngReader reader;
  reader.bytes = &bytes;
  png_structp png = png_create_read_struct(
      PNG_LIBPNG_VER_STRING, &reader, png_fail, png_ignore_warning);
  png_infop info = png == nullptr ? nullptr : png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw std::bad_alloc();
  }
  DecodedImage image;
  std::vector<uint8_t> samples;
  std::vector<png_bytep> rows;
  int64_t from = 0;
  // Nothing with a destructor is created between setjmp and a longjmp.
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw std::runtime_error(path + ": damaged PNG (" + reader.message + ")");
  }
  png_set_read_fn(png, &reader, png_read_bytes);
  png_read_info(png, info);
  image.width = png_get_image_width(png, info);
  image.height = png_get_image_height(png, info);
  if (!within_pixel_budget(image.width, image.height, max_pixels)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw over_pixel_budget(path, image.width, image.height, max_pixels);
  }
  png_set_scale_16(png);
  png_set_palette_to_rgb(png);
  png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) {
    png_set_tRNS_to_alpha(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  from = png_get_channels(png, info);
  samples.resize(static_cast<size_t>(image.height * image.width * from));
  rows.resize(static_cast<size_t>(image.height));
  for (int64_t y = 0; y < image.height; ++y) {
    rows[static_cast<size_t>(y)] = samples.data() + y * image.width * from;
  }
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  image.channels = channels;
  if (from == channels) {
    image.pixels = std::move(samples);
  } else {
    convert_pixels(samples, from, false, false, image);
  }
  return image;
}

}  // namespace

DecodedImage decode_image_bytes(const std::string& path,
                                const std::string& bytes,
                                int64_t channels,
                                int64_t max_pixels) {
  static const char kJpeg[] = "\xFF\xD8\xFF";
  static const char kPng[] = "\x89PNG\r\n\x1a\n";
  if (bytes.rfind(kJpeg, 0) == 0) {
    return decode_jpeg(path, bytes, channels, max_pixels);
  }
  if (bytes.rfind(kPng, 0) == 0) {
    return decode_png(path, bytes, channels, max_pixels);
  }
  throw std::runtime_error(path + ": not a JPEG or PNG file");
}

DecodedImage decode_image(const std::string& path,
                          int64_t channels,
                          int64_t max_pixels) {
  // The largest file an image within the budget can be: 16-bit RGBA
  // without compression is 8 bytes a pixel, plus room for metadata.
  const int64_t max_bytes =
      std::min<int64_t>(max_pixels, int64_t{1} << 40) * 8 + (int64_t{1} << 20);
  // In one read (this is the decoding threads' hot path).
  return decode_image_bytes(
      path,
      read_regular_file(
          path, max_bytes, "an image within data.max_image_pixels can take"),
      channels,
      max_pixels);
}

namespace {

// Weights of the input samples [first, first + count) for each of `out`
// output samples covering [start, start + length) of the input axis.
struct AxisWeights {
  std::vector<int64_t> first, count;
  std::vector<double> weights;  // count entries per output, padded to `taps`
  int64_t taps = 0;
};

AxisWeights axis_weights(double start, double length, int64_t out, int64_t in) {
  const double scale = length / static_cast<double>(out);
  const double support = std::max(scale, 1.0);  // filter half-width
  AxisWeights axis;
  axis.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  for (int64_t i = 0; i < out; ++i) {
    const double centre = start + (static_cast<double>(i) + 0.5) * scale;
    int64_t lo = static_cast<int64_t>(std::floor(centre - support));
    int64_t hi = static_cast<int64_t>(std::ceil(centre + support));
    lo = std::max<int64_t>(lo, 0);
    hi = std::min<int64_t>(hi, in);
    std::vector<double> w;
    double total = 0;
    for (int64_t j = lo; j < hi; ++j) {
      const double x = (static_cast<double>(j) + 0.5 - centre) / support;
      const double v = std::max(0.0, 1.0 - std::abs(x));
      w.push_back(v);
      total += v;
    }
    if (total <= 0) {  // a box past the edge: the nearest sample
      lo = std::clamp<int64_t>(static_cast<int64_t>(centre), 0, in - 1);
      w.assign(1, 1.0);
      total = 1.0;
    }
    axis.first.push_back(lo);
    axis.count.push_back(static_cast<int64_t>(w.size()));
    for (auto& v : w) {
      axis.weights.push_back(v / total);
    }
    axis.weights.resize(static_cast<size_t>((i + 1) * axis.taps), 0.0);
  }
  return axis;
}

}  // namespace

void resample(const DecodedImage& image,
              const CropBox& box,
              int64_t size,
              bool mirror,
              float* out) {
  const auto rows = axis_weights(box.top, box.height, size, image.height);
  const auto cols = axis_weights(box.left, box.width, size, image.width);
  const int64_t C = image.channels, W = image.width;
  // Columns first, into float rows, for the input rows the box reads.
  const int64_t y0 = rows.first.front();
  const int64_t y1 = rows.first.back() + rows.count.back();
  std::vector<float> horizontal(static_cast<size_t>((y1 - y0) * size * C));
  for (int64_t y = y0; y < y1; ++y) {
    const uint8_t* row = image.pixels.data() + y * W * C;
    for (int64_t x = 0; x < size; ++x) {
      const double* w = cols.weights.data() + x * cols.taps;
      for (int64_t c = 0; c < C; ++c) {
        double sum = 0;
        for (int64_t k = 0; k < cols.count[x]; ++k) {
          sum += w[k] * row[(cols.first[x] + k) * C + c];
        }
        horizontal[((y - y0) * size + x) * C + c] = static_cast<float>(sum);
      }
    }
  }
  for (int64_t y = 0; y < size; ++y) {
    const double* w = rows.weights.data() + y * rows.taps;
    for (int64_t x = 0; x < size; ++x) {
      const int64_t source_x = mirror ? size - 1 - x : x;
      for (int64_t c = 0; c < C; ++c) {
        double sum = 0;
        for (int64_t k = 0; k < rows.count[y]; ++k) {
          sum +=
              w[k] *
              horizontal[((rows.first[y] + k - y0) * size + source_x) * C + c];
        }
        out[(c * size + y) * size + x] =
            static_cast<float>(std::clamp(sum, 0.0, 255.0));
      }
    }
  }
}

}  // namespace detail
}  // namespace diffstride
