#include "data/image_decoding.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace diffstride {
namespace detail {

namespace {

// The whole file, in one read (this is the decoding threads' hot path).
std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    throw std::runtime_error(path + ": cannot be opened");
  }
  const std::streamsize size = in.tellg();
  std::vector<uint8_t> bytes(static_cast<size_t>(std::max<std::streamsize>(size, 0)));
  in.seekg(0);
  if (size < 0 ||
      !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw std::runtime_error(path + ": cannot be read");
  }
  return bytes;
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

DecodedImage decode_jpeg(const std::string& path,
                         const std::vector<uint8_t>& bytes,
                         int64_t channels) {
  jpeg_decompress_struct info;
  JpegErrors errors;
  info.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_fail;
  errors.manager.emit_message = jpeg_warning_fails;
  DecodedImage image;
  // Nothing with a destructor is created between setjmp and a longjmp.
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&info);
    throw std::runtime_error(path + ": damaged JPEG (" + errors.message + ")");
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&info, TRUE);
  info.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  image.height = info.output_height;
  image.width = info.output_width;
  image.channels = info.output_components;
  image.pixels.resize(static_cast<size_t>(image.height * image.width *
                                          image.channels));
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = image.pixels.data() +
                   static_cast<size_t>(info.output_scanline) * image.width *
                       image.channels;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return image;
}

DecodedImage decode_png(const std::string& path,
                        const std::vector<uint8_t>& bytes,
                        int64_t channels) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  const auto fail = [&](const std::string& what) {
    const std::string message = png.message;
    png_image_free(&png);
    return std::runtime_error(path + ": " + what + " (" + message + ")");
  };
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    throw fail("damaged PNG");
  }
  png.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  DecodedImage image;
  image.height = png.height;
  image.width = png.width;
  image.channels = channels;
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  // Transparent pixels composed over black.
  png_color black{0, 0, 0};
  if (!png_image_finish_read(&png, &black, image.pixels.data(), 0, nullptr)) {
    throw fail("damaged PNG");
  }
  return image;
}

}  // namespace

DecodedImage decode_image(const std::string& path, int64_t channels) {
  const auto bytes = read_bytes(path);
  static const uint8_t kPng[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 &&
      bytes[2] == 0xFF) {
    return decode_jpeg(path, bytes, channels);
  }
  if (bytes.size() >= sizeof kPng &&
      std::equal(std::begin(kPng), std::end(kPng), bytes.begin())) {
    return decode_png(path, bytes, channels);
  }
  throw std::runtime_error(path + ": not a JPEG or PNG file");
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
          sum += w[k] * horizontal[((rows.first[y] + k - y0) * size + source_x) *
                                       C +
                                   c];
        }
        out[(c * size + y) * size + x] =
            static_cast<float>(std::clamp(sum, 0.0, 255.0));
      }
    }
  }
}

}  // namespace detail
}  // namespace diffstride
