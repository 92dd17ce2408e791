#include "train/checked_file.h"

#include "data/regular_file.h"

#include <c10/util/Exception.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace diffstride {
namespace detail {

namespace {

namespace fs = std::filesystem;

// 8 bytes of magic, then the content's size (8 bytes) and CRC-32 (4 bytes),
// little-endian. The magic's last byte is the content's format: 2, a dict of
// named tensors; 1, a LibTorch archive, which needs LibTorch's TorchScript
// importer and is no longer read (docs/training.md, "Run folder").
constexpr char kMagic[8] = {'D', 'S', 'T', 'R', 'I', 'D', 'E', '2'};
constexpr char kFormerMagic[8] = {'D', 'S', 'T', 'R', 'I', 'D', 'E', '1'};
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

// The process's umask, read from /proc (umask() would change it, racing
// with other threads); 022 where /proc does not say.
mode_t process_umask() {
  static const mode_t mask = [] {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Umask:", 0) == 0) {
        return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
      }
    }
    return static_cast<mode_t>(022);
  }();
  return mask;
}

void check_replaceable(const fs::path& path) {
  std::error_code error;
  const auto kind = file_kind(fs::symlink_status(path, error).type());
  TORCH_CHECK(kind.empty(),
              path.string(),
              ": exists and is ",
              kind,
              ", not a regular file: nothing was written (move it away or "
              "choose another path)");
}

// Writes all of `bytes` to `fd`; false on any failure (errno says why).
bool write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

// `bytes` in a new temporary file beside `path` (mkstemp creates it
// exclusively, so no link or file planted there is written through), with
// the umask's permissions, flushed to disk. Returns its path; on failure
// removes it and names `path` in the error.
fs::path written_temporary(const fs::path& path, const std::string& bytes) {
  std::string name = path.string() + ".tmp.XXXXXX";
  const int fd = ::mkostemp(name.data(), O_CLOEXEC);
  TORCH_CHECK(fd >= 0,
              path.string(),
              ": cannot write (",
              std::strerror(errno),
              "); the previous file, if any, is unchanged");
  const bool written = write_all(fd, bytes) &&
                       ::fchmod(fd, 0666 & ~process_umask()) == 0 &&
                       ::fsync(fd) == 0;
  const int error = errno;
  const bool closed = ::close(fd) == 0;
  if (!written || !closed) {
    std::error_code ignored;
    fs::remove(name, ignored);
    TORCH_CHECK(false,
                path.string(),
                ": cannot write (",
                std::strerror(error != 0 ? error : EIO),
                "); the previous file, if any, is unchanged");
  }
  return name;
}

}  // namespace

void replace_file(const fs::path& path, const std::string& bytes) {
  check_replaceable(path);
  const auto temporary = written_temporary(path, bytes);
  std::error_code renamed;
  check_replaceable(path);  // nothing swapped in meanwhile
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

void create_file(const fs::path& path, const std::string& bytes) {
  const auto temporary = written_temporary(path, bytes);
  // link() fails, replacing nothing, if anything is at `path`.
  const int linked = ::link(temporary.c_str(), path.c_str());
  const int error = errno;
  std::error_code ignored;
  fs::remove(temporary, ignored);
  TORCH_CHECK(linked == 0,
              path.string(),
              error == EEXIST ? ": exists; nothing was written"
                              : ": cannot write (" +
                                    std::string(std::strerror(error)) + ")");
}

bool carries_mark(const fs::path& path, const std::string& mark) {
  std::error_code error;
  if (!fs::is_regular_file(fs::symlink_status(path, error))) {
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  std::string head(4096, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  const auto second_line = head.find('\n');
  return head.rfind(mark, 0) == 0 ||
         (second_line != std::string::npos &&
          head.compare(second_line + 1, mark.size(), mark) == 0);
}

void check_owned_file(const fs::path& path,
                      const std::string& mark,
                      const std::string& writer) {
  check_replaceable(path);
  TORCH_CHECK(!fs::exists(fs::symlink_status(path)) || carries_mark(path, mark),
              path.string(),
              ": exists and was not written by ",
              writer,
              ": it is left as it is (move it away or choose another "
              "folder)");
}

void replace_owned_file(const fs::path& path,
                        const std::string& bytes,
                        const std::string& mark,
                        const std::string& writer) {
  check_owned_file(path, mark, writer);
  replace_file(path, bytes);
}

int create_new_file(const fs::path& path) {
  const int fd = ::open(
      path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0 && errno == EEXIST) {
    return -1;
  }
  TORCH_CHECK(
      fd >= 0, path.string(), ": cannot create (", std::strerror(errno), ")");
  return fd;
}

bool write_fully(int fd, const std::string& bytes) {
  return write_all(fd, bytes);
}

int open_for_append(const fs::path& path) {
  // O_NONBLOCK: opening a FIFO for writing would wait for a reader.
  const int fd = ::open(
      path.c_str(),
      O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
      0644);
  if (fd < 0 && (errno == ELOOP || errno == ENXIO)) {
    check_replaceable(path);
  }
  TORCH_CHECK(fd >= 0,
              path.string(),
              ": cannot open for appending (",
              std::strerror(errno),
              ")");
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    check_replaceable(path);
    TORCH_CHECK(false, path.string(), ": not a regular file");
  }
  ::fcntl(fd, F_SETFL, O_WRONLY | O_APPEND);
  return fd;
}

std::string integrity_magic() {
  return std::string(kMagic, sizeof(kMagic));
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
  TORCH_CHECK(std::memcmp(header.data(), kFormerMagic, sizeof(kMagic)) != 0,
              path.string(),
              ": a ",
              what,
              " in the format of earlier versions of diffstride (a LibTorch "
              "archive), which this version does not read; evaluate or "
              "resume it with the version that wrote it");
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
