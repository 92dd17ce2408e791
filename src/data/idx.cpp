#include <diffstride/data/idx.h>

#include <ATen/ATen.h>
#include <zlib.h>

#include <cstring>
#include <vector>

namespace diffstride {

namespace {

// The whole file, decompressed when it is gzip (zlib reads plain files
// through the same calls).
std::vector<uint8_t> read_all(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  TORCH_CHECK(file != nullptr,
              path,
              ": cannot open the file (",
              std::strerror(errno),
              ")");
  std::vector<uint8_t> bytes;
  uint8_t buffer[1 << 16];
  int n = 0;
  while ((n = gzread(file, buffer, sizeof(buffer))) > 0) {
    bytes.insert(bytes.end(), buffer, buffer + n);
  }
  int code = Z_OK;
  const char* message = gzerror(file, &code);
  const std::string reason = message != nullptr ? message : "";
  gzclose(file);
  TORCH_CHECK(n >= 0 && (code == Z_OK || code == Z_STREAM_END),
              path,
              ": corrupt or truncated gzip data (",
              reason,
              ")");
  return bytes;
}

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// The array of an IDX file with `dims` dimensions of unsigned bytes.
at::Tensor parse_idx(const std::string& path,
                     const std::vector<uint8_t>& bytes,
                     int expected_dims) {
  const uint32_t expected_magic =
      0x00000800u + static_cast<uint32_t>(expected_dims);
  TORCH_CHECK(bytes.size() >= 4,
              path,
              ": too short for an IDX header (",
              bytes.size(),
              " bytes)");
  const uint32_t magic = big_endian(bytes.data());
  TORCH_CHECK(magic == expected_magic,
              path,
              ": bad IDX magic number 0x",
              std::hex,
              magic,
              ", expected 0x0000080",
              expected_dims,
              std::dec,
              " (unsigned bytes, ",
              expected_dims,
              " dimension",
              expected_dims > 1 ? "s" : "",
              ")");
  const size_t header = 4 + 4 * static_cast<size_t>(expected_dims);
  TORCH_CHECK(bytes.size() >= header, path, ": truncated IDX header");
  std::vector<int64_t> sizes;
  int64_t count = 1;
  for (int d = 0; d < expected_dims; ++d) {
    sizes.push_back(big_endian(bytes.data() + 4 + 4 * d));
    TORCH_CHECK(sizes.back() > 0 && sizes.back() < (int64_t{1} << 31),
                path,
                ": bad dimension size ",
                sizes.back());
    count *= sizes.back();
  }
  const int64_t data = static_cast<int64_t>(bytes.size() - header);
  TORCH_CHECK(data == count,
              path,
              ": the header announces ",
              count,
              " bytes of data (sizes ",
              at::IntArrayRef(sizes),
              "), the file holds ",
              data,
              data < count ? " (truncated)" : " (trailing bytes)");
  auto out = at::empty(sizes, at::kByte);
  std::memcpy(out.data_ptr<uint8_t>(),
              bytes.data() + header,
              static_cast<size_t>(count));
  return out;
}

}  // namespace

at::Tensor read_idx(const std::string& path) {
  const auto bytes = read_all(path);
  TORCH_CHECK(bytes.size() >= 4,
              path,
              ": too short for an IDX header (",
              bytes.size(),
              " bytes)");
  return parse_idx(path, bytes, bytes[3]);
}

Dataset load_idx_dataset(const std::string& name,
                         const std::string& images_path,
                         const std::string& labels_path,
                         int64_t num_classes) {
  const auto image_bytes = read_all(images_path);
  const auto images = parse_idx(images_path, image_bytes, 3);
  const auto label_bytes = read_all(labels_path);
  const auto labels = parse_idx(labels_path, label_bytes, 1);
  TORCH_CHECK(images.size(0) == labels.size(0),
              images_path,
              " holds ",
              images.size(0),
              " images but ",
              labels_path,
              " holds ",
              labels.size(0),
              " labels");
  const int64_t largest = labels.max().item<int64_t>();
  TORCH_CHECK(largest < num_classes,
              labels_path,
              ": label ",
              largest,
              " out of range: expected labels below ",
              num_classes);
  Dataset dataset;
  dataset.name = name;
  dataset.images = images.unsqueeze(1).contiguous();
  dataset.labels = labels.to(at::kLong);
  dataset.num_classes = num_classes;
  return dataset;
}

}  // namespace diffstride
