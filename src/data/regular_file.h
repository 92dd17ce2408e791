#pragma once

// Reading files a user named without trusting them: only regular files (a
// FIFO would block, a device never end), of a bounded size, and in words
// what a path that is not a regular file is. Internal to the libraries.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace diffstride {
namespace detail {

/// The kind of `type` ("a folder", "a FIFO", "a device", ...); empty for a
/// regular file or nothing at all.
inline std::string file_kind(std::filesystem::file_type type) {
  using std::filesystem::file_type;
  switch (type) {
    case file_type::not_found:
    case file_type::none:
    case file_type::regular:
      return "";
    case file_type::symlink:
      return "a symbolic link";
    case file_type::directory:
      return "a folder";
    case file_type::fifo:
      return "a FIFO";
    case file_type::block:
    case file_type::character:
      return "a device";
    case file_type::socket:
      return "a socket";
    default:
      return "not a regular file";
  }
}

/// A read-only descriptor of the regular file `path` (a link counts as what
/// it points to), opened without blocking; throws std::runtime_error naming
/// the file otherwise. The caller closes it.
inline int open_regular_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error(path + ": cannot be opened (" +
                             std::strerror(errno) + ")");
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    throw std::runtime_error(path + ": not a regular file");
  }
  return fd;
}

/// The whole regular file `path`, of at most `max_bytes`; throws
/// std::runtime_error naming the file otherwise (`what` says what the
/// bound is, for the message).
inline std::string read_regular_file(const std::string& path,
                                     int64_t max_bytes,
                                     const std::string& what) {
  const int fd = open_regular_file(path);
  struct stat info {};
  ::fstat(fd, &info);
  if (info.st_size > max_bytes) {
    ::close(fd);
    throw std::runtime_error(path + ": " + std::to_string(info.st_size) +
                             " bytes, more than " + what);
  }
  std::string bytes(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (done != bytes.size()) {
    throw std::runtime_error(path + ": cannot be read");
  }
  return bytes;
}

}  // namespace detail
}  // namespace diffstride
