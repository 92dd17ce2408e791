#include "train/checked_file.h"

#include <c10/util/Exception.h>
#include <zlib.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <system_error>

namespace diffstride {
namespace detail {

namespace {

namespace fs = std::filesystem;

// 8 bytes of magic, then the content's size (8 bytes) and CRC-32 (4 bytes),
// little-endian.
constexpr char kMagic[8] = {'D', 'S', 'T', 'R', 'I', 'D', 'E', '1'};
constexpr size_t kHeaderSize = sizeof(kMagic) + 8 + 4;

uint32_t crc32_of(const std::string& bytes) {
  uLong crc = crc32_z(0L, Z_NULL, 0);
  crc =
      crc32_z(crc, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size());
  return static_cast<uint32_t>(crc);
}

void put_little_endian(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  }
}

uint64_t get_little_endian(const std::string& in, size_t at, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) {
    value |= static_cast<uint64_t>(static_cast<uint8_t>(in[at + i])) << (8 * i);
  }
  return value;
}

}  // namespace

void replace_file(const fs::path& path, const std::string& bytes) {
  const fs::path temporary = path.string() + ".tmp";
  bool written = false;
  int error = 0;
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (out) {
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      out.flush();
      written = out.good();
      out.close();
      written = written && !out.fail();
    }
    error = errno;
  }
  if (!written) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    TORCH_CHECK(false,
                path.string(),
                ": cannot write (",
                error != 0 ? std::strerror(error) : "write failed",
                "); the previous file, if any, is unchanged");
  }
  std::error_code renamed;
  fs::rename(temporary, path, renamed);
  if (renamed) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    TORCH_CHECK(false,
                path.string(),
                ": cannot replace (",
                renamed.message(),
                "); the previous file, if any, is unchanged");
  }
}

std::string with_integrity_header(const std::string& content) {
  std::string out(kMagic, sizeof(kMagic));
  put_little_endian(out, content.size(), 8);
  put_little_endian(out, crc32_of(content), 4);
  return out + content;
}

std::string verified_content(const fs::path& path, const char* what) {
  std::error_code status_error;
  const auto status = fs::status(path, status_error);
  TORCH_CHECK(fs::exists(status), path.string(), ": ", what, " not found");
  TORCH_CHECK(fs::is_regular_file(status),
              path.string(),
              ": not a regular file; expected a ",
              what);
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in, path.string(), ": cannot read (", std::strerror(errno), ")");
  std::string header(kHeaderSize, '\0');
  in.read(header.data(), static_cast<std::streamsize>(kHeaderSize));
  TORCH_CHECK(in.gcount() == static_cast<std::streamsize>(kHeaderSize) &&
                  std::memcmp(header.data(), kMagic, sizeof(kMagic)) == 0,
              path.string(),
              ": not a diffstride ",
              what,
              " (its header is missing or damaged)");
  const uint64_t size = get_little_endian(header, sizeof(kMagic), 8);
  const uint64_t on_disk = fs::file_size(path);
  TORCH_CHECK(size == on_disk - kHeaderSize,
              path.string(),
              ": damaged ",
              what,
              ": the header announces ",
              size,
              " bytes of content, the file holds ",
              on_disk - kHeaderSize);
  std::string content(size, '\0');
  in.read(content.data(), static_cast<std::streamsize>(size));
  TORCH_CHECK(in.gcount() == static_cast<std::streamsize>(size),
              path.string(),
              ": cannot read the whole ",
              what);
  const auto expected =
      static_cast<uint32_t>(get_little_endian(header, sizeof(kMagic) + 8, 4));
  TORCH_CHECK(crc32_of(content) == expected,
              path.string(),
              ": damaged ",
              what,
              ": its content does not match the checksum written with it");
  return content;
}

}  // namespace detail
}  // namespace diffstride
