#include <diffstride/data/idx.h>

#include <ATen/ATen.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace diffstride {

namespace {

// An upper bound on the data an IDX header may announce (16 GiB): beyond it
// the sizes are taken for damage rather than trusted.
constexpr int64_t kMaxIdxBytes = int64_t{1} << 34;

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// An IDX file opened for reading, plain or gzip (zlib reads plain files
// through the same calls), read front to back in pieces so that nothing
// beyond what the header announces is ever inflated or held.
class IdxStream {
 public:
  explicit IdxStream(const std::string& path) : path_(path) {
    std::error_code error;
    const auto status = std::filesystem::status(path, error);
    TORCH_CHECK(std::filesystem::exists(status),
                path,
                ": cannot open the file (no such file)");
    // A FIFO would block and a device (/dev/zero) never end.
    TORCH_CHECK(std::filesystem::is_regular_file(status),
                path,
                ": not a regular file; expected an IDX file");
    file_ = gzopen(path.c_str(), "rb");
    TORCH_CHECK(file_ != nullptr,
                path,
                ": cannot open the file (",
                std::strerror(errno),
                ")");
  }
  ~IdxStream() {
    gzclose(file_);
  }
  IdxStream(const IdxStream&) = delete;
  IdxStream& operator=(const IdxStream&) = delete;

  // Reads up to `size` bytes into `out`; returns how many (fewer at the
  // end of the data). Corrupt gzip data is an error.
  size_t read(uint8_t* out, size_t size) {
    size_t done = 0;
    while (done < size) {
      const unsigned piece =
          static_cast<unsigned>(std::min<size_t>(size - done, 1 << 20));
      const int n = gzread(file_, out + done, piece);
      if (n < 0) {
        int code = Z_OK;
        const char* message = gzerror(file_, &code);
        TORCH_CHECK(false,
                    path_,
                    ": corrupt or truncated gzip data (",
                    message != nullptr ? message : "",
                    ")");
      }
      if (n == 0) {
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (done < size) {
      // The end of the data: a gzip stream cut short says so here.
      int code = Z_OK;
      const char* message = gzerror(file_, &code);
      TORCH_CHECK(code == Z_OK || code == Z_STREAM_END,
                  path_,
                  ": corrupt or truncated gzip data (",
                  message != nullptr ? message : "",
                  ")");
    }
    return done;
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

// The array of an IDX file of unsigned bytes; `expected_dims` < 0 accepts
// any number of dimensions (1 to 4).
at::Tensor read_idx_array(const std::string& path, int expected_dims) {
  IdxStream in(path);
  uint8_t magic_bytes[4] = {0, 0, 0, 0};
  const size_t got = in.read(magic_bytes, 4);
  TORCH_CHECK(
      got == 4, path, ": too short for an IDX header (", got, " bytes)");
  const int dims = expected_dims >= 0 ? expected_dims : magic_bytes[3];
  const uint32_t expected_magic = 0x00000800u + static_cast<uint32_t>(dims);
  const uint32_t magic = big_endian(magic_bytes);
  TORCH_CHECK(magic == expected_magic && dims >= 1 && dims <= 4,
              path,
              ": bad IDX magic number 0x",
              std::hex,
              magic,
              ", expected 0x0000080",
              dims,
              std::dec,
              " (unsigned bytes, ",
              dims,
              " dimension",
              dims > 1 ? "s" : "",
              ")");
  std::vector<uint8_t> size_bytes(4 * static_cast<size_t>(dims));
  TORCH_CHECK(
      in.read(size_bytes.data(), size_bytes.size()) == size_bytes.size(),
      path,
      ": truncated IDX header");
  std::vector<int64_t> sizes;
  int64_t count = 1;
  for (int d = 0; d < dims; ++d) {
    sizes.push_back(big_endian(size_bytes.data() + 4 * d));
    TORCH_CHECK(sizes.back() > 0 && sizes.back() < (int64_t{1} << 31),
                path,
                ": bad dimension size ",
                sizes.back());
    TORCH_CHECK(count <= kMaxIdxBytes / sizes.back(),
                path,
                ": the header announces sizes ",
                at::IntArrayRef(sizes),
                "..., more than ",
                kMaxIdxBytes,
                " bytes: not a plausible IDX file");
    count *= sizes.back();
  }
  // Read in pieces into a buffer that grows with what is really there, so
  // that a header announcing more than the file holds costs no more memory
  // than the file's content.
  std::vector<uint8_t> data;
  int64_t have = 0;
  while (have < count) {
    const int64_t piece = std::min<int64_t>(count - have, int64_t{1} << 24);
    data.resize(static_cast<size_t>(have + piece));
    const auto n = static_cast<int64_t>(
        in.read(data.data() + have, static_cast<size_t>(piece)));
    have += n;
    if (n < piece) {
      break;
    }
  }
  uint8_t extra = 0;
  const bool trailing = have == count && in.read(&extra, 1) == 1;
  TORCH_CHECK(have == count && !trailing,
              path,
              ": the header announces ",
              count,
              " bytes of data (sizes ",
              at::IntArrayRef(sizes),
              "), the file holds ",
              trailing ? "more (trailing bytes)"
                       : std::to_string(have) + " (truncated)");
  auto out = at::empty(sizes, at::kByte);
  std::memcpy(out.data_ptr<uint8_t>(), data.data(), static_cast<size_t>(count));
  return out;
}

}  // namespace

at::Tensor read_idx(const std::string& path) {
  return read_idx_array(path, -1);
}

Dataset load_idx_dataset(const std::string& name,
                         const std::string& images_path,
                         const std::string& labels_path,
                         int64_t num_classes) {
  const auto images = read_idx_array(images_path, 3);
  const auto labels = read_idx_array(labels_path, 1);
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
